package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
)

// testLogger writes through t.Log, warnings and up, so a failing test shows
// what the source and kgo said.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func startBroker(t *testing.T, opts ...EmbeddedOption) *Embedded {
	t.Helper()
	e, err := StartEmbedded(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// connOpts are the connection options a host would build, with group and
// fetch timing lowered so that rebalances and resumes take milliseconds.
func connOpts(e *Embedded) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(e.Addrs()...),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}
}

func newProducer(t *testing.T, e *Embedded) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// produceN produces n records to each of partitions, values "<prefix><i>".
func produceN(t *testing.T, cl *kgo.Client, topic string, partitions []int32, n int, prefix string) {
	t.Helper()
	var recs []*kgo.Record
	for i := range n {
		for _, p := range partitions {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(prefix + strconv.Itoa(i))})
		}
	}
	produce(t, cl, recs...)
}

// running is a Source being run by a test.
type running struct {
	src    *Source
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

func runSource(t *testing.T, cfg Config, rec *recorder) *running {
	t.Helper()
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{src: src, rec: rec, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, rec) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; it is idempotent.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
			r.rec.checkClean(t)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func parts(topic string, ids ...int32) []record.Partition {
	out := make([]record.Partition, len(ids))
	for i, id := range ids {
		out[i] = record.KafkaPartition(topic, id)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{Topics: []string{"t"}, Group: "g"}, ""},
		{"no topics", Config{Group: "g"}, "topics: must not be empty"},
		{"empty topic", Config{Topics: []string{"t", ""}, Group: "g"}, "topics[1]: must not be empty"},
		{"no group", Config{Topics: []string{"t"}}, "group: must not be empty"},
		{"bad start", Config{Topics: []string{"t"}, Group: "g", Start: Start{Kind: "middle"}}, `start: "middle"`},
		{"time without time", Config{Topics: []string{"t"}, Group: "g", Start: Start{Kind: StartTime}}, "start.time: required"},
		{"negative fetch bytes", Config{Topics: []string{"t"}, Group: "g", FetchMaxBytes: -1}, "fetch_max_bytes"},
		{"negative partition fetch bytes", Config{Topics: []string{"t"}, Group: "g", FetchMaxPartitionBytes: -1}, "fetch_max_partition_bytes"},
		{"bad client option", Config{Topics: []string{"t"}, Group: "g", Client: []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck())}}, "client options"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("New error = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestRunTwiceAndCommitBeforeRun(t *testing.T) {
	e := startBroker(t, WithTopic("t", 1))
	src, err := New(Config{Client: connOpts(e), Topics: []string{"t"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Commit(context.Background(), map[record.Partition]record.Position{record.KafkaPartition("t", 0): {Offset: 1}})
	if !errors.Is(err, ErrNotAssigned) {
		t.Fatalf("Commit before Run = %v, want ErrNotAssigned", err)
	}
	src.Pause(record.KafkaPartition("t", 0)) // no client yet: must not panic

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rec := newRecorder(nil)
	go func() { done <- src.Run(ctx, rec) }()
	waitFor(t, 10*time.Second, "assignment", func() bool { return len(rec.ownedNow()) == 1 })
	if err := src.Run(ctx, rec); !errors.Is(err, ErrRunCalled) {
		t.Fatalf("second Run = %v, want ErrRunCalled", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	rec.checkClean(t)
}

// Every record is delivered once, in order per partition; after a commit of
// the last positions, a new member of the group starts after them.
func TestConsumeInOrderAndResumeFromCommit(t *testing.T) {
	const topic, perPart = "orders", 2500
	e := startBroker(t, WithTopic(topic, 4))
	prod := newProducer(t, e)
	var recs []*kgo.Record
	for i := range 4 * perPart {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 4), Key: []byte(strconv.Itoa(i % 7)), Value: []byte(strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(strconv.Itoa(i))}}})
	}
	produce(t, prod, recs...)

	cfg := Config{Client: connOpts(e), Topics: []string{topic}, Group: "g", Logger: testLogger(t)}
	all := parts(topic, 0, 1, 2, 3)
	r1 := runSource(t, cfg, newRecorder(nil))
	waitFor(t, 20*time.Second, "10,000 records", func() bool { return r1.rec.total() == 4*perPart })

	for _, p := range all {
		got := r1.rec.records(p)
		for i, rec := range got {
			want := strconv.Itoa(i*4 + int(p.KafkaID()))
			if rec.Position.Offset != int64(i) || string(rec.Value) != want || string(rec.Headers[0].Value) != want {
				t.Fatalf("%s record %d: offset %d value %q header %q, want offset %d value %q", p, i, rec.Position.Offset, rec.Value, rec.Headers[0].Value, i, want)
			}
			if rec.Timestamp.IsZero() || rec.Partition != p {
				t.Fatalf("%s record %d: timestamp %v partition %v", p, i, rec.Timestamp, rec.Partition)
			}
		}
	}
	if err := r1.src.Commit(context.Background(), r1.rec.last(all...)); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	r1.stop(t)
	if err := r1.src.Commit(context.Background(), r1.rec.last(all[0])); !errors.Is(err, ErrNotAssigned) {
		t.Fatalf("Commit after Run returned = %v, want ErrNotAssigned", err)
	}

	r2 := runSource(t, cfg, newRecorder(nil))
	waitFor(t, 10*time.Second, "assignment of 4 partitions", func() bool { return len(r2.rec.ownedNow()) == 4 })
	produceN(t, prod, topic, []int32{0, 1, 2, 3}, 1, "after-")
	waitFor(t, 10*time.Second, "the 4 new records", func() bool { return r2.rec.total() >= 4 })
	time.Sleep(200 * time.Millisecond) // let any wrongful redelivery arrive
	for _, p := range all {
		got := r2.rec.records(p)
		if len(got) != 1 || got[0].Position.Offset != perPart || string(got[0].Value) != "after-0" {
			t.Errorf("%s: after restart got %v, want only offset %d", p, got, perPart)
		}
	}
}

func TestStartLatest(t *testing.T) {
	const topic = "late"
	e := startBroker(t, WithTopic(topic, 2))
	prod := newProducer(t, e)
	produceN(t, prod, topic, []int32{0, 1}, 50, "before-")

	r := runSource(t, Config{Client: connOpts(e), Topics: []string{topic}, Group: "g", Start: Start{Kind: StartLatest}}, newRecorder(nil))
	waitFor(t, 10*time.Second, "assignment", func() bool { return len(r.rec.ownedNow()) == 2 })
	// "latest" is resolved when the partition is first fetched, which may be
	// after Assign: produce until records arrive.
	waitFor(t, 10*time.Second, "records produced after start", func() bool {
		produceN(t, prod, topic, []int32{0, 1}, 1, "after-")
		return r.rec.count(parts(topic, 0)[0]) > 0 && r.rec.count(parts(topic, 1)[0]) > 0
	})
	for _, p := range parts(topic, 0, 1) {
		for _, rec := range r.rec.records(p) {
			if rec.Position.Offset < 50 || string(rec.Value) != "after-0" {
				t.Fatalf("%s: delivered offset %d %q, produced before start", p, rec.Position.Offset, rec.Value)
			}
		}
	}
}

func TestStartTime(t *testing.T) {
	const topic = "timed"
	e := startBroker(t, WithTopic(topic, 1))
	prod := newProducer(t, e)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	produce(t, prod, recs...)

	start := Start{Kind: StartTime, Time: base.Add(60 * time.Second)}
	r := runSource(t, Config{Client: connOpts(e), Topics: []string{topic}, Group: "g", Start: start}, newRecorder(nil))
	p := record.KafkaPartition(topic, 0)
	waitFor(t, 10*time.Second, "40 records", func() bool { return r.rec.count(p) >= 40 })
	got := r.rec.records(p)
	if len(got) != 40 || got[0].Position.Offset != 60 || !got[0].Timestamp.Equal(start.Time) {
		t.Fatalf("got %d records from offset %d at %v, want 40 from offset 60 at %v", len(got), got[0].Position.Offset, got[0].Timestamp, start.Time)
	}
}

// A second member joins: the first revokes (and commits) the partitions that
// move before the second is assigned them, nothing is lost or repeated across
// the handover, and the first can no longer commit what it gave up.
func TestRebalanceRevokesBeforeAssign(t *testing.T) {
	const topic = "moving"
	e := startBroker(t, WithTopic(topic, 4))
	prod := newProducer(t, e)
	cfg := Config{Client: connOpts(e), Topics: []string{topic}, Group: "g", Logger: testLogger(t)}
	seq := new(atomic.Int64)

	recA := newRecorder(seq)
	var srcA atomic.Pointer[Source]
	var revokeCommitErrs []error
	var revokeMu sync.Mutex
	recA.onRevoke = func(ctx context.Context, ps []record.Partition) {
		err := srcA.Load().Commit(ctx, recA.last(ps...))
		revokeMu.Lock()
		revokeCommitErrs = append(revokeCommitErrs, err)
		revokeMu.Unlock()
	}
	a := runSource(t, cfg, recA)
	srcA.Store(a.src)
	waitFor(t, 10*time.Second, "A owns 4 partitions", func() bool { return len(recA.ownedNow()) == 4 })

	stop := make(chan struct{})
	var produced atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			produceN(t, prod, topic, []int32{0, 1, 2, 3}, 5, "")
			produced.Add(5)
		}
	})

	recB := newRecorder(seq)
	b := runSource(t, cfg, recB)
	waitFor(t, 15*time.Second, "B owns 2 partitions", func() bool { return len(recB.ownedNow()) == 2 && len(recA.ownedNow()) == 2 })
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	perPart := int(produced.Load())
	waitFor(t, 10*time.Second, "every record", func() bool {
		n := 0
		for _, p := range parts(topic, 0, 1, 2, 3) {
			n += recA.count(p) + recB.count(p)
		}
		return n >= 4*perPart
	})

	// Revoke before assign, for every partition B got.
	var moved []record.Partition
	for _, evB := range recB.eventsNow() {
		if evB.kind != "assign" {
			continue
		}
		for _, c := range evB.claims {
			moved = append(moved, c.Partition)
			revokedAt := int64(-1)
			for _, evA := range recA.eventsNow() {
				for _, p := range evA.parts {
					if evA.kind == "revoke" && p == c.Partition {
						revokedAt = evA.seq
					}
				}
			}
			if revokedAt < 0 || revokedAt > evB.seq {
				t.Errorf("%s: A revoked at %d, B assigned at %d", c.Partition, revokedAt, evB.seq)
			}
			var genA int64 = -1
			for _, evA := range recA.eventsNow() {
				for _, ca := range evA.claims {
					if ca.Partition == c.Partition {
						genA = ca.Generation
					}
				}
			}
			if c.Generation <= genA {
				t.Errorf("%s: B's generation %d not above A's %d", c.Partition, c.Generation, genA)
			}
		}
	}
	revokeMu.Lock()
	for _, err := range revokeCommitErrs {
		if err != nil {
			t.Errorf("commit inside revoke: %v", err)
		}
	}
	revokeMu.Unlock()

	// A cannot commit what moved.
	err := a.src.Commit(context.Background(), map[record.Partition]record.Position{moved[0]: {Offset: 0}})
	if !errors.Is(err, ErrNotAssigned) {
		t.Errorf("A's commit of moved %s = %v, want ErrNotAssigned", moved[0], err)
	}

	// Handover: A's records then B's cover every offset exactly once.
	for _, p := range parts(topic, 0, 1, 2, 3) {
		all := append(recA.records(p), recB.records(p)...)
		if len(all) != perPart {
			t.Errorf("%s: %d records delivered, %d produced", p, len(all), perPart)
		}
		for i, rec := range all {
			if rec.Position.Offset != int64(i) {
				t.Errorf("%s: record %d at offset %d (A %d records, B %d)", p, i, rec.Position.Offset, recA.count(p), recB.count(p))
				break
			}
		}
	}
	b.stop(t)
	a.stop(t)
}

// Pausing a partition stops its delivery at once, even with fetched data
// buffered in the client, while other partitions flow; resuming continues
// exactly where it stopped.
func TestPauseResume(t *testing.T) {
	const topic, perPart = "paused", 3000
	e := startBroker(t, WithTopic(topic, 2))
	prod := newProducer(t, e)
	for range perPart / 100 { // many small batches, so fetches return a few at a time
		produceN(t, prod, topic, []int32{0, 1}, 100, "")
	}
	p0, p1 := record.KafkaPartition(topic, 0), record.KafkaPartition(topic, 1)

	rec := newRecorder(nil)
	var src atomic.Pointer[Source]
	var pausedAt atomic.Int64
	pausedAt.Store(-1)
	rec.onDeliver = func(p record.Partition, _ []record.Record) {
		// Pausing from inside Deliver is pausing between two polls: the
		// next poll must not return p0, whatever kgo has buffered.
		if n := rec.count(p0); p == p0 && n >= 500 && pausedAt.Load() < 0 {
			// Give the client time to buffer its next fetch, so that
			// the pause has buffered data of p0 to discard.
			cl := src.Load().cl.Load()
			for deadline := time.Now().Add(time.Second); cl.BufferedFetchRecords() == 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("pausing p0 after %d records, %d records buffered in the client", n, cl.BufferedFetchRecords())
			src.Load().Pause(p0)
			pausedAt.Store(int64(n))
		}
	}
	opts := append(connOpts(e), kgo.FetchMaxPartitionBytes(4<<10))
	r := runSource(t, Config{Client: opts, Topics: []string{topic}, Group: "g"}, rec)
	src.Store(r.src)

	waitFor(t, 20*time.Second, "p1 fully delivered", func() bool { return rec.count(p1) == perPart })
	time.Sleep(300 * time.Millisecond)
	if n, at := rec.count(p0), pausedAt.Load(); at < 0 || int64(n) != at {
		t.Fatalf("p0 paused at %d records, has %d", at, n)
	}

	r.src.Resume(p0)
	waitFor(t, 20*time.Second, "p0 fully delivered", func() bool { return rec.count(p0) == perPart })
	for i, got := range rec.records(p0) {
		if got.Position.Offset != int64(i) {
			t.Fatalf("p0 record %d at offset %d: gap or duplicate around the pause", i, got.Position.Offset)
		}
	}
}

// FetchMaxPartitionBytes bounds what one poll brings of a partition (plus
// at most one record batch, which Kafka sends whole), so that a pause drops
// little of a buffered fetch. franz-go's default would bring up to 1 MiB.
func TestFetchMaxPartitionBytes(t *testing.T) {
	const topic, limit, batch = "bounded", 64 << 10, 16 << 10
	e := startBroker(t, WithTopic(topic, 1))
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(batch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	const n = 1000 // a MiB of values
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Value: make([]byte, 1024)}
	}
	produce(t, prod, recs...)

	rec := newRecorder(nil)
	var mu sync.Mutex
	largest := 0
	rec.onDeliver = func(_ record.Partition, recs []record.Record) {
		size := 0
		for i := range recs {
			size += recs[i].Size()
		}
		mu.Lock()
		largest = max(largest, size)
		mu.Unlock()
	}
	runSource(t, Config{Client: connOpts(e), Topics: []string{topic}, Group: "g", FetchMaxPartitionBytes: limit}, rec)
	p := record.KafkaPartition(topic, 0)
	waitFor(t, 20*time.Second, "every record delivered", func() bool { return rec.count(p) == n })
	mu.Lock()
	defer mu.Unlock()
	if largest > limit+batch {
		t.Fatalf("one poll delivered %d bytes of the partition, want at most %d", largest, limit+batch)
	}
}

// Cancelling Run revokes every partition; commits made inside Revoke land.
func TestShutdownRevokesAndCommits(t *testing.T) {
	const topic = "closing"
	e := startBroker(t, WithTopic(topic, 4))
	prod := newProducer(t, e)
	produceN(t, prod, topic, []int32{0, 1, 2, 3}, 100, "")

	rec := newRecorder(nil)
	var src atomic.Pointer[Source]
	var commitErr error
	rec.onRevoke = func(ctx context.Context, ps []record.Partition) {
		commitErr = errors.Join(commitErr, src.Load().Commit(ctx, rec.last(ps...)))
	}
	r := runSource(t, Config{Client: connOpts(e), Topics: []string{topic}, Group: "g", Logger: testLogger(t)}, rec)
	src.Store(r.src)
	waitFor(t, 10*time.Second, "400 records", func() bool { return rec.total() == 400 })
	r.stop(t)

	if commitErr != nil {
		t.Fatalf("commit inside revoke: %v", commitErr)
	}
	var revoked []record.Partition
	for _, ev := range rec.eventsNow() {
		if ev.kind == "revoke" {
			revoked = append(revoked, ev.parts...)
		}
	}
	if fmt.Sprint(revoked) != fmt.Sprint(parts(topic, 0, 1, 2, 3)) {
		t.Fatalf("revoked %v on shutdown, want all 4 partitions", revoked)
	}
	if owned := rec.ownedNow(); len(owned) != 0 {
		t.Fatalf("still owned after Run returned: %v", owned)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	offs, err := adm.FetchOffsets(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(4) {
		o, ok := offs.Lookup(topic, p)
		if !ok || o.Err != nil || o.At != 100 {
			t.Errorf("committed offset of %s/%d = %+v (found %v), want 100", topic, p, o, ok)
		}
	}
}
