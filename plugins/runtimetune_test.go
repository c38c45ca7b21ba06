package plugins

import (
	"runtime"
	"testing"
)

// The limiter gives the process a P per call served at once, never more
// than the runtime's default, never takes them back, and stays off when the
// environment sets GOMAXPROCS.
func TestProcLimiter(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	t.Setenv("GOMAXPROCS", "")
	l := startProcLimiter()
	if l == nil {
		t.Fatal("no limiter with GOMAXPROCS unset and 3 Ps")
	}
	want := func(n int) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != n {
			t.Fatalf("GOMAXPROCS = %d, want %d", got, n)
		}
	}
	want(1)
	l.enter()
	want(1)
	l.enter()
	want(2)
	l.exit()
	l.enter()
	want(2)
	l.enter()
	l.enter() // 4 at once: at most the default, 3
	want(3)
	for range 4 {
		l.exit()
	}
	l.enter()
	want(3)
	l.exit()

	var none *procLimiter // a process not served by Serve
	none.enter()
	none.exit()
	runtime.GOMAXPROCS(3)
	t.Setenv("GOMAXPROCS", "3")
	if startProcLimiter() != nil {
		t.Error("limiter started although GOMAXPROCS is set")
	}
	want(3)
}

// Memory profiling goes off at the default rate, and stays at a rate the
// process chose.
func TestStopMemProfile(t *testing.T) {
	defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
	runtime.MemProfileRate = defaultMemProfileRate
	stopMemProfile()
	if r := runtime.MemProfileRate; r != 0 {
		t.Errorf("MemProfileRate = %d after stopMemProfile at the default rate, want 0", r)
	}
	runtime.MemProfileRate = 4096
	stopMemProfile()
	if r := runtime.MemProfileRate; r != 4096 {
		t.Errorf("MemProfileRate = %d after stopMemProfile at a rate of 4096, want it kept", r)
	}
}
