package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/pb"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// fakeSource records commits and pauses; tests drive the pipeline's Lanes
// methods themselves.
type fakeSource struct {
	mu      sync.Mutex
	commits map[record.Partition][]int64
	paused  map[record.Partition]bool
	pauses  atomic.Int64
	resumes atomic.Int64
}

func newFakeSource() *fakeSource {
	return &fakeSource{commits: map[record.Partition][]int64{}, paused: map[record.Partition]bool{}}
}

func (s *fakeSource) Run(ctx context.Context, _ sources.Lanes) error { <-ctx.Done(); return nil }

func (s *fakeSource) Commit(_ context.Context, m map[record.Partition]record.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, pos := range m {
		s.commits[p] = append(s.commits[p], pos.Offset)
	}
	return nil
}

func (s *fakeSource) Pause(ps ...record.Partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		s.paused[p] = true
	}
	s.pauses.Add(1)
}

func (s *fakeSource) Resume(ps ...record.Partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		delete(s.paused, p)
	}
	s.resumes.Add(1)
}

func (s *fakeSource) lastCommit(p record.Partition) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.commits[p]
	if len(c) == 0 {
		return 0, false
	}
	return c[len(c)-1], true
}

// handlerFunc adapts a function to Dispatcher.
type handlerFunc func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error)

func (f handlerFunc) Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
	return f(ctx, b)
}

// memSink keeps what it was given, in order.
type memSink struct {
	mu   sync.Mutex
	msgs []record.Message
	fail atomic.Int64 // fail this many Write calls first
}

func (s *memSink) Write(_ context.Context, msgs []record.Message) error {
	if s.fail.Add(-1) >= 0 {
		return errors.New("sink down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, msgs...)
	return nil
}

func (s *memSink) all() []record.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record.Message(nil), s.msgs...)
}

// echo emits each record's value to sink "out", keyed by the record's key.
func echo(b *plugins.Batch) *plugins.Result {
	res := &plugins.Result{}
	for i, r := range b.Records {
		res.Outputs = append(res.Outputs, plugins.Output{Index: i, Sink: "out",
			Message: record.Message{Key: r.Key, Value: []byte(strconv.FormatInt(r.Position.Offset, 10))}})
	}
	return res
}

type harness struct {
	t    *testing.T
	pl   *pipeline
	src  *fakeSource
	out  *memSink
	dead *memSink
	stop func()
}

func testPipelineConfig() *config.Pipeline {
	return &config.Pipeline{
		Name:             "test",
		Batch:            config.Batch{MaxRecords: 50, MaxBytes: 1 << 20, MaxWait: 2 * time.Millisecond},
		Handler:          config.Handler{Instances: 4, Timeout: time.Second},
		Ordering:         config.OrderingPartition,
		Retry:            config.Retry{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Bisect: true},
		Breaker:          config.Breaker{FailureRatio: 0.5, MinRequests: 20, OpenFor: 100 * time.Millisecond, Interval: time.Minute},
		MaxInflightBytes: 64 << 20,
		ShutdownTimeout:  5 * time.Second,
		CommitInterval:   time.Millisecond,
	}
}

func newHarness(t *testing.T, cfg *config.Pipeline, h Dispatcher, withDLQ bool) *harness {
	t.Helper()
	return newHarnessWithMarks(t, cfg, h, withDLQ, nil)
}

func newHarnessWithMarks(t *testing.T, cfg *config.Pipeline, h Dispatcher, withDLQ bool, marks Marks) *harness {
	t.Helper()
	src := newFakeSource()
	out, dead := &memSink{}, &memSink{}
	deps := pipelineDeps{src: src, handler: h, info: plugins.Info{Name: "fake", Version: "0.1"},
		sinks: map[string]Sink{"out": out}, hostID: "test-host", marks: marks}
	if withDLQ {
		deps.dlq = dead
	}
	pl := newPipeline(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), deps)
	ctx, cancel := context.WithCancel(context.Background())
	pl.cancel = func(error) {}
	done := make(chan struct{})
	go func() { defer close(done); pl.commits.loop(ctx, time.Millisecond) }()
	hs := &harness{t: t, pl: pl, src: src, out: out, dead: dead}
	hs.stop = func() { cancel(); <-done }
	t.Cleanup(hs.stop)
	return hs
}

func records(p record.Partition, from, n, keys int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		off := int64(from + i)
		recs[i] = record.Record{Partition: p, Position: record.Position{Offset: off},
			Key: []byte(fmt.Sprintf("k%d", int(off)%keys)), Value: []byte(fmt.Sprintf("v%d", off))}
	}
	return recs
}

func (h *harness) waitCompleted(n int64) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.pl.stats.Completed.Load() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("completed %d of %d records", h.pl.stats.Completed.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// perKeyOrder asserts each key's outputs carry increasing offsets.
func perKeyOrder(t *testing.T, msgs []record.Message) {
	t.Helper()
	last := map[string]int64{}
	for _, m := range msgs {
		off, _ := strconv.ParseInt(string(m.Value), 10, 64)
		if prev, ok := last[string(m.Key)]; ok && off <= prev {
			t.Fatalf("key %s: offset %d after %d", m.Key, off, prev)
		}
		last[string(m.Key)] = off
	}
}

// concurrencyProbe is a handler that sleeps a random while and records the
// most batches of one partition, and of one key, it saw at once.
type concurrencyProbe struct {
	mu          sync.Mutex
	inflight    int
	maxInflight int
	keys        map[string]int
	keyClash    string
}

func (c *concurrencyProbe) Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
	c.mu.Lock()
	c.inflight++
	c.maxInflight = max(c.maxInflight, c.inflight)
	if c.keys == nil {
		c.keys = map[string]int{}
	}
	seen := map[string]bool{}
	for _, r := range b.Records {
		k := string(r.Key)
		if !seen[k] {
			seen[k] = true
			if c.keys[k]++; c.keys[k] > 1 {
				c.keyClash = k
			}
		}
	}
	c.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	c.mu.Lock()
	c.inflight--
	for k := range seen {
		c.keys[k]--
	}
	c.mu.Unlock()
	return echo(b), nil
}

// encodedProbe is a concurrencyProbe taking records in their wire form,
// as the handler pools do: each batch's parts are decoded as a handler
// process would, and must hold exactly the batch's records.
type encodedProbe struct {
	concurrencyProbe
	t      *testing.T
	mu     sync.Mutex
	parts  int // parts seen, over all batches
	handle int // calls of Handle, which a pipeline must not make
}

func (e *encodedProbe) Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
	e.mu.Lock()
	e.handle++
	e.mu.Unlock()
	return e.concurrencyProbe.Handle(ctx, b)
}

func (e *encodedProbe) HandleEncoded(ctx context.Context, b *plugins.Batch, recs plugins.EncodedRecords) (*plugins.Result, error) {
	var msg pb.Batch
	if err := proto.Unmarshal(bytes.Join(recs.Parts, nil), &msg); err != nil {
		e.t.Errorf("the encoded records do not decode: %v", err)
		return nil, err
	}
	if len(msg.Records) != recs.N {
		e.t.Errorf("%d records decoded, the batch says %d", len(msg.Records), recs.N)
	}
	e.mu.Lock()
	e.parts += len(recs.Parts)
	e.mu.Unlock()
	d := *b
	d.Records = nil
	for _, r := range msg.Records {
		d.Records = append(d.Records, record.Record{Key: r.Key, Value: r.Value,
			Partition: record.Partition{Stream: b.Stream, ID: b.Partition}, Position: record.Position{Offset: r.Offset}})
	}
	return e.concurrencyProbe.Handle(ctx, &d)
}

func TestOrderingModes(t *testing.T) {
	for _, tc := range []struct {
		ordering      config.Ordering
		wantParallel  bool
		wantKeyOrder  bool
		wantFullOrder bool
	}{
		{config.OrderingPartition, false, true, true},
		{config.OrderingKey, true, true, false},
		{config.OrderingNone, true, false, false},
	} {
		for _, encoded := range []bool{false, true} {
			name := string(tc.ordering)
			if encoded {
				name += "/encoded"
			}
			t.Run(name, func(t *testing.T) {
				testOrderingMode(t, tc.ordering, encoded, tc.wantParallel, tc.wantKeyOrder, tc.wantFullOrder)
			})
		}
	}
}

// testOrderingMode is one case of TestOrderingModes: with encoded, through
// a dispatcher that takes the records encoded, in deliveries that batches
// straddle.
func testOrderingMode(t *testing.T, ordering config.Ordering, encoded, wantParallel, wantKeyOrder, wantFullOrder bool) {
	cfg := testPipelineConfig()
	cfg.Ordering = ordering
	cfg.Batch.MaxRecords = 20
	probe := &concurrencyProbe{}
	var handler Dispatcher = probe
	var enc *encodedProbe
	if encoded {
		enc = &encodedProbe{t: t}
		probe, handler = &enc.concurrencyProbe, enc
	}
	h := newHarness(t, cfg, handler, false)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 1}})
	const n, delivery = 2000, 33
	for i := 0; i < n; i += delivery {
		h.pl.Deliver(p, records(p, i, min(delivery, n-i), 37))
	}
	h.waitCompleted(n)
	h.pl.Revoke(context.Background(), []record.Partition{p})

	if got, _ := h.src.lastCommit(p); got != n-1 {
		t.Fatalf("last commit = %d, want %d", got, n-1)
	}
	msgs := h.out.all()
	if len(msgs) != n {
		t.Fatalf("outputs = %d, want %d", len(msgs), n)
	}
	if wantKeyOrder {
		perKeyOrder(t, msgs)
	}
	if wantFullOrder {
		for i, m := range msgs {
			if string(m.Value) != strconv.Itoa(i) {
				t.Fatalf("output %d is offset %s: partition order broken", i, m.Value)
			}
		}
	}
	if wantParallel != (probe.maxInflight > 1) {
		t.Fatalf("max concurrent batches = %d, parallel wanted: %v", probe.maxInflight, wantParallel)
	}
	if ordering != config.OrderingNone && probe.keyClash != "" {
		t.Fatalf("key %s was in two concurrent batches", probe.keyClash)
	}
	if enc != nil && (enc.handle > 0 || enc.parts == 0) {
		t.Fatalf("%d batches sent as records, %d encoded parts: want every batch encoded", enc.handle, enc.parts)
	}
}

// Out-of-order completion: under ordering key/none a later batch finishing
// first must not commit past an earlier batch still in flight.
func TestCommitWaitsForEarlierBatch(t *testing.T) {
	for _, ordering := range []config.Ordering{config.OrderingKey, config.OrderingNone} {
		t.Run(string(ordering), func(t *testing.T) {
			cfg := testPipelineConfig()
			cfg.Ordering = ordering
			cfg.Batch.MaxRecords = 10
			release := make(chan struct{})
			h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
				if b.Records[0].Position.Offset == 0 { // the first batch is slow
					select {
					case <-release:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return echo(b), nil
			}), false)
			p := record.KafkaPartition("in", 0)
			h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
			h.pl.Deliver(p, records(p, 0, 40, 40)) // 40 distinct keys: 4 batches in parallel
			h.waitCompleted(30)
			time.Sleep(20 * time.Millisecond)
			if c, ok := h.src.lastCommit(p); ok {
				t.Fatalf("committed %d while offsets 0-9 were in flight", c)
			}
			close(release)
			h.waitCompleted(40)
			h.pl.Revoke(context.Background(), []record.Partition{p})
			if c, _ := h.src.lastCommit(p); c != 39 {
				t.Fatalf("final commit = %d, want 39", c)
			}
		})
	}
}

func TestBackpressurePausesAndResumes(t *testing.T) {
	p := record.KafkaPartition("in", 0)
	var small [][]record.Record
	var cost int64 // of the small records, each counting its size and the host's overhead
	for i := 0; i < 100; i += 10 {
		recs := records(p, i, 10, 3)
		for j := range recs {
			cost += int64(recs[j].Size()) + RecordOverhead
		}
		small = append(small, recs)
	}
	cfg := testPipelineConfig()
	cfg.MaxInflightBytes = cost + 300 // the small records fit ...
	// (and their lane does not have enough waiting to pause on its own:
	// that is at eight batches)
	cfg.Batch.MaxRecords = 30
	gate := make(chan struct{})
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		<-gate
		return echo(b), nil
	}), false)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	for _, recs := range small {
		h.pl.Deliver(p, recs)
	}
	if h.src.pauses.Load() != 0 {
		t.Fatal("partition paused under max_inflight_bytes")
	}
	big := records(p, 100, 1, 3)
	big[0].Value = make([]byte, 600) // ... and this one tips it over
	h.pl.Deliver(p, big)
	if h.src.pauses.Load() == 0 || !h.src.paused[p] {
		t.Fatal("partition not paused past max_inflight_bytes")
	}
	close(gate)
	h.waitCompleted(101)
	if h.src.resumes.Load() == 0 || h.src.paused[p] {
		t.Fatal("partition not resumed after the in-flight bytes drained")
	}
	if got := h.pl.stats.InflightBytes.Load(); got != 0 {
		t.Fatalf("in-flight bytes after completion = %d", got)
	}
}

// TestLaneWithEnoughWaitingPausesItsPartition: a lane with eight batches'
// worth of records waiting pauses its partition (and only it) well under
// the in-flight budget, and resumes it once it has dispatched down to half
// of that; every record completes.
func TestLaneWithEnoughWaitingPausesItsPartition(t *testing.T) {
	p, other := record.KafkaPartition("in", 0), record.KafkaPartition("in", 1)
	cfg := testPipelineConfig()
	cfg.Batch.MaxRecords = 5 // pause at 40 waiting, resume at 20
	gate := make(chan struct{})
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		if b.Partition == p.ID {
			<-gate
		}
		return echo(b), nil
	}), false)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}, {Partition: other}})
	h.pl.Deliver(other, records(other, 0, 30, 3))
	h.pl.Deliver(p, records(p, 0, 30, 3))
	if h.src.pauses.Load() != 0 {
		t.Fatal("paused with 30 records waiting, under the mark of 40")
	}
	h.pl.Deliver(p, records(p, 30, 20, 3)) // 45 or 50 waiting, as the first batch is dispatched or not
	h.src.mu.Lock()
	paused, otherPaused := h.src.paused[p], h.src.paused[other]
	h.src.mu.Unlock()
	if !paused || otherPaused {
		t.Fatalf("paused: %s %v, %s %v; want only the lane with 40 waiting", p, paused, other, otherPaused)
	}
	if got := h.pl.stats.InflightBytes.Load(); got > cfg.MaxInflightBytes/100 {
		t.Fatalf("in-flight bytes %d: this pause is not the budget's", got)
	}
	close(gate)
	h.waitCompleted(80)
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	if h.src.paused[p] {
		t.Fatal("partition still paused after its lane drained")
	}
}

// TestRewindResumesAFullLanesPartition: under exactly-once an aborted
// transaction rewinds a lane, replacing it with an empty one; if the old
// lane had paused its partition for having enough waiting, the new lane
// must not inherit that pause (nothing would ever lift it).
func TestRewindResumesAFullLanesPartition(t *testing.T) {
	p := record.KafkaPartition("in", 0)
	cfg := testPipelineConfig()
	cfg.Batch.MaxRecords = 5 // pause at 40 waiting
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		<-ctx.Done() // never finishes: the lane stays full until it is rewound
		return nil, ctx.Err()
	}), false)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	h.pl.Deliver(p, records(p, 0, 60, 3))
	h.src.mu.Lock()
	paused := h.src.paused[p]
	h.src.mu.Unlock()
	if !paused {
		t.Fatal("a lane with 50 or 60 records waiting did not pause its partition")
	}
	h.pl.Rewind(context.Background(), []record.Partition{p})
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	if h.src.paused[p] {
		t.Fatal("the rewound lane's partition is still paused: the new, empty lane inherited the old one's pause")
	}
}

func TestFailures(t *testing.T) {
	p := record.KafkaPartition("in", 0)
	t.Run("non-retryable goes to the DLQ with its envelope, others proceed", func(t *testing.T) {
		h := newHarness(t, testPipelineConfig(), handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
			res := echo(b)
			for i, r := range b.Records {
				if r.Position.Offset == 7 {
					res.Failures = append(res.Failures, plugins.Failure{Index: i, Message: "bad json", Class: plugins.ClassInvalidInput})
				}
			}
			return res, nil
		}), true)
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
		h.pl.Deliver(p, records(p, 0, 20, 20))
		h.waitCompleted(20)
		h.pl.Revoke(context.Background(), []record.Partition{p})
		if n := len(h.out.all()); n != 19 {
			t.Fatalf("outputs = %d, want 19", n)
		}
		dead := h.dead.all()
		if len(dead) != 1 {
			t.Fatalf("dlq = %d, want 1", len(dead))
		}
		e, err := dlq.Parse(dead[0].Key, dead[0].Value, dead[0].Headers)
		if err != nil {
			t.Fatal(err)
		}
		if e.Position != "7" || e.Failure.Class != "invalid_input" || e.Failure.Message != "bad json" || e.Failure.Attempts != 1 || e.Origin.HostID != "test-host" {
			t.Fatalf("envelope = %+v", e)
		}
		if c, _ := h.src.lastCommit(p); c != 19 {
			t.Fatalf("commit = %d", c)
		}
	})
	t.Run("retryable is retried alone, with its key's later records", func(t *testing.T) {
		var mu sync.Mutex
		seen := map[int64]int{}
		h := newHarness(t, testPipelineConfig(), handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			res := &plugins.Result{}
			for i, r := range b.Records {
				seen[r.Position.Offset]++
				if r.Position.Offset == 3 && seen[3] == 1 {
					res.Failures = append(res.Failures, plugins.Failure{Index: i, Retryable: true, Class: plugins.ClassTransient})
					continue
				}
				res.Outputs = append(res.Outputs, plugins.Output{Index: i, Sink: "out",
					Message: record.Message{Key: r.Key, Value: []byte(strconv.FormatInt(r.Position.Offset, 10))}})
			}
			return res, nil
		}), false)
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
		h.pl.Deliver(p, records(p, 0, 10, 5)) // keys k0..k4: offset 8 shares k3 with 3
		h.waitCompleted(10)
		h.pl.Revoke(context.Background(), []record.Partition{p})
		mu.Lock()
		defer mu.Unlock()
		for off, n := range seen {
			want := 1
			if off == 3 || off == 8 {
				want = 2
			}
			if n != want {
				t.Fatalf("offset %d handled %d times, want %d", off, n, want)
			}
		}
		perKeyOrder(t, h.out.all())
		if len(h.out.all()) != 10 || len(h.dead.all()) != 0 {
			t.Fatalf("outputs %d, dlq %d", len(h.out.all()), len(h.dead.all()))
		}
	})
	t.Run("a batch failing as a whole is bisected down to its poison record", func(t *testing.T) {
		var calls atomic.Int64
		h := newHarness(t, testPipelineConfig(), handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
			calls.Add(1)
			for _, r := range b.Records {
				if r.Position.Offset == 13 {
					return nil, fmt.Errorf("plugin exited: %w", errors.New("exit status 2"))
				}
			}
			return echo(b), nil
		}), true)
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
		h.pl.Deliver(p, records(p, 0, 40, 40))
		h.waitCompleted(40)
		h.pl.Revoke(context.Background(), []record.Partition{p})
		if len(h.dead.all()) != 1 || len(h.out.all()) != 39 {
			t.Fatalf("dlq %d, outputs %d", len(h.dead.all()), len(h.out.all()))
		}
		if c, _ := h.src.lastCommit(p); c != 39 {
			t.Fatalf("commit = %d", c)
		}
	})
	t.Run("without a DLQ a record failing for good stops the pipeline before its offset", func(t *testing.T) {
		h := newHarness(t, testPipelineConfig(), handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
			res := echo(b)
			for i, r := range b.Records {
				if r.Position.Offset == 5 {
					res.Failures = append(res.Failures, plugins.Failure{Index: i, Class: plugins.ClassInvalidInput, Message: "nope"})
				}
			}
			return res, nil
		}), false)
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
		h.pl.Deliver(p, records(p, 0, 10, 10))
		deadline := time.Now().Add(5 * time.Second)
		for h.pl.failure() == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := h.pl.failure(); !errors.Is(err, ErrNoDLQ) {
			t.Fatalf("failure = %v, want ErrNoDLQ", err)
		}
		h.pl.Revoke(context.Background(), []record.Partition{p})
		if c, ok := h.src.lastCommit(p); ok && c >= 5 {
			t.Fatalf("committed %d, past the failed record 5", c)
		}
	})
	t.Run("a sink that fails is retried, not skipped", func(t *testing.T) {
		h := newHarness(t, testPipelineConfig(), handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
			return echo(b), nil
		}), false)
		h.out.fail.Store(3)
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
		h.pl.Deliver(p, records(p, 0, 10, 10))
		h.waitCompleted(10)
		h.pl.Revoke(context.Background(), []record.Partition{p})
		if len(h.out.all()) != 10 {
			t.Fatalf("outputs = %d", len(h.out.all()))
		}
	})
}

// Revoke with a batch that never finishes: the lane abandons it at the
// shutdown deadline and commits only what completed before it.
func TestRevokeAbandonsAtDeadline(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.ShutdownTimeout = 50 * time.Millisecond
	cfg.Batch.MaxRecords = 5
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		if b.Records[0].Position.Offset >= 10 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return echo(b), nil
	}), true)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	h.pl.Deliver(p, records(p, 0, 20, 20))
	h.waitCompleted(10)
	start := time.Now()
	h.pl.Revoke(context.Background(), []record.Partition{p})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("revoke took %v", d)
	}
	if c, _ := h.src.lastCommit(p); c != 9 {
		t.Fatalf("commit = %d, want 9", c)
	}
	if len(h.dead.all()) != 0 {
		t.Fatal("abandoned records were dead-lettered")
	}
	if got := h.pl.stats.InflightBytes.Load(); got != 0 {
		t.Fatalf("in-flight bytes after revoke = %d", got)
	}
}

// Regression: under ordering key, a graceful revoke abandoned queued records
// of a busy key while later records of other keys had completed, so the
// final commit stopped below completed records and the next owner repeated
// them (duplicates in TestRebalanceWhileFlowing). Draining now fills those
// gaps first.
func TestRevokeUnderKeyOrderingFillsGapsBeforeCommitting(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.Ordering = config.OrderingKey
	cfg.Batch.MaxWait = time.Millisecond
	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[int64]int{}
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		if b.Records[0].Position.Offset == 0 {
			<-release // key k0's first record is slow
		}
		mu.Lock()
		for _, r := range b.Records {
			handled[r.Position.Offset]++
		}
		mu.Unlock()
		return echo(b), nil
	}), false)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	key := func(off int64, k string) record.Record {
		return record.Record{Partition: p, Position: record.Position{Offset: off}, Key: []byte(k), Value: []byte("v")}
	}
	h.pl.Deliver(p, []record.Record{key(0, "k0")})
	time.Sleep(20 * time.Millisecond) // offset 0 is in flight, k0 busy
	h.pl.Deliver(p, []record.Record{key(1, "k0"), key(2, "k1"), key(3, "k2")})
	h.waitCompleted(2) // offsets 2 and 3 done; 1 waits behind 0
	go func() { time.Sleep(50 * time.Millisecond); close(release) }()
	h.pl.Revoke(context.Background(), []record.Partition{p})
	if c, _ := h.src.lastCommit(p); c != 3 {
		t.Fatalf("final commit = %d, want 3 (offset 1 must be handled before the revoke completes)", c)
	}
	mu.Lock()
	defer mu.Unlock()
	for off := int64(0); off < 4; off++ {
		if handled[off] != 1 {
			t.Fatalf("offset %d handled %d times", off, handled[off])
		}
	}
}

// A pipeline whose dispatcher takes encoded records copies each record's
// bytes as it is delivered (the Kafka source then lends it the fetch's own
// bytes, which it recycles once Deliver returns); one without does not ask
// for that. delivery.own copies bytes for a delivery encode would not take.
func TestDeliveredBytesAreCopiedWhenLent(t *testing.T) {
	if newHarness(t, testPipelineConfig(), handlerFunc(nil), false).pl.CopiesBytes() {
		t.Fatal("a pipeline whose dispatcher takes only records asks to be lent bytes it will not copy")
	}
	h := newHarness(t, testPipelineConfig(), &encodedProbe{t: t}, false)
	if !h.pl.CopiesBytes() {
		t.Fatal("a pipeline whose dispatcher takes encoded records does not say it copies bytes")
	}
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 1}})
	recs := records(p, 0, 50, 7)
	lent := make([][]byte, 0, 2*len(recs))
	for i := range recs {
		lent = append(lent, recs[i].Key, recs[i].Value)
	}
	notLent := func(what string, recs []record.Record) {
		t.Helper()
		for i := range recs {
			for j, b := range [][]byte{recs[i].Key, recs[i].Value} {
				if &b[0] == &lent[2*i+j][0] || !bytes.Equal(b, lent[2*i+j]) {
					t.Fatalf("%s: record %d: %q still at the lent bytes, or not a copy of %q", what, i, b, lent[2*i+j])
				}
			}
		}
	}
	h.pl.Deliver(p, recs)
	notLent("delivered", recs)
	h.waitCompleted(int64(len(recs)))

	owned := records(p, 0, 50, 7)
	lent = lent[:0]
	for i := range owned {
		lent = append(lent, owned[i].Key, owned[i].Value)
	}
	(&delivery{recs: owned}).own()
	notLent("owned", owned)
}

// A backlog's last, partial batch goes at once when the partition has
// nothing past it, instead of waiting out max_wait for records that are not
// coming; records that then arrive one by one wait for max_wait as usual,
// and so does a partial batch when the partition has more.
func TestEndOfBacklogDoesNotWaitMaxWait(t *testing.T) {
	for _, ord := range []config.Ordering{config.OrderingPartition, config.OrderingKey} {
		t.Run(string(ord), func(t *testing.T) {
			p := record.KafkaPartition("in", 0)
			cfg := testPipelineConfig()
			cfg.Ordering = ord
			cfg.Batch.MaxRecords, cfg.Batch.MaxWait = 10, time.Hour
			var mu sync.Mutex
			var sizes []int
			h := newHarness(t, cfg, handlerFunc(func(_ context.Context, b *plugins.Batch) (*plugins.Result, error) {
				mu.Lock()
				sizes = append(sizes, len(b.Records))
				mu.Unlock()
				return &plugins.Result{}, nil
			}), false)
			h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
			// Not the end: the partial batch waits.
			h.pl.Deliver(p, records(p, 0, 24, 24))
			h.waitCompleted(20)
			time.Sleep(50 * time.Millisecond)
			if n := h.pl.stats.Completed.Load(); n != 20 {
				t.Fatalf("completed %d records before the end of the partition was known; want the 2 full batches only", n)
			}
			// The end: the rest of the backlog goes without waiting.
			h.pl.DeliveredToEnd(p)
			h.waitCompleted(24)
			// A record trickling in after a partial batch waits, end or not.
			h.pl.Deliver(p, records(p, 24, 1, 24))
			h.pl.DeliveredToEnd(p)
			time.Sleep(50 * time.Millisecond)
			if n := h.pl.stats.Completed.Load(); n != 24 {
				t.Fatalf("completed %d records: a record after a partial batch did not wait for max_wait", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(sizes) != 3 || sizes[2] != 4 {
				t.Fatalf("batch sizes %v; want 10, 10, 4", sizes)
			}
		})
	}
}
