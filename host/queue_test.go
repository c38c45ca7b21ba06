package host

import (
	"math"
	"testing"
	"time"
)

// The lane's queue moves back to the start of its array instead of growing
// into new ones as batches are taken off its front, keeps its records in
// order, and leaves no stale pointer behind it in the array.
func TestQueueReusesItsArray(t *testing.T) {
	l := &lane{pl: &pipeline{cfg: testPipelineConfig()}}
	items := make([]item, 100)
	next := 0
	push := func(k int) {
		l.makeRoom(k)
		for range k {
			l.queue = append(l.queue, &items[next])
			next++
		}
	}
	pop := func(k int) { // as dispatch takes a batch
		t.Helper()
		l.pl.cfg.Batch.MaxRecords = k
		batch, _ := l.take(time.Now(), math.MaxInt64, true)
		if len(batch) != k {
			t.Fatalf("took %d records, want %d", len(batch), k)
		}
		clear(batch)
	}
	check := func(first int) {
		t.Helper()
		for i, it := range l.queue {
			if it != &items[first+i] {
				t.Fatalf("queue[%d] is not item %d", i, first+i)
			}
		}
		// Outside the window, the array holds nothing.
		start := cap(l.queueBuf) - cap(l.queue)
		for i, it := range l.queueBuf[:cap(l.queueBuf)] {
			if (i < start || i >= start+len(l.queue)) && it != nil {
				t.Fatalf("array slot %d outside the queue [%d,%d) still points to an item", i, start, start+len(l.queue))
			}
		}
	}
	push(8)
	array := &l.queueBuf[:1][0]
	pop(6) // 2 left, at offset 6
	check(6)
	push(5) // no room at the end: moves to the start of the same array
	if &l.queueBuf[:1][0] != array {
		t.Fatal("the queue moved to a new array with room in its own")
	}
	check(6)
	pop(7) // empty: back at the start
	check(next)
	push(8)
	if &l.queueBuf[:1][0] != array {
		t.Fatal("an emptied queue did not reuse its array")
	}
	check(13)
	push(20) // more than the array holds: a larger one
	if cap(l.queueBuf) < 28 {
		t.Fatalf("array of %d for 28 records", cap(l.queueBuf))
	}
	check(13)
	l.queue = nil // abandoned
	push(3)
	check(41)
}
