package checkpoint

import (
	"context"
	"strconv"
	"testing"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
)

var benchModes = []Config{
	{Mode: ModePosition},
	{Mode: ModeTemplate, Template: "header:message_id"},
	{Mode: ModeOff},
}

// BenchmarkClaimMarkBatch500 is the Redis work of one batch of 500 new
// records against a real redis-server on loopback: Claim, then MarkDone,
// then (position mode) the Commit that trims the done set. Keys are made
// outside the timer (see BenchmarkKeyOf500).
func BenchmarkClaimMarkBatch500(b *testing.B) {
	const n = 500
	addr := testenv.Redis(b)
	for _, cfg := range benchModes {
		b.Run(string(cfg.Mode), func(b *testing.B) {
			s := open(b, addr, cfg)
			ctx := context.Background()
			recs := make([]record.Record, n)
			var off int64
			b.ReportAllocs()
			b.ResetTimer()
			keys := make([]Key, n) // ModeOff: the zero Keys, as its KeyOf makes
			for i := 0; i < b.N; i++ {
				if cfg.Mode != ModeOff {
					// New records every batch; a pause of the timer costs
					// microseconds, nothing beside a Redis round trip.
					b.StopTimer()
					for j := range recs {
						recs[j] = msg(p0, off, "bench-"+strconv.FormatInt(off, 10))
						off++
					}
					keys = keysOf(b, s, recs...)
					b.StartTimer()
				}
				c, err := s.Claim(ctx, p0, 1, keys)
				if err != nil || c.Claimed != n {
					b.Fatalf("Claim = %d claimed, %v", c.Claimed, err)
				}
				if err := s.MarkDone(ctx, p0, 1, keys); err != nil {
					b.Fatal(err)
				}
				if cfg.Mode == ModePosition {
					if err := s.Commit(ctx, p0, 1, recs[n-1].Position); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkKeyOf500 is the cost of making the keys of a batch of 500.
func BenchmarkKeyOf500(b *testing.B) {
	const n = 500
	addr := testenv.Redis(b)
	for _, cfg := range append(benchModes, Config{Mode: ModeTemplate, Template: "json:/message_id"}) {
		b.Run(string(cfg.Mode)+"/"+cfg.Template, func(b *testing.B) {
			s := open(b, addr, cfg)
			recs := make([]record.Record, n)
			for j := range recs {
				recs[j] = msg(p0, int64(j), "bench-"+strconv.Itoa(j))
			}
			keys := make([]Key, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range recs {
					k, err := s.KeyOf(&recs[j])
					if err != nil {
						b.Fatal(err)
					}
					keys[j] = k
				}
			}
		})
	}
}
