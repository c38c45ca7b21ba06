package dlq

import (
	"context"
	"testing"
	"time"
)

// fakeClock drives a limiter: sleeping advances it.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) limiter(rate float64) *limiter {
	l := newLimiter(rate)
	l.last, l.now = c.now, func() time.Time { return c.now }
	l.sleep = func(_ context.Context, d time.Duration) error {
		c.sleeps = append(c.sleeps, d)
		c.now = c.now.Add(d)
		return nil
	}
	return l
}

func TestLimiterReservations(t *testing.T) {
	c := &fakeClock{now: t0}
	l := c.limiter(10) // burst 1
	// At one instant: the burst goes at once, then one per 100ms, queued.
	for i, want := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		if got := l.reserve(c.now); got != want {
			t.Fatalf("reservation %d waits %v, want %v", i, got, want)
		}
	}
	// A long idle time refills the bucket to its burst, no more.
	c.now = c.now.Add(time.Hour)
	if got := l.reserve(c.now); got != 0 {
		t.Fatalf("after idling: wait %v, want 0", got)
	}
	if got := l.reserve(c.now); got != 100*time.Millisecond {
		t.Fatalf("after idling, the second record waits %v, want 100ms (burst 1)", got)
	}
	if got := (&fakeClock{now: t0}).limiter(0).reserve(t0); got != 0 {
		t.Fatalf("unlimited waits %v", got)
	}
}

// Over any run, records <= burst + rate * elapsed; at a high rate the
// waits are batched into sleeps of at least minSleep, and the rate holds.
func TestLimiterHoldsTheRate(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		n    int
	}{{10, 101}, {1000, 5000}, {50000, 100000}, {0.5, 5}} {
		c := &fakeClock{now: t0}
		l := c.limiter(tc.rate)
		for range tc.n {
			if err := l.wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		elapsed := c.now.Sub(t0).Seconds()
		want := (float64(tc.n) - l.burst) / tc.rate
		if elapsed < want-minSleep.Seconds() || elapsed > want+1e-6 {
			t.Errorf("rate %v: %d records took %.4fs, want %.4fs", tc.rate, tc.n, elapsed, want)
		}
		for _, d := range c.sleeps {
			if d < minSleep {
				t.Errorf("rate %v: slept %v, under %v", tc.rate, d, minSleep)
				break
			}
		}
	}
}

func TestLimiterWaitStopsWithTheContext(t *testing.T) {
	l := newLimiter(0.001) // one record per 1000s after the first
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.wait(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := l.wait(ctx); err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestPollSizeFollowsTheRate(t *testing.T) {
	for rate, want := range map[float64]int{0: 500, 0.1: 1, 10: 20, 1e6: 500} {
		if got := pollSize(rate); got != want {
			t.Errorf("pollSize(%v) = %d, want %d", rate, got, want)
		}
	}
}
