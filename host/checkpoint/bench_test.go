package checkpoint

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
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

// BenchmarkBatch1000Position is everything the host asks of the store for
// one batch of 1,000 new, consecutive Kafka records in position mode,
// against a real redis-server on loopback: Claim, MarkDone, and the Commit
// that moves the watermark past them. "positions" is what the host does
// (ClaimPositions and MarkPositionsDone: one run); "keys" makes a key per
// record and claims and marks those (each its own run). Besides ns/op
// (mostly waiting for Redis), it reports the CPU of this process and of
// the redis-server per batch.
func BenchmarkBatch1000Position(b *testing.B) {
	const n = 1000
	addr := testenv.Redis(b)
	for _, form := range []string{"positions", "keys"} {
		b.Run(form, func(b *testing.B) {
			s := open(b, addr, Config{Mode: ModePosition})
			ctx := context.Background()
			recs := make([]record.Record, n)
			keys := make([]Key, n)
			ps := delivered{pos: make([]record.Position, n), at: make([]int, n)}
			var off int64
			b.ReportAllocs()
			cpu := startCPU(b, addr)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range recs {
					recs[j].Position = record.Position{Offset: off}
					ps.pos[j], ps.at[j] = recs[j].Position, int(off)
					off++
				}
				var c Claims
				var err error
				if form == "keys" {
					for j := range recs {
						k, err := s.KeyOf(&recs[j])
						if err != nil {
							b.Fatal(err)
						}
						keys[j] = k
					}
					c, err = s.Claim(ctx, p0, 1, keys)
				} else {
					c, err = s.ClaimPositions(ctx, p0, 1, ps)
				}
				if err != nil || c.Claimed != n {
					b.Fatalf("Claim = %d claimed, %v", c.Claimed, err)
				}
				if form == "keys" {
					err = s.MarkDone(ctx, p0, 1, keys)
				} else {
					err = s.MarkPositionsDone(ctx, p0, 1, ps)
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Commit(ctx, p0, 1, recs[n-1].Position); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu.report()
		})
	}
}

// cpuMeter reports the CPU time of this process (the host side: go-redis,
// keys, encoding) and of the redis-server (INFO cpu: the scripts) per
// operation, since ns/op of a call to Redis is mostly waiting.
type cpuMeter struct {
	b          *testing.B
	rc         *redis.Client
	self, srv0 float64
}

func startCPU(b *testing.B, addr string) *cpuMeter {
	m := &cpuMeter{b: b, rc: raw(b, addr)}
	m.self, _ = loadtest.CPUTimes()
	m.srv0 = m.serverCPU()
	return m
}

func (m *cpuMeter) serverCPU() float64 {
	info, err := m.rc.Info(context.Background(), "cpu").Result()
	if err != nil {
		m.b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				m.b.Fatalf("INFO cpu %s: %v", k, err)
			}
			sum += f
		}
	}
	return sum
}

func (m *cpuMeter) report() {
	self, _ := loadtest.CPUTimes()
	srv := m.serverCPU()
	n := float64(m.b.N)
	m.b.ReportMetric((self-m.self)*1e9/n, "host-cpu-ns/op")
	m.b.ReportMetric((srv-m.srv0)*1e9/n, "redis-cpu-ns/op")
}
