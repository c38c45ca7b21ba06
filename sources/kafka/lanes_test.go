package kafka

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// recorder is a fake sources.Lanes: it records every call, with a sequence
// number shared by all recorders of a test so that calls of two sources can
// be ordered, and notes contract violations.
type recorder struct {
	seq *atomic.Int64

	// Hooks, set before Run. They run inside the Lanes call.
	onRevoke  func(ctx context.Context, parts []record.Partition)
	onDeliver func(p record.Partition, recs []record.Record)

	inCall atomic.Int32

	mu         sync.Mutex
	events     []event
	owned      map[record.Partition]int64 // partition -> generation
	recs       map[record.Partition][]record.Record
	violations []string
}

type event struct {
	seq    int64
	kind   string // assign, revoke, lost
	claims []sources.Claim
	parts  []record.Partition
}

func newRecorder(seq *atomic.Int64) *recorder {
	if seq == nil {
		seq = new(atomic.Int64)
	}
	return &recorder{
		seq:   seq,
		owned: make(map[record.Partition]int64),
		recs:  make(map[record.Partition][]record.Record),
	}
}

var _ sources.Lanes = (*recorder)(nil)

func (r *recorder) enter() {
	if r.inCall.Add(1) != 1 {
		r.violate("Lanes called concurrently")
	}
}

func (r *recorder) exit() { r.inCall.Add(-1) }

func (r *recorder) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

func (r *recorder) Assign(_ context.Context, claims []sources.Claim) {
	r.enter()
	defer r.exit()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range claims {
		if _, ok := r.owned[c.Partition]; ok {
			r.violations = append(r.violations, fmt.Sprintf("assign of owned %s", c.Partition))
		}
		r.owned[c.Partition] = c.Generation
	}
	r.events = append(r.events, event{seq: r.seq.Add(1), kind: "assign", claims: claims})
}

func (r *recorder) Revoke(ctx context.Context, parts []record.Partition) {
	r.enter()
	defer r.exit()
	r.mu.Lock()
	r.events = append(r.events, event{seq: r.seq.Add(1), kind: "revoke", parts: parts})
	r.mu.Unlock()
	if ctx.Err() != nil {
		r.violate("revoke with a done context")
	}
	if r.onRevoke != nil {
		r.onRevoke(ctx, parts)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range parts {
		if _, ok := r.owned[p]; !ok {
			r.violations = append(r.violations, fmt.Sprintf("revoke of unowned %s", p))
		}
		delete(r.owned, p)
	}
}

func (r *recorder) Lost(_ context.Context, parts []record.Partition) {
	r.enter()
	defer r.exit()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{seq: r.seq.Add(1), kind: "lost", parts: parts})
	for _, p := range parts {
		delete(r.owned, p)
	}
}

func (r *recorder) Deliver(p record.Partition, recs []record.Record) {
	r.enter()
	defer r.exit()
	r.mu.Lock()
	if _, ok := r.owned[p]; !ok {
		r.violations = append(r.violations, fmt.Sprintf("deliver to unowned %s", p))
	}
	have := r.recs[p]
	for _, rec := range recs {
		if rec.Partition != p {
			r.violations = append(r.violations, fmt.Sprintf("record of %s delivered to %s", rec.Partition, p))
		}
		if n := len(have); n > 0 && rec.Position.Offset <= have[n-1].Position.Offset {
			r.violations = append(r.violations, fmt.Sprintf("%s: offset %d delivered after %d", p, rec.Position.Offset, have[n-1].Position.Offset))
		}
		have = append(have, rec)
	}
	r.recs[p] = have
	r.mu.Unlock()
	if r.onDeliver != nil {
		r.onDeliver(p, recs)
	}
}

// count returns how many records p has received.
func (r *recorder) count(p record.Partition) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs[p])
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rs := range r.recs {
		n += len(rs)
	}
	return n
}

func (r *recorder) records(p record.Partition) []record.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs[p])
}

// last returns the position of the last record delivered for each of parts
// that has any.
func (r *recorder) last(parts ...record.Partition) map[record.Partition]record.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[record.Partition]record.Position)
	for _, p := range parts {
		if rs := r.recs[p]; len(rs) > 0 {
			out[p] = rs[len(rs)-1].Position
		}
	}
	return out
}

func (r *recorder) ownedNow() map[record.Partition]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.owned)
}

func (r *recorder) eventsNow() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) checkClean(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error("lanes contract violated: " + v)
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
