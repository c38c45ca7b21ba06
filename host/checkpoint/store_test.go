package checkpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

func TestPositionMode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, wait func(time.Duration)) {
		ctx := context.Background()
		cfg := Config{KeyPrefix: uniquePrefix()}
		s := open(t, addr, cfg)
		rdb := raw(t, addr)
		pk := s.partKeys(p0)
		const gen = 3
		if err := s.Fence(ctx, p0, gen); err != nil {
			t.Fatal(err)
		}

		a, b, c := offsets(t, 0, 10), offsets(t, 10, 20), offsets(t, 20, 30)
		all := offsets(t, 0, 30)
		if got := claim(t, s, p0, gen, all); got != repeat('C', 30) {
			t.Fatalf("fresh partition: Claim = %s", got)
		}

		// Batches complete out of order (ordering: key or none): c, then a.
		markDone(t, s, p0, gen, c)
		markDone(t, s, p0, gen, a)
		if got := claim(t, s, p0, gen, all); got != repeat('D', 10)+repeat('C', 10)+repeat('D', 10) {
			t.Fatalf("after marking a and c: Claim = %s", got)
		}
		// The tracker's watermark moves to 9 (a is complete, b is not).
		commit(t, s, p0, gen, record.Position{Offset: 9})
		if m := rdb.ZRange(ctx, pk.done, 0, -1).Val(); len(m) != 1 || m[0] != "0229:0220" {
			t.Fatalf("done set = %q after the commit of 9, want c's run 20..29", m)
		}
		if got := claim(t, s, p0, gen, all); got != repeat('D', 10)+repeat('C', 10)+repeat('D', 10) {
			t.Fatalf("after commit 9: Claim = %s", got)
		}

		markDone(t, s, p0, gen, b)
		commit(t, s, p0, gen, record.Position{Offset: 29})
		if n := rdb.ZCard(ctx, pk.done).Val(); n != 0 {
			t.Fatalf("done set holds %d runs after the commit of 29, want 0: the watermark covers them", n)
		}
		// Marking positions at or below the watermark adds nothing.
		markDone(t, s, p0, gen, a)
		if n := rdb.ZCard(ctx, pk.done).Val(); n != 0 {
			t.Fatalf("done set holds %d positions after re-marking a, want 0", n)
		}

		// A restart (a new Store, a new process) sees what is done.
		s2 := open(t, addr, cfg)
		if got := claim(t, s2, p0, gen, offsets(t, 0, 36)); got != repeat('D', 30)+repeat('C', 6) {
			t.Fatalf("after a restart: Claim = %s", got)
		}
		pos, g, ok, err := s2.Load(ctx, p0)
		if err != nil || !ok || pos.Offset != 29 || g != gen {
			t.Fatalf("Load = %v gen %d ok %v err %v; want 29 at generation %d", pos, g, ok, err, gen)
		}
		// Other partitions and pipelines are apart.
		if got := claim(t, s2, p1, gen, offsets(t, 0, 3)); got != "CCC" {
			t.Fatalf("partition 1: Claim = %s", got)
		}
		other := open(t, addr, Config{KeyPrefix: cfg.KeyPrefix, Pipeline: "other"})
		if got := claim(t, other, p0, gen, offsets(t, 0, 3)); got != "CCC" {
			t.Fatalf("pipeline other: Claim = %s", got)
		}

		// A checkpoint never moves backwards.
		commit(t, s, p0, gen, record.Position{Offset: 12})
		if pos, _, _, _ := s.Load(ctx, p0); pos.Offset != 29 {
			t.Fatalf("Load after committing 12 below 29 = %v", pos)
		}

		// Marks are forgotten TTL after the partition's last mark or commit.
		short := open(t, addr, Config{KeyPrefix: uniquePrefix(), TTL: 300 * time.Millisecond, ClaimTTL: 100 * time.Millisecond})
		markDone(t, short, p0, 1, offsets(t, 0, 2))
		commit(t, short, p0, 1, record.Position{Offset: 0})
		if got := claim(t, short, p0, 1, offsets(t, 0, 2)); got != "DD" {
			t.Fatalf("before the TTL: Claim = %s", got)
		}
		wait(400 * time.Millisecond)
		if got := claim(t, short, p0, 1, offsets(t, 0, 2)); got != "CC" {
			t.Fatalf("after the TTL: Claim = %s", got)
		}
		if _, _, ok, _ := short.Load(ctx, p0); !ok {
			t.Fatal("the checkpoint expired with the marks; it must be kept")
		}
	})
}

// Kafka offsets have gaps (transaction markers, compaction); the watermark
// moves with the commit, which knows which offsets exist, not with n+1.
// TestPositionModeClaimLooksUpTheBatchRange: the claim script asks the done
// set once for the batch's range of positions and per position only when
// that range holds something; the range must compare positions as numbers
// (9 < 10 < 99 < 100), whatever order the batch lists them in.
func TestPositionModeClaimLooksUpTheBatchRange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, wait func(time.Duration)) {
		s := open(t, addr, Config{KeyPrefix: uniquePrefix()})
		const gen = 1
		if err := s.Fence(context.Background(), p0, gen); err != nil {
			t.Fatal(err)
		}
		at := func(offs ...int64) []Key {
			var keys []Key
			for _, o := range offs {
				keys = append(keys, offsets(t, o, o+1)...)
			}
			return keys
		}
		markDone(t, s, p0, gen, at(9, 100))
		for _, c := range []struct {
			offs []int64
			want string
		}{
			{[]int64{10, 11, 50, 99}, "CCCC"}, // between the two: the range holds nothing
			{[]int64{9, 10}, "DC"},
			{[]int64{99, 100}, "CD"},
			{[]int64{100, 9, 50}, "DDC"},
			{[]int64{101, 1000}, "CC"},
			{[]int64{0, 8}, "CC"},
			{[]int64{100}, "D"},
		} {
			if got := claim(t, s, p0, gen, at(c.offs...)); got != c.want {
				t.Errorf("Claim(%v) = %s, want %s", c.offs, got, c.want)
			}
		}
	})
}

func TestPositionModeOffsetGaps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		s := open(t, addr, Config{})
		var keys []Key
		for _, o := range []int64{0, 1, 2, 5, 6, 9} {
			k, _ := PositionKey(record.Position{Offset: o})
			keys = append(keys, k)
		}
		markDone(t, s, p0, 1, keys)
		commit(t, s, p0, 1, record.Position{Offset: 9})
		if n := raw(t, addr).ZCard(context.Background(), s.partKeys(p0).done).Val(); n != 0 {
			t.Fatalf("done set holds %d after the commit of 9", n)
		}
		if got := claim(t, s, p0, 1, keys); got != "DDDDDD" {
			t.Fatalf("Claim = %s", got)
		}
	})
}

func TestPositionModeKinesisSequences(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
		ctx := context.Background()
		shard := record.Partition{Stream: "readings", ID: "shardId-000000000001"}
		s := open(t, addr, Config{})
		seqs := []string{
			"49590338271490256608559692538361571095921575989136588898",
			"49590338271490256608559692538361571095921575989136588899",
			"49590338271490256608559692540925702759324208523137515618",
			"495903382714902566085596925409257027593242085231375156180", // one digit longer
		}
		var keys []Key
		for _, q := range seqs {
			k, err := PositionKey(record.Position{Seq: q})
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		markDone(t, s, shard, 7, []Key{keys[3], keys[1]})
		if got := claim(t, s, shard, 7, keys); got != "CDCD" {
			t.Fatalf("Claim = %s", got)
		}
		commit(t, s, shard, 7, record.Position{Seq: seqs[1]})
		if got := claim(t, s, shard, 7, keys); got != "DDCD" {
			t.Fatalf("after commit of the second: Claim = %s", got)
		}
		pos, gen, ok, err := s.Load(ctx, shard)
		if err != nil || !ok || pos.Seq != seqs[1] || gen != 7 {
			t.Fatalf("Load = %+v gen %d ok %v %v", pos, gen, ok, err)
		}
	})
}

func TestTemplateMode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, addr string, wait func(time.Duration)) {
		ctx := context.Background()
		cfg := Config{Mode: ModeTemplate, Template: "header:message_id", KeyPrefix: uniquePrefix()}
		s := open(t, addr, cfg)

		t.Run("the same message three times in one batch is handled once", func(t *testing.T) {
			keys := keysOf(t, s, msg(p0, 10, "m-1"), msg(p0, 11, "m-1"), msg(p0, 12, "m-1"))
			c, err := s.Claim(ctx, p0, 1, keys)
			if err != nil {
				t.Fatal(err)
			}
			if statuses(c) != "CBB" || c.Claimed != 1 || c.Busy != 2 {
				t.Fatalf("Claim = %s %+v; want the first claimed, the repeats busy", statuses(c), c)
			}
			markDone(t, s, p0, 1, keys[:1])
			c, err = s.Claim(ctx, p0, 1, keys[1:]) // the busy ones, retried
			if err != nil {
				t.Fatal(err)
			}
			if statuses(c) != "DD" || c.Done != 2 {
				t.Fatalf("retry of the repeats: Claim = %s; want both done (dropped)", statuses(c))
			}
		})

		t.Run("the same message in three partitions and processes is handled once", func(t *testing.T) {
			other := open(t, addr, cfg) // another process: another Store
			p2 := record.KafkaPartition("sensor-readings", 2)
			k0 := keysOf(t, s, msg(p0, 20, "m-2"))
			k1 := keysOf(t, s, msg(p1, 7, "m-2"))
			k2 := keysOf(t, other, msg(p2, 3, "m-2"))
			if got := claim(t, s, p0, 1, k0); got != "C" {
				t.Fatalf("first: %s", got)
			}
			if got := claim(t, s, p1, 1, k1); got != "B" {
				t.Fatalf("second, same process: %s", got)
			}
			if got := claim(t, other, p2, 1, k2); got != "B" {
				t.Fatalf("third, other process: %s", got)
			}
			markDone(t, s, p0, 1, k0)
			if got := claim(t, s, p1, 1, k1); got != "D" {
				t.Fatalf("second after done: %s", got)
			}
			if got := claim(t, other, p2, 1, k2); got != "D" {
				t.Fatalf("third after done: %s", got)
			}
		})

		t.Run("release lets a retry claim again", func(t *testing.T) {
			k0 := keysOf(t, s, msg(p0, 30, "m-3"))
			k1 := keysOf(t, s, msg(p1, 30, "m-3"))
			if got := claim(t, s, p0, 1, k0); got != "C" {
				t.Fatal(got)
			}
			if got := claim(t, s, p0, 1, k0); got != "C" {
				t.Fatalf("the same record claiming again (a retry): %s", got)
			}
			if got := claim(t, s, p1, 1, k1); got != "B" {
				t.Fatal(got)
			}
			// p1 releasing what it does not hold changes nothing.
			if err := s.Release(ctx, p1, 1, k1); err != nil {
				t.Fatal(err)
			}
			if got := claim(t, s, p1, 1, k1); got != "B" {
				t.Fatalf("after a foreign release: %s", got)
			}
			if err := s.Release(ctx, p0, 1, k0); err != nil {
				t.Fatal(err)
			}
			if got := claim(t, s, p1, 1, k1); got != "C" {
				t.Fatalf("after the holder released: %s", got)
			}
			if got := claim(t, s, p0, 1, k0); got != "B" {
				t.Fatalf("the releaser is now locked out: %s", got)
			}
		})

		t.Run("a new owner of the partition takes the claims of the old one", func(t *testing.T) {
			// The old owner crashed holding a claim; the new owner has a
			// newer generation and fenced the old one out.
			crashed := open(t, addr, cfg)
			kOld := keysOf(t, crashed, msg(p0, 40, "m-4"))
			if got := claim(t, crashed, p0, 1, kOld); got != "C" {
				t.Fatal(got)
			}
			if got := claim(t, s, p1, 9, keysOf(t, s, msg(p1, 40, "m-4"))); got != "B" {
				t.Fatalf("another partition, even of a newer generation: %s", got)
			}
			if err := s.Fence(ctx, p0, 2); err != nil {
				t.Fatal(err)
			}
			if got := claim(t, s, p0, 2, keysOf(t, s, msg(p0, 40, "m-4"))); got != "C" {
				t.Fatalf("the new owner of p0: %s", got)
			}
		})

		t.Run("claims and marks expire", func(t *testing.T) {
			short := open(t, addr, Config{Mode: ModeTemplate, Template: "json:/message_id",
				TTL: 800 * time.Millisecond, ClaimTTL: 300 * time.Millisecond})
			k0 := keysOf(t, short, msg(p0, 50, "m-5"))
			k1 := keysOf(t, short, msg(p1, 50, "m-5"))
			if got := claim(t, short, p0, 1, k0); got != "C" {
				t.Fatal(got)
			}
			wait(400 * time.Millisecond) // the holder crashed; its claim expires
			if got := claim(t, short, p1, 1, k1); got != "C" {
				t.Fatalf("after the claim TTL: %s", got)
			}
			markDone(t, short, p1, 1, k1)
			if got := claim(t, short, p0, 1, k0); got != "D" {
				t.Fatalf("marked: %s", got)
			}
			wait(900 * time.Millisecond)
			if got := claim(t, short, p0, 1, k0); got != "C" {
				t.Fatalf("after the TTL: %s", got)
			}
		})

		t.Run("long and binary ids are hashed", func(t *testing.T) {
			long := strings.Repeat("z", 200)
			k := keysOf(t, s, msg(p0, 60, long), msg(p0, 61, long+"!"), msg(p0, 62, "\x00\xff"))
			if got := claim(t, s, p0, 2, k); got != "CCC" {
				t.Fatal(got)
			}
			if !strings.Contains(k[0].String(), "/idem/#") {
				t.Fatalf("key %s is not hashed", k[0])
			}
		})

		// s's own counters (other processes' Stores count their own): the
		// duplicates dropped are the two repeats of m-1 and p1's m-2.
		st := s.Stats()
		if st.Duplicates != 3 || st.Busy != 7 || st.Released != 1 || st.MarkedDone != 2 {
			t.Fatalf("Stats = %+v", st)
		}
	})
}

func TestKeysOfAnotherModeAreRefused(t *testing.T) {
	addr, _ := miniRedis.start(t)
	pos := open(t, addr, Config{})
	tmpl := open(t, addr, Config{Mode: ModeTemplate, Template: "key"})
	pk := keysOf(t, pos, msg(p0, 1, "m"))
	tk := keysOf(t, tmpl, msg(p0, 1, "m"))
	if _, err := tmpl.Claim(context.Background(), p0, 1, pk); err == nil || !strings.Contains(err.Error(), "not made by this store's KeyOf") {
		t.Fatalf("template store, position key: %v", err)
	}
	if err := pos.MarkDone(context.Background(), p0, 1, tk); err == nil {
		t.Fatal("position store took a template key")
	}
	if _, err := pos.Claim(context.Background(), p0, 1, []Key{{}}); err == nil {
		t.Fatal("position store took the zero Key")
	}
}

func TestFencing(t *testing.T) {
	for _, mode := range []Config{{}, {Mode: ModeTemplate, Template: "header:message_id"}} {
		t.Run(string(mode.withDefaults().Mode), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, addr string, _ func(time.Duration)) {
				ctx := context.Background()
				oldOwner := open(t, addr, mode)
				mode.KeyPrefix = oldOwner.cfg.KeyPrefix
				newOwner := open(t, addr, mode)
				batch1 := keysOf(t, oldOwner, msg(p0, 100, "f-100"))
				batch2 := keysOf(t, oldOwner, msg(p0, 101, "f-101"))

				// Generation 1 owns the partition and commits.
				if err := oldOwner.Fence(ctx, p0, 1); err != nil {
					t.Fatal(err)
				}
				if got := claim(t, oldOwner, p0, 1, batch1); got != "C" {
					t.Fatal(got)
				}
				markDone(t, oldOwner, p0, 1, batch1)
				commit(t, oldOwner, p0, 1, record.Position{Offset: 100})
				if got := claim(t, oldOwner, p0, 1, batch2); got != "C" {
					t.Fatal(got)
				}

				// Generation 2 takes the partition: fence first.
				if err := newOwner.Fence(ctx, p0, 2); err != nil {
					t.Fatal(err)
				}

				// Every write of generation 1 is now refused.
				checkFenced := func(what string, err error) {
					t.Helper()
					if !errors.Is(err, ErrFenced) {
						t.Fatalf("%s by generation 1 = %v, want ErrFenced", what, err)
					}
					var fe *FencedError
					if !errors.As(err, &fe) || fe.Generation != 1 || fe.Current != 2 || fe.Partition != p0 {
						t.Fatalf("%s: %#v is not a FencedError of generation 1 against 2 on p0", what, fe)
					}
					if !strings.Contains(err.Error(), "iot/sensor-readings/0") || IsUnavailable(err) {
						t.Fatalf("%s: %q", what, err)
					}
				}
				checkFenced("Commit", oldOwner.Commit(ctx, p0, 1, record.Position{Offset: 101}))
				checkFenced("MarkDone", oldOwner.MarkDone(ctx, p0, 1, batch2))
				_, err := oldOwner.Claim(ctx, p0, 1, keysOf(t, oldOwner, msg(p0, 102, "f-102")))
				checkFenced("Claim", err)
				checkFenced("Fence", oldOwner.Fence(ctx, p0, 1))
				if n := oldOwner.Stats().Fenced; n != 4 {
					t.Fatalf("Stats.Fenced = %d, want 4", n)
				}

				// Nothing of theirs landed: the checkpoint and marks are
				// generation 1's last successful ones.
				pos, gen, ok, err := newOwner.Load(ctx, p0)
				if err != nil || !ok || pos.Offset != 100 || gen != 2 {
					t.Fatalf("Load = %v gen %d ok %v %v; want 100 at generation 2", pos, gen, ok, err)
				}
				if got := claim(t, newOwner, p0, 2, append(keysOf(t, newOwner, msg(p0, 100, "f-100")), keysOf(t, newOwner, msg(p0, 101, "f-101"))...)); got != "DC" {
					t.Fatalf("generation 2 sees Claim = %s; want 100 done, 101 not (its mark was refused)", got)
				}

				// Generation 2 writes.
				markDone(t, newOwner, p0, 2, keysOf(t, newOwner, msg(p0, 101, "f-101")))
				commit(t, newOwner, p0, 2, record.Position{Offset: 101})
				if pos, gen, _, _ := newOwner.Load(ctx, p0); pos.Offset != 101 || gen != 2 {
					t.Fatalf("Load = %v gen %d", pos, gen)
				}

				// A commit with a newer generation fences too (generation 3
				// without Fence), and the fence is per partition.
				commit(t, newOwner, p0, 3, record.Position{Offset: 101})
				if err := newOwner.Commit(ctx, p0, 2, record.Position{Offset: 102}); !errors.Is(err, ErrFenced) {
					t.Fatalf("generation 2 after 3 committed: %v", err)
				}
				commit(t, oldOwner, p1, 1, record.Position{Offset: 5})

				// Release is not fenced: it only removes the caller's claims.
				if err := oldOwner.Release(ctx, p0, 1, batch2); err != nil {
					t.Fatalf("Release by generation 1: %v", err)
				}
			})
		})
	}
}
