package host

import (
	"time"

	"github.com/weirhq/weir/record"
)

// tracker finds the highest position of a partition below which every record
// is complete. Records are numbered by the lane in arrival order (seq);
// batches may complete out of order under ordering key or none, and the
// tracker only ever reports the unbroken run of completed records from the
// start, so a commit never passes an unfinished record.
//
// Memory is proportional to the records between the oldest unfinished one
// and the newest one. A tracker is owned by its lane's goroutine and is not
// safe for concurrent use.
type tracker struct {
	base int64  // seq of slots[head]
	head int    // ring index of base
	n    int    // slots in use
	done []bool // ring buffer, len is a power of two
	// offs and seqs are the positions (Offset, Seq), same ring: apart, so
	// that a Kafka position (no Seq) is stored without writing a pointer
	// (see add).
	offs []int64
	seqs []string
	at   []int64 // arrival times (Unix nanoseconds), same ring

	last    record.Position // position of the newest completed-contiguous record
	hasLast bool
	// doneAhead counts the records complete above the watermark (out of
	// order, waiting for an older one).
	doneAhead int
	// lowSince is when the ring was last seen less than an eighth full
	// with nothing between (see trim); zero if it is not.
	lowSince time.Time
}

func newTracker() *tracker {
	return &tracker{done: make([]bool, trackerMinSize), offs: make([]int64, trackerMinSize),
		seqs: make([]string, trackerMinSize), at: make([]int64, trackerMinSize)}
}

// posAt is the position in ring slot i.
func (t *tracker) posAt(i int) record.Position {
	return record.Position{Offset: t.offs[i], Seq: t.seqs[i]}
}

// add registers the next record in arrival order, which arrived at the
// given time (Unix nanoseconds), and returns its seq.
func (t *tracker) add(p record.Position, arrived int64) int64 {
	if t.n == len(t.done) {
		t.grow()
	}
	i := (t.head + t.n) & (len(t.done) - 1)
	t.done[i] = false
	t.offs[i] = p.Offset
	// A string is a pointer, whose every write the garbage collector's
	// write barrier sees while it runs: Kafka positions write none.
	if p.Seq != "" || t.seqs[i] != "" {
		t.seqs[i] = p.Seq
	}
	t.at[i] = arrived
	t.n++
	return t.base + int64(t.n-1)
}

func (t *tracker) grow() { t.resize(len(t.done) * 2) }

// trackerMinSize is the ring's initial and smallest size.
const trackerMinSize = 1024

// trackerShrinkAfter is how long a ring must have been less than an
// eighth full before trim halves it.
const trackerShrinkAfter = time.Second

// trim halves the ring once it has been less than an eighth full for
// trackerShrinkAfter, so that a lane that once held a long backlog does
// not keep its ring (33 bytes a slot) for the rest of its life, while a
// lane whose backlog comes and goes keeps it rather than copying it back
// and forth.
func (t *tracker) trim(now time.Time) {
	if len(t.done) <= trackerMinSize || t.n >= len(t.done)/8 {
		t.lowSince = time.Time{}
		return
	}
	if t.lowSince.IsZero() {
		t.lowSince = now
		return
	}
	if now.Sub(t.lowSince) >= trackerShrinkAfter {
		t.resize(len(t.done) / 2)
		t.lowSince = now
	}
}

// resize moves the ring to arrays of size slots (a power of two, at least
// t.n), the oldest slot first.
func (t *tracker) resize(size int) {
	done := make([]bool, size)
	offs := make([]int64, size)
	seqs := make([]string, size)
	at := make([]int64, size)
	for k := 0; k < t.n; k++ {
		j := (t.head + k) & (len(t.done) - 1)
		done[k] = t.done[j]
		offs[k] = t.offs[j]
		seqs[k] = t.seqs[j]
		at[k] = t.at[j]
	}
	t.done, t.offs, t.seqs, t.at, t.head = done, offs, seqs, at, 0
}

// complete marks seq complete. It reports whether the contiguous watermark
// moved. Completing a seq twice or one not added is a no-op.
func (t *tracker) complete(seq int64) bool {
	k := seq - t.base
	if k < 0 || k >= int64(t.n) {
		return false
	}
	mask := len(t.done) - 1
	i := (t.head + int(k)) & mask
	if t.done[i] {
		return false
	}
	t.done[i] = true
	if k != 0 {
		t.doneAhead++
		return false
	}
	t.done[i] = false
	t.advance(1)
	return true
}

// completeRun marks the n seqs from seq on complete, as complete does one
// by one, and reports whether the watermark moved. A run that starts at
// the watermark (every batch under ordering partition) moves it in one
// step.
func (t *tracker) completeRun(seq int64, n int) bool {
	if seq != t.base || n > t.n || n < 1 {
		moved := false
		for i := range int64(n) {
			if t.complete(seq + i) {
				moved = true
			}
		}
		return moved
	}
	mask := len(t.done) - 1
	for k := 0; k < n; k++ {
		if i := (t.head + k) & mask; t.done[i] {
			// completed before, out of order
			t.done[i] = false
			t.doneAhead--
		}
	}
	t.advance(n)
	return true
}

// advance moves the watermark over the n slots from the head, which are
// complete and cleared, and then over the slots completed ahead of them.
func (t *tracker) advance(n int) {
	mask := len(t.done) - 1
	last := (t.head + n - 1) & mask
	t.head = (t.head + n) & mask
	t.base += int64(n)
	t.n -= n
	for t.n > 0 && t.done[t.head] {
		t.doneAhead--
		t.done[t.head] = false
		last = t.head
		t.head = (t.head + 1) & mask
		t.base++
		t.n--
	}
	t.last = t.posAt(last)
	t.hasLast = true
}

// incomplete returns the number of records added and not complete.
func (t *tracker) incomplete() int { return t.n - t.doneAhead }

// watermark returns the position of the newest record such that it and
// every record before it are complete; ok is false while none is.
func (t *tracker) watermark() (p record.Position, ok bool) { return t.last, t.hasLast }

// pending returns the number of records added but not yet below the
// watermark.
func (t *tracker) pending() int { return t.n }

// isComplete reports whether seq was completed (or is below the watermark).
func (t *tracker) isComplete(seq int64) bool {
	k := seq - t.base
	if k < 0 {
		return true
	}
	if k >= int64(t.n) {
		return false
	}
	return t.done[(t.head+int(k))&(len(t.done)-1)]
}

// oldest returns the position and arrival time (Unix nanoseconds) of the
// oldest record not complete; ok is false when every record added is.
func (t *tracker) oldest() (p record.Position, arrived int64, ok bool) {
	if t.n == 0 {
		return record.Position{}, 0, false
	}
	return t.posAt(t.head), t.at[t.head], true
}
