package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// BenchmarkConsume measures what the source costs per record on top of
// franz-go: "plain" drains a topic with a bare consumer-group client (no
// pools, records dropped), "source" with a Source whose lanes give every
// delivery back at once. Both read the same topic from the in-process broker,
// seeded as weir loadtest bench seeds it (100-byte values, 1,000 keys, 8
// partitions, franz-go's default compression, 1 MiB producer batches), so the
// broker's own cost is in both and the difference is the source's. One op is
// one record; allocations are the whole process's, broker included.
func BenchmarkConsume(b *testing.B) {
	e, err := StartEmbedded()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const topic, total = "bench", 400_000
	seed(b, e, topic, total)
	group := 0
	run := func(b *testing.B, consume func(b *testing.B, group string, n int)) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.ResetTimer()
		for left := b.N; left > 0; left -= total {
			group++
			consume(b, "g"+strconv.Itoa(group), min(left, total))
		}
		b.StopTimer()
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	b.Run("plain", func(b *testing.B) {
		run(b, func(b *testing.B, group string, n int) {
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(512<<10))
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			for got := 0; got < n; {
				fs := cl.PollFetches(context.Background())
				if err := fs.Err0(); err != nil {
					b.Fatal(err)
				}
				got += fs.NumRecords()
			}
		})
	})
	b.Run("source", func(b *testing.B) {
		run(b, func(b *testing.B, group string, n int) {
			src, err := New(Config{Client: []kgo.Opt{kgo.SeedBrokers(e.Addrs()...)}, Topics: []string{topic},
				Group: group, Logger: zerolog.Nop(), FetchMaxBytes: 512 << 10})
			if err != nil {
				b.Fatal(err)
			}
			l := &drain{want: int64(n), done: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- src.Run(ctx, l) }()
			select {
			case <-l.done:
			case err := <-ran:
				b.Fatalf("Run returned early: %v", err)
			case <-time.After(2 * time.Minute):
				b.Fatalf("consumed %d of %d records in 2 minutes", l.got.Load(), n)
			}
			cancel()
			if err := <-ran; err != nil {
				b.Fatal(err)
			}
		})
	})
}

// seed produces n records to topic as weir loadtest bench does.
func seed(b *testing.B, e *Embedded, topic string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000), kgo.DefaultProduceTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(e.Addrs()...)}, 8, topic); err != nil {
		b.Fatal(err)
	}
	errs := make(chan error, 1)
	var failed atomic.Bool
	for i := range n {
		v := fmt.Appendf(make([]byte, 0, 100), "WL1 %016x %016x ", i, time.Now().UnixNano())
		for len(v) < 100 {
			v = append(v, '.')
		}
		cl.Produce(ctx, &kgo.Record{Key: []byte("k" + strconv.Itoa(i%1000)), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil && failed.CompareAndSwap(false, true) {
				errs <- err
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// drain is a sources.Lanes that gives every delivery back at once, and
// closes done once want records came.
type drain struct {
	want int64
	got  atomic.Int64
	done chan struct{}
}

func (d *drain) Assign(context.Context, []sources.Claim)    {}
func (d *drain) Revoke(context.Context, []record.Partition) {}
func (d *drain) Lost(context.Context, []record.Partition)   {}
func (d *drain) Deliver(_ record.Partition, recs []record.Record) {
	n := int64(len(recs))
	sources.PutRecords(recs)
	if d.got.Add(n) >= d.want && d.got.Load()-n < d.want {
		close(d.done)
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
