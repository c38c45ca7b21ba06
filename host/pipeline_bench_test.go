package host

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// BenchmarkPipelineNoop measures the host's own cost per record — lanes,
// batches, completions, the commit tracker and committer — with an
// in-process handler that succeeds at once and no outputs, so that neither a
// plugin process nor a broker is in it. One op is one record. Records are
// delivered 500 at a time (a fetch's worth) round-robin over 8 partitions,
// pausing while the in-flight budget is spent, as the source would.
func BenchmarkPipelineNoop(b *testing.B) {
	for _, ord := range []config.Ordering{config.OrderingPartition, config.OrderingKey} {
		b.Run(string(ord), func(b *testing.B) { benchPipeline(b, ord) })
	}
}

// BenchmarkPipelinePool is BenchmarkPipelineNoop with the handler of weir
// loadtest bench: a pool of two builtin noop processes (automatic mTLS, the
// batch file), behind the rollingHandler weir runs. Each delivery's keys and
// values are copied into a buffer of its own, as the Kafka source does. One
// op is one record; cpu-ns/op is this process's (the host's) CPU, without
// the handler processes'.
func BenchmarkPipelinePool(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testPipelineConfig()
	cfg.Handler.Instances = 2
	rh, err := newRollingHandler(ctx, "bench", "", 10*time.Second, zerolog.Nop(), func(ctx context.Context) (*plugins.Pool, error) {
		return plugins.NewPool(ctx, plugins.PoolConfig{Builtin: "noop", Instances: 2, AutoMTLS: true})
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = rh.Close(context.Background()) }()
	benchPipelineWith(b, config.OrderingPartition, rh, true)
}

func benchPipeline(b *testing.B, ord config.Ordering) {
	noop := handlerFunc(func(context.Context, *plugins.Batch) (*plugins.Result, error) {
		return &plugins.Result{}, nil
	})
	benchPipelineWith(b, ord, noop, false)
}

// benchPipelineWith runs the pipeline benchmark with handler; with own,
// each delivery's bytes are copied into a buffer of the delivery's own.
func benchPipelineWith(b *testing.B, ord config.Ordering, handler Dispatcher, own bool) {
	cfg := testPipelineConfig()
	cfg.Ordering = ord
	cfg.Batch = config.Batch{MaxRecords: 1000, MaxBytes: 1 << 20, MaxWait: 5 * time.Millisecond}
	cfg.Handler.Instances = 2
	cfg.CommitInterval = 100 * time.Millisecond
	noop := handler
	src := newFakeSource()
	pl := newPipeline(cfg, zerolog.Nop(), pipelineDeps{src: src, handler: noop,
		info: plugins.Info{Name: "noop"}, sinks: map[string]Sink{}, hostID: "bench"})
	ctx, cancel := context.WithCancel(context.Background())
	pl.cancel = func(error) {}
	done := make(chan struct{})
	go func() { defer close(done); pl.commits.loop(ctx, cfg.CommitInterval) }()
	defer func() { cancel(); <-done }()

	const parts, fetch, keys = 8, 500, 1000
	ps := make([]record.Partition, parts)
	claims := make([]sources.Claim, parts)
	for i := range ps {
		ps[i] = record.KafkaPartition("bench", int32(i))
		claims[i] = sources.Claim{Partition: ps[i], Generation: 1}
	}
	pl.Assign(ctx, claims)
	defer pl.Revoke(context.Background(), ps)
	keyOf := make([][]byte, keys)
	for i := range keyOf {
		keyOf[i] = []byte("key-" + strconv.Itoa(i))
	}
	value := make([]byte, 100)
	next := make([]int64, parts)
	now := time.Now()

	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		for pl.stats.InflightBytes.Load() > cfg.MaxInflightBytes {
			time.Sleep(50 * time.Microsecond)
		}
		p := (sent / fetch) % parts
		n := min(fetch, b.N-sent)
		// A slice per fetch, as the Kafka source builds it (the host owns
		// it, and gives it back to the pool when its records are done).
		recs := sources.GetRecords(n)[:n]
		var buf []byte
		if own {
			buf = sources.GetBytes(recs, n*(len(value)+8))
		}
		for i := range recs {
			off := next[p]
			next[p]++
			key, val := keyOf[off%keys], value
			if own {
				buf = append(buf, key...)
				key = buf[len(buf)-len(key):]
				buf = append(buf, value...)
				val = buf[len(buf)-len(value):]
			}
			recs[i] = record.Record{Key: key, Value: val, Timestamp: now,
				Partition: ps[p], Position: record.Position{Offset: off}}
		}
		pl.Deliver(ps[p], recs)
		sent += n
	}
	for pl.stats.Completed.Load() < int64(b.N) {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
