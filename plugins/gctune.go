package plugins

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// A handler process's live heap is usually small (a few MiB of gRPC
// buffers and the handler's own state), while every call leaves a whole
// batch of garbage behind (the request, its records, the result). Under
// GOGC=100 (and the runtime's 4 MiB minimum heap) the collector then runs
// every few calls, and measured with the noop handler it took about a third
// of the process's CPU. So the process serving a handler lets garbage reach
// about gcHeadroom before collecting, whatever its live heap; once the live
// heap is larger than that, this is GOGC=100 again (collect when the heap
// doubles).

// gcHeadroom is the garbage a handler process lets accumulate between
// collections, at least.
const gcHeadroom = 16 << 20

// gcPercentMax bounds the GC percent the tuner sets (a live heap of 4 MiB
// or less gets this). The runtime scales its minimum heap with the percent
// (4 MiB at 100), so this also makes the minimum heap gcHeadroom.
const gcPercentMax = 400

// startGCTuner keeps the GC percent at gcHeadroom / live heap, between 100
// and gcPercentMax, re-evaluated after every collection, unless the
// environment sets GOGC (or GOMEMLIMIT, a policy of the user's own); it
// returns nil then. Serve calls it once, in the handler process.
func startGCTuner() *gcTuner {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	t := &gcTuner{samples: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: 100}
	t.tune()
	t.arm()
	return t
}

// gcTuner re-evaluates the GC percent after each collection, from the
// finalizer of a sentinel it re-arms each time (the finalizer goroutine
// runs one at a time).
type gcTuner struct {
	mu      sync.Mutex
	stopped bool
	samples []metrics.Sample
	percent int
}

// sentinel is garbage the tuner makes so that its finalizer tells it a
// collection has just happened. (It holds a pointer so that it is not a
// tiny allocation, which might share a block with live objects and never be
// finalized.)
type sentinel struct{ _ *int }

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.tune() {
			t.arm()
		}
	})
}

// stop ends the tuning and restores GOGC=100 (for tests).
func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	debug.SetGCPercent(100)
}

// tune sets the GC percent for the live heap now; false once stopped.
func (t *gcTuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.samples)
	if t.samples[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	if p := gcPercentFor(t.samples[0].Value.Uint64()); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	return true
}

// gcPercentFor is the GC percent that lets live bytes grow by at least
// gcHeadroom before the next collection, between 100 and gcPercentMax.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcPercentMax
	}
	return int(min(max(gcHeadroom*100/live, 100), gcPercentMax))
}
