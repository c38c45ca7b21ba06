package dlq

import (
	"context"
	"time"
)

// minSleep is the shortest wait the limiter sleeps for. A shorter one is
// carried as debt into the next reservation instead, so that a high rate is
// not throttled by timer granularity; the long-run rate stays exact.
const minSleep = 5 * time.Millisecond

// limiter is a token bucket: tokens accrue at rate per second up to burst,
// each record takes one, and a record that finds none waits until its token
// has accrued. Reservations go into debt, so waiters are served in order and
// the rate over any interval T is at most burst + rate·T. It is not safe for
// concurrent use.
type limiter struct {
	rate   float64 // tokens per second; 0: unlimited
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
}

// newLimiter returns a limiter of rate records per second (0: unlimited).
// Its burst is a tenth of a second's worth, at least one record; it starts
// full.
func newLimiter(rate float64) *limiter {
	burst := max(1, rate/10)
	return &limiter{rate: rate, burst: burst, tokens: burst, last: time.Now(), now: time.Now, sleep: sleepCtx}
}

// reserve takes one token at now and returns how long the caller must wait
// before using it.
func (l *limiter) reserve(now time.Time) time.Duration {
	if l.rate <= 0 {
		return 0
	}
	if now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// wait blocks until one record may go, or ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	d := l.reserve(l.now())
	if d < minSleep {
		return ctx.Err()
	}
	return l.sleep(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
