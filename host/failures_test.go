package host

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// An outage: the handler fails every record retryably for a while. The
// breaker opens and the partitions pause; nothing is dead-lettered (the
// records met an outage, not their own bad data), no offset moves; after
// recovery every record is handled once.
func TestOutageOpensTheBreakerAndDeadLettersNothing(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.Breaker = config.Breaker{FailureRatio: 0.5, MinRequests: 3, OpenFor: 50 * time.Millisecond, Interval: time.Minute}
	cfg.Retry.MaxAttempts = 2 // records exhaust their attempts during the outage
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	handled := map[int64]int{}
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		if down.Load() {
			res := &plugins.Result{}
			for i := range b.Records {
				res.Failures = append(res.Failures, plugins.Failure{Index: i, Retryable: true, Class: plugins.ClassTransient, Message: "db down"})
			}
			return res, nil
		}
		mu.Lock()
		for _, r := range b.Records {
			handled[r.Position.Offset]++
		}
		mu.Unlock()
		return echo(b), nil
	}), true)
	parts := []record.Partition{record.KafkaPartition("in", 0), record.KafkaPartition("in", 1)}
	for _, p := range parts {
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	}
	for _, p := range parts {
		h.pl.Deliver(p, records(p, 0, 100, 10))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !h.pl.handlerBreaker.open() {
		if time.Now().After(deadline) {
			t.Fatal("the handler breaker did not open during the outage")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // several open/half-open rounds
	if h.src.pauses.Load() == 0 {
		t.Fatal("partitions were not paused while the breaker was open")
	}
	if n := len(h.dead.all()); n != 0 {
		t.Fatalf("%d records dead-lettered during an outage", n)
	}
	for _, p := range parts {
		if c, ok := h.src.lastCommit(p); ok {
			t.Fatalf("%s committed %d during the outage", p, c)
		}
	}
	down.Store(false)
	h.waitCompleted(200)
	for _, p := range parts {
		h.pl.Revoke(context.Background(), []record.Partition{p})
		if c, _ := h.src.lastCommit(p); c != 99 {
			t.Fatalf("%s final commit = %d", p, c)
		}
	}
	if n := len(h.dead.all()); n != 0 {
		t.Fatalf("%d records dead-lettered", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 100 { // offsets 0..99 of two partitions share keys in this map
		t.Fatalf("handled %d distinct offsets", len(handled))
	}
	for off, n := range handled {
		if n != 2 { // once per partition
			t.Fatalf("offset %d handled %d times", off, n)
		}
	}
	if h.src.resumes.Load() == 0 {
		t.Fatal("partitions were not resumed after the breaker closed")
	}
}

// Per-key parking: one key fails retryably for a while; the other keys of
// the same partition keep completing meanwhile, and the failing key's later
// records are handled after it, in order.
func TestParkedKeyDoesNotBlockItsPartition(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.Ordering = config.OrderingKey
	cfg.Handler.Instances = 2
	cfg.Retry = config.Retry{MaxAttempts: 1000, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	cfg.Batch.MaxRecords = 10
	var healed atomic.Bool
	var mu sync.Mutex
	var order []int64 // k0's offsets in the order they succeeded
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		res := &plugins.Result{}
		for i, r := range b.Records {
			if string(r.Key) == "k0" {
				if !healed.Load() {
					res.Failures = append(res.Failures, plugins.Failure{Index: i, Retryable: true, Class: plugins.ClassTransient})
					continue
				}
				mu.Lock()
				order = append(order, r.Position.Offset)
				mu.Unlock()
			}
			res.Outputs = append(res.Outputs, plugins.Output{Index: i, Sink: "out",
				Message: record.Message{Key: r.Key, Value: []byte(strconv.FormatInt(r.Position.Offset, 10))}})
		}
		return res, nil
	}), true)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	const n = 400
	h.pl.Deliver(p, records(p, 0, n, 20)) // k0 = offsets 0, 20, 40, ...
	// Everything but k0's 20 records completes while k0 keeps failing.
	h.waitCompleted(n - n/20)
	time.Sleep(50 * time.Millisecond)
	if got := h.pl.stats.Completed.Load(); got != n-n/20 {
		t.Fatalf("completed %d while k0 is failing, want %d", got, n-n/20)
	}
	if h.pl.stats.Parked.Load() == 0 {
		t.Fatal("no batch is parked while k0 fails")
	}
	if c, ok := h.src.lastCommit(p); ok {
		// offset 0 is k0's first record: nothing may be committed yet
		t.Fatalf("committed %d past parked offset 0", c)
	}
	healed.Store(true)
	h.waitCompleted(n)
	h.pl.Revoke(context.Background(), []record.Partition{p})
	if c, _ := h.src.lastCommit(p); c != n-1 {
		t.Fatalf("final commit = %d", c)
	}
	perKeyOrder(t, h.out.all())
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("k0 handled out of order: %v", order)
		}
	}
	if len(order) != n/20 || len(h.dead.all()) != 0 {
		t.Fatalf("k0 handled %d times, dlq %d", len(order), len(h.dead.all()))
	}
}

// The DLQ guard halts a pipeline whose handler rejects everything instead
// of dead-lettering the whole topic, and nothing past the records that
// tripped it is committed.
func TestDLQGuardHaltsAHandlerThatRejectsEverything(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.DLQ = &config.DLQ{MaxRatio: 0.5, Window: 100}
	cfg.Batch.MaxRecords = 5
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		res := &plugins.Result{}
		for i := range b.Records {
			res.Failures = append(res.Failures, plugins.Failure{Index: i, Class: plugins.ClassInvalidInput, Message: "schema v2 not understood"})
		}
		return res, nil
	}), true)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	h.pl.Deliver(p, records(p, 0, 1000, 50))
	deadline := time.Now().Add(5 * time.Second)
	for h.pl.failure() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := h.pl.failure(); !errors.Is(err, ErrDLQGuard) {
		t.Fatalf("failure = %v, want the DLQ guard", err)
	}
	h.pl.Revoke(context.Background(), []record.Partition{p})
	dead := len(h.dead.all())
	if dead == 0 || dead > 20 {
		t.Fatalf("dead-lettered %d records; the guard should trip after a tenth of the window", dead)
	}
	if c, _ := h.src.lastCommit(p); c >= int64(dead) {
		t.Fatalf("committed %d, past the %d dead-lettered records", c, dead)
	}
}

// The DLQ cannot be written: the lane holds (and its breaker pauses the
// partitions); nothing is committed past the failed record until the DLQ
// takes it.
func TestDLQUnavailableHoldsTheCommit(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.Breaker.MinRequests = 2
	h := newHarness(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		res := echo(b)
		for i, r := range b.Records {
			if r.Position.Offset == 10 {
				res.Failures = append(res.Failures, plugins.Failure{Index: i, Class: plugins.ClassInvalidInput, Message: "bad"})
			}
		}
		return res, nil
	}), true)
	h.dead.fail.Store(1 << 30)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	h.pl.Deliver(p, records(p, 0, 10, 10))
	h.waitCompleted(10)
	h.pl.Deliver(p, records(p, 10, 30, 10))
	time.Sleep(300 * time.Millisecond)
	if c, _ := h.src.lastCommit(p); c != 9 {
		t.Fatalf("commit = %d while the DLQ is down, want 9 (just before the failed record)", c)
	}
	if !h.pl.dlqBreaker.open() || h.src.pauses.Load() == 0 {
		t.Fatal("the DLQ breaker did not open and pause the partition")
	}
	h.dead.fail.Store(0)
	h.waitCompleted(40)
	h.pl.Revoke(context.Background(), []record.Partition{p})
	if c, _ := h.src.lastCommit(p); c != 39 {
		t.Fatalf("final commit = %d", c)
	}
	if len(h.dead.all()) != 1 || len(h.out.all()) != 39 {
		t.Fatalf("dlq %d, outputs %d", len(h.dead.all()), len(h.out.all()))
	}
}
