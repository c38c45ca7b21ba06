package host

import "github.com/weirhq/weir/record"

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
	base int64             // seq of slots[head]
	head int               // ring index of base
	n    int               // slots in use
	done []bool            // ring buffer, len is a power of two
	pos  []record.Position // positions, same ring

	last    record.Position // position of the newest completed-contiguous record
	hasLast bool
}

func newTracker() *tracker {
	const initial = 1024
	return &tracker{done: make([]bool, initial), pos: make([]record.Position, initial)}
}

// add registers the next record in arrival order and returns its seq.
func (t *tracker) add(p record.Position) int64 {
	if t.n == len(t.done) {
		t.grow()
	}
	i := (t.head + t.n) & (len(t.done) - 1)
	t.done[i] = false
	t.pos[i] = p
	t.n++
	return t.base + int64(t.n-1)
}

func (t *tracker) grow() {
	size := len(t.done) * 2
	done := make([]bool, size)
	pos := make([]record.Position, size)
	for k := 0; k < t.n; k++ {
		j := (t.head + k) & (len(t.done) - 1)
		done[k] = t.done[j]
		pos[k] = t.pos[j]
	}
	t.done, t.pos, t.head = done, pos, 0
}

// complete marks seq complete. It reports whether the contiguous watermark
// moved. Completing a seq twice or one not added is a no-op.
func (t *tracker) complete(seq int64) bool {
	k := seq - t.base
	if k < 0 || k >= int64(t.n) {
		return false
	}
	t.done[(t.head+int(k))&(len(t.done)-1)] = true
	if k != 0 {
		return false
	}
	mask := len(t.done) - 1
	for t.n > 0 && t.done[t.head] {
		t.last = t.pos[t.head]
		t.hasLast = true
		t.done[t.head] = false
		t.head = (t.head + 1) & mask
		t.base++
		t.n--
	}
	return true
}

// watermark returns the position of the newest record such that it and
// every record before it are complete; ok is false while none is.
func (t *tracker) watermark() (p record.Position, ok bool) { return t.last, t.hasLast }

// pending returns the number of records added but not yet below the
// watermark.
func (t *tracker) pending() int { return t.n }
