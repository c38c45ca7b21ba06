package checkpoint

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/record"
)

// delivered is a Positions: records in the order a partition delivered
// them. at[i] is record i's index in the partition's delivery order, so
// that record i arrived right after record i-1 when at[i] == at[i-1]+1.
type delivered struct {
	pos []record.Position
	at  []int
}

func (d delivered) Len() int { return len(d.pos) }
func (d delivered) At(i int) (record.Position, bool) {
	return d.pos[i], i > 0 && d.at[i] == d.at[i-1]+1
}

// deliveredOf returns the records of stream at the given indexes (in
// order).
func deliveredOf(stream []record.Position, idx ...int) delivered {
	var d delivered
	for _, i := range idx {
		d.pos = append(d.pos, stream[i])
		d.at = append(d.at, i)
	}
	return d
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func claimPositions(t testing.TB, s *Store, p record.Partition, gen int64, ps Positions) string {
	t.Helper()
	c, err := s.ClaimPositions(context.Background(), p, gen, ps)
	if err != nil {
		t.Fatalf("ClaimPositions: %v", err)
	}
	if c.Claimed+c.Done != ps.Len() || len(c.Status) != ps.Len() {
		t.Fatalf("ClaimPositions: %d claimed + %d done, %d statuses, for %d records", c.Claimed, c.Done, len(c.Status), ps.Len())
	}
	return statuses(c)
}

func markPositions(t testing.TB, s *Store, p record.Partition, gen int64, ps Positions) {
	t.Helper()
	if err := s.MarkPositionsDone(context.Background(), p, gen, ps); err != nil {
		t.Fatalf("MarkPositionsDone: %v", err)
	}
}

// kafkaStream is a partition's records: offsets from 0 with the given
// offsets missing (transaction markers, compacted records).
func kafkaStream(n int, missing ...int64) []record.Position {
	skip := map[int64]bool{}
	for _, m := range missing {
		skip[m] = true
	}
	var out []record.Position
	for o := int64(0); len(out) < n; o++ {
		if !skip[o] {
			out = append(out, record.Position{Offset: o})
		}
	}
	return out
}

// A batch of consecutive records is one member of the done set, whatever
// its size, and a claim finds each of its records done, in any batch.
func TestPositionRunsOneMemberPerBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		ctx := context.Background()
		s := open(t, addr, Config{})
		rdb := raw(t, addr)
		pk := s.partKeys(p0)
		// Offsets 500 and 700 are transaction markers: the records around
		// them arrived one right after the other.
		stream := kafkaStream(1200, 500, 700)
		markPositions(t, s, p0, 1, deliveredOf(stream, span(0, 1000)...))
		if n := rdb.ZCard(ctx, pk.done).Val(); n != 1 {
			t.Fatalf("done set holds %d members after one batch, want 1 run", n)
		}
		if m := rdb.ZRange(ctx, pk.done, 0, -1).Val(); m[0] != "041001:010" {
			t.Fatalf("done set = %q, want the run 0..1001 as LAST:FIRST", m)
		}
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(900, 1100)...)); got != repeat('D', 100)+repeat('C', 100) {
			t.Fatalf("Claim of 900..1100 = %s", got)
		}
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, 3, 499, 698, 1000)); got != "DDDC" {
			t.Fatalf("Claim of single records = %s", got)
		}
		// The same run marked again (a retried call) is stored once.
		markPositions(t, s, p0, 1, deliveredOf(stream, span(0, 1000)...))
		if n := rdb.ZCard(ctx, pk.done).Val(); n != 1 {
			t.Fatalf("done set holds %d members after marking the batch again, want 1", n)
		}
		commit(t, s, p0, 1, stream[998])
		if n := rdb.ZCard(ctx, pk.done).Val(); n != 1 {
			t.Fatalf("a commit below the run's end trimmed it: %d members", n)
		}
		commit(t, s, p0, 1, stream[999])
		if n := rdb.ZCard(ctx, pk.done).Val(); n != 0 {
			t.Fatalf("done set holds %d members after the commit of the run's end, want 0", n)
		}
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(990, 1010)...)); got != repeat('D', 10)+repeat('C', 10) {
			t.Fatalf("after the commit: Claim = %s", got)
		}
	})
}

// A record that did not arrive right after the one before it in a batch
// (one held back under ordering key, one that failed and is being retried)
// splits the run: what lies between is not marked done.
func TestPositionRunsSplitWhereRecordsAreMissing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		s := open(t, addr, Config{})
		stream := kafkaStream(40, 12, 13, 14) // 10, 11, 15, 16 arrive one after another
		// Records 5 and 11 (offsets 5 and 15) are not in the batch.
		idx := append(append(span(0, 5), span(6, 11)...), span(12, 20)...)
		markPositions(t, s, p0, 1, deliveredOf(stream, idx...))
		if n := raw(t, addr).ZCard(context.Background(), s.partKeys(p0).done).Val(); n != 3 {
			t.Fatalf("done set holds %d members, want 3 runs", n)
		}
		want := repeat('D', 5) + "C" + repeat('D', 5) + "C" + repeat('D', 8) + repeat('C', 20)
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(0, 40)...)); got != want {
			t.Fatalf("Claim = %s\n   want %s", got, want)
		}
		// Contiguous offsets join without the word of the host: keys made
		// one by one (no adjacency) are still one run.
		var d delivered
		for o := int64(100); o < 110; o++ {
			d.pos = append(d.pos, record.Position{Offset: o})
			d.at = append(d.at, -10*int(o)) // never adjacent
		}
		markPositions(t, s, p1, 1, d)
		if n := raw(t, addr).ZCard(context.Background(), s.partKeys(p1).done).Val(); n != 1 {
			t.Fatalf("contiguous offsets: %d members, want 1", n)
		}
		// Offsets that are not contiguous and not adjacent do not.
		if got := claimPositions(t, s, p1, 1, deliveredOf(kafkaStream(120), 99, 100, 109, 110)); got != "CDDC" {
			t.Fatalf("around the contiguous run: Claim = %s", got)
		}
	})
}

// Kinesis sequence numbers are never consecutive: a run is the records
// that arrived one right after another, including the user records of
// KPL aggregates (sub-sequence numbers), across a change in the number of
// digits.
func TestPositionRunsKinesis(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		shard := record.Partition{Stream: "readings", ID: "shardId-000000000001"}
		s := open(t, addr, Config{})
		seqs := []string{
			"9999999999999999999999999999999999999999999999999999990",
			"9999999999999999999999999999999999999999999999999999995",
			"10000000000000000000000000000000000000000000000000000002", // one digit longer
			"10000000000000000000000000000000000000000000000000000003",
			"10000000000000000000000000000000000000000000000000000017",
		}
		var stream []record.Position
		for i, q := range seqs {
			stream = append(stream, record.Position{Seq: q})
			if i == 2 { // an aggregate of three user records
				stream = append(stream, record.Position{Seq: q, Offset: 1}, record.Position{Seq: q, Offset: 2})
			}
		}
		// stream: 0:s0 1:s1 2:s2/0 3:s2/1 4:s2/2 5:s3 6:s4
		markPositions(t, s, shard, 4, deliveredOf(stream, 0, 1, 2, 3))
		if n := raw(t, addr).ZCard(context.Background(), s.partKeys(shard).done).Val(); n != 1 {
			t.Fatalf("done set holds %d members, want 1 run", n)
		}
		if got := claimPositions(t, s, shard, 4, deliveredOf(stream, span(0, 7)...)); got != "DDDDCCC" {
			t.Fatalf("Claim = %s", got)
		}
		// s2/2 failed and is retried; s3 and s4 were marked meanwhile.
		markPositions(t, s, shard, 4, deliveredOf(stream, 5, 6))
		if got := claimPositions(t, s, shard, 4, deliveredOf(stream, span(0, 7)...)); got != "DDDDCDD" {
			t.Fatalf("with s2/2 outstanding: Claim = %s", got)
		}
		markPositions(t, s, shard, 4, deliveredOf(stream, 4))
		commit(t, s, shard, 4, stream[3])
		if got := claimPositions(t, s, shard, 4, deliveredOf(stream, span(0, 7)...)); got != "DDDDDDD" {
			t.Fatalf("everything marked: Claim = %s", got)
		}
		// The key form of the same positions agrees.
		var keys []Key
		for _, p := range stream {
			k, err := PositionKey(p)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		if got := claim(t, s, shard, 4, keys); got != "DDDDDDD" {
			t.Fatalf("Claim with keys = %s", got)
		}
	})
}

// A run overlapping stored runs (records marked again after a
// redelivery) is merged with them, so stored runs stay disjoint and a
// claim's scan, which relies on that, finds every done record.
func TestPositionRunsMergeWhenTheyOverlap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		ctx := context.Background()
		s := open(t, addr, Config{})
		rdb := raw(t, addr)
		stream := kafkaStream(100)
		markPositions(t, s, p0, 1, deliveredOf(stream, span(10, 20)...))
		markPositions(t, s, p0, 1, deliveredOf(stream, span(30, 40)...))
		markPositions(t, s, p0, 1, deliveredOf(stream, 50))
		markPositions(t, s, p0, 1, deliveredOf(stream, span(15, 52)...))
		if m := rdb.ZRange(ctx, s.partKeys(p0).done, 0, -1).Val(); len(m) != 1 || m[0] != "0251:0210" {
			t.Fatalf("done set = %q, want the one run 10..51", m)
		}
		want := repeat('C', 10) + repeat('D', 42) + repeat('C', 48)
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(0, 100)...)); got != want {
			t.Fatalf("Claim = %s", got)
		}
	})
}

// Done sets written by weir before runs hold single positions; they are
// read as runs of one, and trimmed by the commit like runs.
func TestPositionRunsReadSinglePositionMembers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		ctx := context.Background()
		s := open(t, addr, Config{})
		rdb := raw(t, addr)
		done := s.partKeys(p0).done
		for _, m := range []string{"0242", "0243", "0299", "03100"} {
			rdb.ZAdd(ctx, done, redis.Z{Member: m})
		}
		stream := kafkaStream(120)
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(40, 45)...)); got != "CCDDC" {
			t.Fatalf("Claim = %s", got)
		}
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(98, 102)...)); got != "CDDC" {
			t.Fatalf("Claim = %s", got)
		}
		markPositions(t, s, p0, 1, deliveredOf(stream, span(43, 60)...))
		if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(40, 62)...)); got != "CC"+repeat('D', 18)+"CC" {
			t.Fatalf("after merging: Claim = %s", got)
		}
		commit(t, s, p0, 1, record.Position{Offset: 99})
		if m := rdb.ZRange(ctx, done, 0, -1).Val(); len(m) != 1 || m[0] != "03100" {
			t.Fatalf("after the commit of 99: done set = %q, want only 100", m)
		}
	})
}

// ClaimPositions and MarkPositionsDone are fenced like Claim and MarkDone,
// refuse other modes, and name a bad position.
func TestPositionRunsFencingAndErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		ctx := context.Background()
		s := open(t, addr, Config{})
		stream := kafkaStream(10)
		if err := s.Fence(ctx, p0, 5); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimPositions(ctx, p0, 4, deliveredOf(stream, 1, 2)); !errors.Is(err, ErrFenced) {
			t.Fatalf("ClaimPositions at an older generation: %v", err)
		}
		if err := s.MarkPositionsDone(ctx, p0, 4, deliveredOf(stream, 1, 2)); !errors.Is(err, ErrFenced) {
			t.Fatalf("MarkPositionsDone at an older generation: %v", err)
		}
		if got := claimPositions(t, s, p0, 5, deliveredOf(stream, 1, 2)); got != "CC" {
			t.Fatalf("the fenced mark landed: Claim = %s", got)
		}
		bad := delivered{pos: []record.Position{{Offset: 1}, {Seq: "12x"}}, at: []int{0, 1}}
		if _, err := s.ClaimPositions(ctx, p0, 5, bad); err == nil || !strings.Contains(err.Error(), `record 1: checkpoint: sequence number "12x" is not decimal`) {
			t.Fatalf("bad position: %v", err)
		}
		tmpl := open(t, addr, Config{Mode: ModeTemplate, Template: "key"})
		if err := tmpl.MarkPositionsDone(ctx, p0, 5, deliveredOf(stream, 1)); err == nil || !strings.Contains(err.Error(), "mode position only") {
			t.Fatalf("template mode: %v", err)
		}
	})
}

// A model of a partition checks ClaimPositions against what was marked,
// over random batches: records missing from batches (held back, retried),
// gaps in offsets, runs marked again, commits of the tracker's watermark.
// A record is done exactly when it was marked or is at or below the
// watermark; a position never delivered is never asked about.
func TestPositionRunsAgainstAModel(t *testing.T) {
	kinds := map[string]func(n int, rng *rand.Rand) []record.Position{
		"kafka with gaps": func(n int, rng *rand.Rand) []record.Position {
			var out []record.Position
			for o := int64(rng.IntN(20)); len(out) < n; o++ {
				if rng.IntN(10) > 0 {
					out = append(out, record.Position{Offset: o})
				}
			}
			return out
		},
		"kinesis aggregates": func(n int, rng *rand.Rand) []record.Position {
			var out []record.Position
			seq := uint64(999_000)
			for len(out) < n {
				seq += uint64(1 + rng.IntN(400))
				q := strconv.FormatUint(seq, 10) + "00000000000000000000000000000000000000000000000"
				subs := 1
				if rng.IntN(4) == 0 {
					subs = 1 + rng.IntN(5)
				}
				for j := 0; j < subs; j++ {
					out = append(out, record.Position{Seq: q, Offset: int64(j)})
				}
			}
			return out
		},
	}
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		for name, gen := range kinds {
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(7, uint64(len(name))))
				s := open(t, addr, Config{})
				const n = 3000
				stream := gen(n, rng)
				marked := make([]bool, n)
				wm := -1 // index of the watermark
				for round := 0; round < 300; round++ {
					from := rng.IntN(n - 50)
					to := from + 1 + rng.IntN(50)
					var idx []int
					for i := from; i < to; i++ {
						if rng.IntN(8) > 0 {
							idx = append(idx, i)
						}
					}
					if len(idx) == 0 {
						continue
					}
					d := deliveredOf(stream, idx...)
					got := claimPositions(t, s, p0, 1, d)
					var want strings.Builder
					for _, i := range idx {
						if i <= wm || marked[i] {
							want.WriteByte('D')
						} else {
							want.WriteByte('C')
						}
					}
					if got != want.String() {
						t.Fatalf("round %d: Claim of %v\n got %s\nwant %s", round, idx, got, want.String())
					}
					if rng.IntN(3) > 0 {
						markPositions(t, s, p0, 1, d)
						for _, i := range idx {
							marked[i] = true
						}
					}
					if rng.IntN(5) == 0 {
						for wm+1 < n && marked[wm+1] {
							wm++
						}
						if wm >= 0 {
							commit(t, s, p0, 1, stream[wm])
						}
					}
				}
				members := raw(t, addr).ZCard(context.Background(), s.partKeys(p0).done).Val()
				t.Logf("%s: %d members left in the done set", name, members)
			})
		}
	})
}
