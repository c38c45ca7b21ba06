package plugins

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcPercentMax},
		{1 << 20, gcPercentMax}, // 16 MiB of headroom would be 1600%
		{4 << 20, 400},
		{8 << 20, 200},
		{16 << 20, 100},
		{1 << 30, 100}, // a large heap: GOGC=100
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// TestGCTunerFollowsCollections: the tuner sets the percent at start and
// again after collections, and GOGC in the environment turns it off.
func TestGCTunerFollowsCollections(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tu := startGCTuner()
	if tu == nil {
		t.Fatal("tuner not started without GOGC and GOMEMLIMIT")
	}
	defer tu.stop()
	current := func() int {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	if got := current(); got <= 100 {
		t.Fatalf("GC percent %d after start with a test binary's small heap, want above 100", got)
	}
	// A large live heap brings it back to 100 after a collection.
	ballast := make([]byte, 200<<20)
	deadline := time.Now().Add(30 * time.Second)
	for current() != 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent still %d with a 200 MiB live heap", current())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(ballast)

	t.Setenv("GOGC", "50")
	if startGCTuner() != nil {
		t.Error("tuner started although GOGC is set")
	}
}
