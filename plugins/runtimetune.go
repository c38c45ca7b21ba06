package plugins

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// tuneRuntime sets up the Go runtime of a handler process for serving
// calls (Serve calls it; the collector has its own tuner, gctune.go): its
// Ps (procLimiter) and memory profiling (stopMemProfile).
func tuneRuntime() {
	handlerProcs = startProcLimiter()
	stopMemProfile()
}

// The runtime records the stack of an allocation every 512 KiB allocated
// on average, for heap profiles (runtime.MemProfileRate). A handler process
// allocates a batch's records and their bytes at each call, a few hundred
// KiB, so it unwound a deep stack about every other call: 1 to 1.5% of the
// noop handler's CPU (perf), for profiles no one takes. stopMemProfile turns it off
// unless the process chose a rate of its own (GODEBUG=memprofilerate, or
// set before Serve).
func stopMemProfile() {
	if runtime.MemProfileRate == defaultMemProfileRate {
		runtime.MemProfileRate = 0
	}
}

// defaultMemProfileRate is the runtime's default MemProfileRate.
const defaultMemProfileRate = 512 * 1024

// A handler process serves one call at a time unless its pool says
// otherwise (PoolConfig.MaxConcurrency, default 1), and a call is a chain of
// goroutines handing work to each other: gRPC's connection reader, the
// call's own goroutine (the handler), gRPC's writer. With a P per core (the
// runtime's default), each hand-off wakes the thread of an idle P through a
// futex, which then looks for work and goes back to sleep, and the
// collector runs its idle mark workers on the idle Ps. Measured with the
// noop handler (BenchmarkPoolRoundTrip, 1000 records of 100 B per call, on
// 2 cores) that was about a quarter of the process's CPU, for no gain in
// speed: one call's work is sequential.
//
// So a handler process runs with one P, and gets another for each call it
// serves at once beyond the first, up to the runtime's default (never
// fewer than it serves at once, so calls served at once still run in
// parallel). GOMAXPROCS in the process's environment (handler.env) turns
// this off: a handler that spreads a batch's work over goroutines of its
// own, to use several cores for one call, sets it.

// procLimiter keeps a handler process's GOMAXPROCS at the number of calls
// it has served at once, at most, between 1 and max.
type procLimiter struct {
	max      int          // the runtime's default GOMAXPROCS
	inflight atomic.Int32 // calls being served
	procs    atomic.Int32 // GOMAXPROCS now

	mu sync.Mutex // serializes raising procs
}

// handlerProcs is the process's limiter, set by Serve (nil elsewhere, and
// when GOMAXPROCS is set).
var handlerProcs *procLimiter

// startProcLimiter sets GOMAXPROCS to 1 and returns the limiter that raises
// it for calls served at once, unless the environment sets GOMAXPROCS or the
// runtime has a single P anyway; nil then.
func startProcLimiter() *procLimiter {
	if os.Getenv("GOMAXPROCS") != "" {
		return nil
	}
	max := runtime.GOMAXPROCS(0)
	if max <= 1 {
		return nil
	}
	l := &procLimiter{max: max}
	l.procs.Store(1)
	runtime.GOMAXPROCS(1)
	return l
}

// enter notes that a call starts, raising GOMAXPROCS if the process now
// serves more calls at once than it has Ps (up to max). Every enter is
// followed by an exit.
func (l *procLimiter) enter() {
	if l == nil {
		return
	}
	n := l.inflight.Add(1)
	if n <= l.procs.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := int32(min(int(n), l.max)); p > l.procs.Load() {
		runtime.GOMAXPROCS(int(p)) // stops the world: at most max-1 times
		l.procs.Store(p)
	}
}

// exit notes that a call ended. GOMAXPROCS stays where it is: a process
// that served calls at once will again.
func (l *procLimiter) exit() {
	if l == nil {
		return
	}
	l.inflight.Add(-1)
}
