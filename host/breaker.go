package host

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"

	"github.com/weirhq/weir/host/config"
)

// breaker guards one dependency of a pipeline (its handler pool, a sink, the
// DLQ) with a gobreaker circuit breaker. Only systemic failures count: the
// caller decides what is one and returns it from the guarded function. While
// the breaker is open, do waits instead of calling, and the pipeline pauses
// its partitions at the source (onChange); after open_for one probe call
// decides whether to close it.
type breaker struct {
	name     string
	cb       *gobreaker.CircuitBreaker[struct{}]
	log      zerolog.Logger
	onChange func(name string, open bool)

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
}

func newBreaker(name string, cfg config.Breaker, log zerolog.Logger, onChange func(name string, open bool)) *breaker {
	b := &breaker{name: name, log: log, onChange: onChange, changed: make(chan struct{})}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Interval:    cfg.Interval,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= uint32(cfg.MinRequests) &&
				float64(c.TotalFailures) >= cfg.FailureRatio*float64(c.Requests)
		},
		// A stopped lane's cancelled call says nothing about the dependency.
		IsExcluded:    func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: b.stateChanged,
	})
	return b
}

func (b *breaker) stateChanged(_ string, from, to gobreaker.State) {
	ev := b.log.Warn()
	if to == gobreaker.StateClosed {
		ev = b.log.Info()
	}
	ev.Str("breaker", b.name).Str("from", from.String()).Str("to", to.String()).Msg("circuit breaker state changed")
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	if b.onChange != nil && (to == gobreaker.StateOpen || to == gobreaker.StateClosed) {
		b.onChange(b.name, to == gobreaker.StateOpen)
	}
}

// open reports whether the breaker is not closed (open or half-open).
func (b *breaker) open() bool { return b.cb.State() != gobreaker.StateClosed }

// state is the breaker's state as text: closed, half-open or open.
func (b *breaker) state() string { return b.cb.State().String() }

// do calls fn through the breaker. fn returns the call's own result in its
// closure and, as its error, whether the call was a systemic failure (nil:
// it counts as a success). While the breaker rejects calls, do waits and
// tries again; it returns false only when ctx is done first.
func (b *breaker) do(ctx context.Context, fn func() error) bool {
	for {
		_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
		if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
			return true
		}
		b.mu.Lock()
		changed := b.changed
		b.mu.Unlock()
		// gobreaker moves to half-open lazily, on the next call after
		// open_for: look again now and then.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}
