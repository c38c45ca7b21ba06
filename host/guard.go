package host

import (
	"errors"
	"fmt"
	"sync"
)

// ErrDLQGuard stops a pipeline that would dead-letter more than dlq.max_ratio
// of its recent records: a bad deploy, not bad data. Nothing past the
// records that tripped it is committed, so after a fix they are handled
// again.
var ErrDLQGuard = errors.New("dlq guard tripped")

// dlqGuard keeps the outcome of the latest window records (dead-lettered or
// not) and says when dead-lettering more would pass the ratio. It is safe for
// concurrent use.
type dlqGuard struct {
	maxRatio float64

	mu   sync.Mutex
	ring []bool // true: dead-lettered
	next int
	n    int // slots filled
	dead int // trues in ring
}

func newDLQGuard(maxRatio float64, window int) *dlqGuard {
	return &dlqGuard{maxRatio: maxRatio, ring: make([]bool, window)}
}

// record notes the outcome of records that completed: ok handled, dead
// dead-lettered.
func (g *dlqGuard) record(ok, dead int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.add(false, ok)
	g.add(true, dead)
}

func (g *dlqGuard) add(v bool, k int) {
	for ; k > 0; k-- {
		if g.n == len(g.ring) {
			if g.ring[g.next] {
				g.dead--
			}
		} else {
			g.n++
		}
		g.ring[g.next] = v
		if v {
			g.dead++
		}
		g.next = (g.next + 1) % len(g.ring)
	}
}

// check returns ErrDLQGuard (wrapped, with the numbers) if dead-lettering k
// more records now would take the window past the ratio. It judges only
// once a tenth of the window (at least 10 records) has been seen, so the
// first record of a run is not "100% dead-lettered".
func (g *dlqGuard) check(k int) error {
	if g.maxRatio >= 1 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n, dead := g.n+k, g.dead+k
	if n > len(g.ring) { // the oldest would fall out; assume they were not dead
		n = len(g.ring)
	}
	if n < max(10, len(g.ring)/10) {
		return nil
	}
	if ratio := float64(dead) / float64(n); ratio > g.maxRatio {
		return fmt.Errorf("%d of the last %d records would be dead-lettered (%.0f%%, more than dlq.max_ratio %.0f%%): halting instead of emptying the topic into the DLQ; fix the handler and restart: %w",
			dead, n, 100*ratio, 100*g.maxRatio, ErrDLQGuard)
	}
	return nil
}
