package checkpoint

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
)

// Redis calls are one round trip per batch, whatever its size: the
// package documentation's costs are what this measures (bytes included).
// In position mode a batch of consecutive records is one run, so its bytes
// do not grow with its size either.
func TestRoundTripsPerBatch(t *testing.T) {
	addr := testenv.Redis(t)
	const n = 500
	for _, tc := range []struct {
		cfg Config
		// upper bounds of bytes sent for Claim + MarkDone of 500 keys
		maxWritten int64
	}{
		{Config{Mode: ModePosition}, 1 << 10}, // one run, whatever n
		{Config{Mode: ModeTemplate, Template: "header:message_id"}, 96 << 10},
	} {
		t.Run(string(tc.cfg.Mode), func(t *testing.T) {
			h := &counter{}
			cfg := tc.cfg
			cfg.hooks = []redis.Hook{h}
			s := open(t, addr, cfg)
			ctx := context.Background()
			batch := func(p record.Partition, from int64) []Key {
				recs := make([]record.Record, n)
				for i := range recs {
					off := from + int64(i)
					// A typical id: a device's UUID-like message id.
					recs[i] = msg(p, off, "3f2a9c1e-7b4d-4e0a-9f6b-"+strconv.FormatInt(100000000000+off, 10))
				}
				return keysOf(t, s, recs...)
			}
			// Warm up: the first call of each script after a connection or
			// a Redis restart loads it (EVALSHA, NOSCRIPT, EVAL).
			warm := batch(p1, 0)
			claim(t, s, p1, 1, warm)
			markDone(t, s, p1, 1, warm)
			commit(t, s, p1, 1, record.Position{Offset: n - 1})
			_ = s.Release(ctx, p1, 1, warm)

			keys := batch(p0, 1_000_000)
			// Position mode: the host passes the positions of the batch,
			// which arrived one after another: one run.
			var ps delivered
			for i := range n {
				ps.pos = append(ps.pos, record.Position{Offset: 1_000_000 + int64(i)})
				ps.at = append(ps.at, i)
			}
			h.reset()
			if cfg.Mode == ModePosition {
				if got := claimPositions(t, s, p0, 1, ps); got != repeat('C', n) {
					t.Fatalf("ClaimPositions = %s", got)
				}
			} else if got := claim(t, s, p0, 1, keys); got != repeat('C', n) {
				t.Fatalf("Claim = %s", got)
			}
			claimRT, claimW, claimR := h.roundTrips(), h.written.Load(), h.readByte.Load()
			if cfg.Mode == ModePosition {
				markPositions(t, s, p0, 1, ps)
			} else {
				markDone(t, s, p0, 1, keys)
			}
			rt, w, r := h.roundTrips(), h.written.Load(), h.readByte.Load()
			t.Logf("%s, %d keys: Claim %d round trip, %d B sent, %d B received; MarkDone %d round trip, %d B sent, %d B received",
				cfg.Mode, n, claimRT, claimW, claimR, rt-claimRT, w-claimW, r-claimR)
			if rt > 2 {
				t.Fatalf("Claim + MarkDone of %d keys took %d round trips, want at most 2", n, rt)
			}
			if w > tc.maxWritten {
				t.Fatalf("Claim + MarkDone of %d keys sent %d bytes, want at most %d", n, w, tc.maxWritten)
			}

			h.reset()
			commit(t, s, p0, 1, record.Position{Offset: 1_000_000 + n - 1})
			if err := s.Release(ctx, p0, 1, keys); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: Commit + Release: %d round trips, %d B sent, %d B received",
				cfg.Mode, h.roundTrips(), h.written.Load(), h.readByte.Load())
			want := int64(2)
			if cfg.Mode == ModePosition {
				want = 1 // Release has nothing to do
			}
			if h.roundTrips() != want {
				t.Fatalf("Commit + Release took %d round trips, want %d", h.roundTrips(), want)
			}
		})
	}
}
