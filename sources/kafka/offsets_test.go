package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// Offsets reports each partition's log end and the group's committed
// offset (-1 before any commit); it refuses before Run and after it, so
// that readiness can tell a source that is not connected.
func TestOffsets(t *testing.T) {
	const topic = "ends"
	e := startBroker(t, WithTopic(topic, 2))
	produceN(t, newProducer(t, e), topic, []int32{0}, 7, "a")
	produceN(t, newProducer(t, e), topic, []int32{1}, 3, "b")
	cfg := Config{Client: connOpts(e), Topics: []string{topic}, Group: "g-offsets", Logger: testLogger(t)}
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	all := parts(topic, 0, 1)
	if _, err := src.Offsets(context.Background(), all); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Offsets before Run = %v, want ErrNotRunning", err)
	}

	r := &running{src: src, rec: newRecorder(nil), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- src.Run(ctx, r.rec) }()
	t.Cleanup(func() { r.stop(t) })
	waitFor(t, 10*time.Second, "the 10 records", func() bool { return r.rec.total() == 10 })

	var got map[record.Partition]sources.Offsets
	waitFor(t, 10*time.Second, "offsets", func() bool {
		got, err = src.Offsets(context.Background(), all)
		return err == nil
	})
	want := map[record.Partition]sources.Offsets{all[0]: {End: 7, Committed: -1}, all[1]: {End: 3, Committed: -1}}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: %+v, want %+v", p, got[p], w)
		}
	}
	if err := src.Commit(context.Background(), map[record.Partition]record.Position{all[0]: {Offset: 4}}); err != nil {
		t.Fatal(err)
	}
	got, err = src.Offsets(context.Background(), all)
	if err != nil || got[all[0]] != (sources.Offsets{End: 7, Committed: 5}) {
		t.Errorf("after committing offset 4: %+v, %v; want end 7, committed 5 (the next to read)", got[all[0]], err)
	}
	r.stop(t)
	if _, err := src.Offsets(context.Background(), all); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Offsets after Run = %v, want ErrNotRunning", err)
	}
}
