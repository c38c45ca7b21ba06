package host_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
)

// Producer-side duplicates: an IoT device resends a reading with the same
// message-id. Under idempotency.key: header:message-id each is handled once,
// and the duplicates are counted.
func TestProducerDuplicatesAreHandledOnce(t *testing.T) {
	redis := testenv.Redis(t)
	e := newEnv(t, 4)
	const unique, copies = 300, 3
	err := loadtest.Produce(context.Background(), e.cl, e.in, unique*copies, func(i int) *kgo.Record {
		id := i % unique // each message-id goes out 3 times, possibly to other partitions
		return &kgo.Record{Key: []byte("dev-" + strconv.Itoa(i%7)), Value: []byte(strconv.Itoa(id)),
			Headers: []kgo.RecordHeader{{Key: "message-id", Value: []byte("m-" + strconv.Itoa(id))}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.configWithRedis(redis, echoHandler, "    idempotency: { key: \"header:message-id\" }\n")
	r := e.start(cfg, "h1", nil)
	outs := e.consume(unique, time.Minute)
	waitFor(t, func() bool { return r.completed() == unique*copies }, "every copy complete")
	var dups int64
	for _, s := range r.h.Stats() {
		dups += s.Duplicates
	}
	r.stop(t)
	e.requireCommittedToEnd()
	seen := map[string]int{}
	for _, o := range outs {
		seen[string(o.Value)]++
	}
	for id := 0; id < unique; id++ {
		if c := seen[strconv.Itoa(id)]; c != 1 {
			t.Fatalf("message m-%d handled %d times, want once", id, c)
		}
	}
	if dups != unique*(copies-1) {
		t.Fatalf("duplicates counted = %d, want %d", dups, unique*(copies-1))
	}
}

// Redis stopped for 10 seconds mid-run: the Redis breaker opens and the
// pipeline pauses (nothing is handled without its mark); when Redis comes
// back everything is handled, nothing lost or doubled.
func TestRedisOutageMidRun(t *testing.T) {
	srv := testenv.StartRedis(t)
	e := newEnv(t, 4)
	const n = 20_000
	cfg := e.configWithRedis(srv.Addr(), echoHandler, "    breaker: { min_requests: 3, open_for: 500ms }\n")
	cfg.Pipelines[0].Batch.MaxRecords = 100
	r := e.start(cfg, "h1", nil)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < n; i += 1000 {
			e.produce(i, 1000, 200)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitFor(t, func() bool { return r.completed() > n/10 }, "progress before the outage")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stalled := r.completed()
	time.Sleep(8 * time.Second)
	if moved := r.completed() - stalled; moved > 0 {
		t.Errorf("%d records completed while Redis was down", moved)
	}
	var paused int64
	for _, s := range r.h.Stats() {
		paused += s.Paused
	}
	if paused == 0 {
		t.Error("partitions were not paused while Redis was down")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	<-produced
	outs := e.consume(n, 2*time.Minute)
	r.stop(t)
	verifyOutputs(t, outs, n)
	e.requireCommittedToEnd()
}
