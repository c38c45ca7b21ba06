package host

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

func TestTrackerInOrder(t *testing.T) {
	tr := newTracker()
	for i := int64(0); i < 5; i++ {
		if seq := tr.add(record.Position{Offset: 100 + i}, 0); seq != i {
			t.Fatalf("seq = %d, want %d", seq, i)
		}
	}
	if _, ok := tr.watermark(); ok {
		t.Fatal("watermark before any completion")
	}
	for i := int64(0); i < 5; i++ {
		if !tr.complete(i) {
			t.Fatalf("complete(%d) did not move the watermark", i)
		}
		if p, _ := tr.watermark(); p.Offset != 100+i {
			t.Fatalf("watermark = %d, want %d", p.Offset, 100+i)
		}
	}
	if tr.pending() != 0 {
		t.Fatalf("pending = %d", tr.pending())
	}
}

// Regression guard for ordering key/none: a later batch finishing first must
// not move the commit past an earlier, unfinished record.
func TestTrackerOutOfOrderNeverPassesAGap(t *testing.T) {
	tr := newTracker()
	for i := int64(0); i < 6; i++ {
		tr.add(record.Position{Offset: i * 2}, 0) // offsets with gaps, as after compaction
	}
	for _, s := range []int64{5, 3, 4, 1} {
		if tr.complete(s) {
			t.Fatalf("complete(%d) moved the watermark with seq 0 unfinished", s)
		}
	}
	if _, ok := tr.watermark(); ok {
		t.Fatal("watermark set while seq 0 unfinished")
	}
	if !tr.complete(0) {
		t.Fatal("complete(0) did not move the watermark")
	}
	if p, _ := tr.watermark(); p.Offset != 2 { // seqs 0,1 complete, 2 not
		t.Fatalf("watermark = %d, want 2", p.Offset)
	}
	tr.complete(2)
	if p, _ := tr.watermark(); p.Offset != 10 {
		t.Fatalf("watermark = %d, want 10", p.Offset)
	}
}

func TestTrackerRandomCompletionOrderGrows(t *testing.T) {
	tr := newTracker()
	const n = 5000 // past the initial ring size, so grow runs with a wrapped head
	for i := 0; i < 300; i++ {
		tr.add(record.Position{Offset: int64(i)}, 0)
		tr.complete(int64(i))
	}
	seqs := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		seqs = append(seqs, tr.add(record.Position{Offset: int64(300 + i)}, 0))
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
	completed := map[int64]bool{}
	for _, s := range seqs {
		tr.complete(s)
		completed[s] = true
		p, _ := tr.watermark()
		// every seq at or below the watermark must be completed
		for q := int64(300); q <= p.Offset; q++ {
			if !completed[q] {
				t.Fatalf("watermark %d passes unfinished %d", p.Offset, q)
			}
		}
		if !completed[p.Offset+1] && p.Offset+1 < 300+n {
			continue
		}
	}
	if p, _ := tr.watermark(); p.Offset != 300+n-1 {
		t.Fatalf("final watermark = %d", p.Offset)
	}
}

func TestTrackerIgnoresUnknownAndRepeatedSeqs(t *testing.T) {
	tr := newTracker()
	tr.add(record.Position{Offset: 7}, 0)
	if tr.complete(5) || tr.complete(-1) {
		t.Fatal("unknown seq moved the watermark")
	}
	tr.complete(0)
	if tr.complete(0) {
		t.Fatal("repeated completion moved the watermark")
	}
}

func BenchmarkTracker(b *testing.B) {
	tr := newTracker()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s := tr.add(record.Position{Offset: int64(i)}, 0)
		tr.complete(s)
	}
}

// incomplete counts records not complete, whether they are below or above
// records completed out of order (the lag split counts on it).
func TestTrackerIncompleteAndOldest(t *testing.T) {
	tr := newTracker()
	for i := range int64(5) {
		tr.add(record.Position{Offset: 10 + i}, 100+i)
	}
	tr.complete(2)
	tr.complete(4)
	tr.complete(4) // twice: no-op
	if got := tr.incomplete(); got != 3 {
		t.Fatalf("incomplete = %d, want 3", got)
	}
	if p, at, ok := tr.oldest(); !ok || p.Offset != 10 || at != 100 {
		t.Fatalf("oldest = %v %d %v, want offset 10 arrived 100", p, at, ok)
	}
	tr.complete(0)
	tr.complete(1) // the watermark moves over 1 and 2
	if got := tr.incomplete(); got != 1 {
		t.Fatalf("incomplete = %d, want 1 (offset 13)", got)
	}
	if p, _, _ := tr.oldest(); p.Offset != 13 {
		t.Fatalf("oldest = %v, want 13", p)
	}
	if !tr.isComplete(4) || tr.isComplete(3) || !tr.isComplete(0) {
		t.Fatal("isComplete wrong")
	}
	tr.complete(3)
	if _, _, ok := tr.oldest(); ok || tr.incomplete() != 0 {
		t.Fatalf("after all complete: oldest ok %v incomplete %d", ok, tr.incomplete())
	}
}

// TestTrackerShrinksAfterABacklog: a lane that once held a long backlog
// gives the ring back as it drains, and keeps tracking correctly while it
// shrinks.
func TestTrackerShrinksAfterABacklog(t *testing.T) {
	tr := newTracker()
	const n = 100_000
	for i := 0; i < n; i++ {
		tr.add(record.Position{Offset: int64(i)}, 0)
	}
	peak := len(tr.done)
	if peak < n {
		t.Fatalf("ring of %d slots for %d records", peak, n)
	}
	// Complete all but the last 10, out of order within each pair.
	for i := 0; i < n-10; i += 2 {
		tr.complete(int64(i + 1))
		tr.complete(int64(i))
	}
	now := time.Now()
	tr.trim(now)
	if got := len(tr.done); got != peak {
		t.Fatalf("ring shrank at once, to %d slots: a backlog that comes and goes would copy it back and forth", got)
	}
	for i := 0; len(tr.done) > trackerMinSize; i++ {
		if i > 20 {
			t.Fatalf("ring still %d slots (peak %d) with %d records pending", len(tr.done), peak, tr.pending())
		}
		now = now.Add(trackerShrinkAfter)
		tr.trim(now)
	}
	if pos, ok := tr.watermark(); !ok || pos.Offset != n-11 {
		t.Fatalf("watermark %v %v, want offset %d", pos, ok, n-11)
	}
	for i := n - 10; i < n; i++ {
		tr.complete(int64(i))
	}
	if pos, _ := tr.watermark(); pos.Offset != n-1 || tr.pending() != 0 {
		t.Fatalf("watermark %d, %d pending after completing everything", pos.Offset, tr.pending())
	}
}

// completeRun is complete of each seq of the run, whatever was completed
// before it, in or out of order: the same watermark, the same counts, after
// every run.
func TestTrackerCompleteRunIsCompleteOfEach(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 200 {
		one, runs := newTracker(), newTracker()
		n := 1 + rng.IntN(3000) // past the ring's first size, so it grows
		for i := range n {
			p := record.Position{Offset: int64(10 * i)}
			if i%3 == 0 {
				p.Seq = "s" + strconv.Itoa(i) // Kinesis positions keep their Seq
			}
			one.add(p, int64(i))
			runs.add(p, int64(i))
		}
		for done := 0; done < 4*n; {
			seq, k := int64(rng.IntN(n)), 1+rng.IntN(50)
			if rng.IntN(4) == 0 {
				seq = runs.base // a run from the watermark
			}
			k = min(k, n-int(seq))
			if k < 1 {
				continue
			}
			want := false
			for i := range int64(k) {
				if one.complete(seq + i) {
					want = true
				}
			}
			if got := runs.completeRun(seq, k); got != want {
				t.Fatalf("round %d: completeRun(%d, %d) moved: %v, complete of each: %v", round, seq, k, got, want)
			}
			wp, wok := one.watermark()
			gp, gok := runs.watermark()
			if wp != gp || wok != gok || one.incomplete() != runs.incomplete() || one.pending() != runs.pending() {
				t.Fatalf("round %d: after completeRun(%d, %d): watermark %v %v, incomplete %d, pending %d; complete of each: %v %v, %d, %d",
					round, seq, k, gp, gok, runs.incomplete(), runs.pending(), wp, wok, one.incomplete(), one.pending())
			}
			op, oa, ook := one.oldest()
			rp, ra, rok := runs.oldest()
			if op != rp || oa != ra || ook != rok {
				t.Fatalf("round %d: oldest %v %d %v, want %v %d %v", round, rp, ra, rok, op, oa, ook)
			}
			done += k
		}
	}
}
