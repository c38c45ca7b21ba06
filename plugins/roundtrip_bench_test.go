package plugins_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// BenchmarkPoolRoundTrip sends batches like those of weir loadtest bench
// (1000 records of 100 or 1024 bytes, keys of 1000, a timestamp and an
// offset) to a pool of one builtin noop or echo process over automatic
// mTLS, as weir does, one call at a time. Besides the time per batch it
// reports the CPU time per record of this process (the host side: encoding,
// gRPC, TLS, decoding the reply) and of the handler process (decoding,
// gRPC, TLS, the handler, encoding the reply), which vary less with other
// load on the machine than the time does.
func BenchmarkPoolRoundTrip(b *testing.B) {
	for _, handler := range []string{"noop", "echo"} {
		for _, size := range []int{100, 1024} {
			b.Run(fmt.Sprintf("%s/%dB", handler, size), func(b *testing.B) {
				benchRoundTrip(b, handler, size)
			})
		}
	}
}

func benchRoundTrip(b *testing.B, handler string, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := plugins.NewPool(ctx, plugins.PoolConfig{Builtin: handler, Instances: 1, AutoMTLS: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = pool.Close(context.Background()) }()
	const n = 1000
	recs := make([]record.Record, n)
	now := time.Now()
	for i := range recs {
		recs[i] = record.Record{
			Key:       []byte("k" + strconv.Itoa(i%1000)),
			Value:     bytes.Repeat([]byte{'v'}, size),
			Timestamp: now,
			Position:  record.Position{Offset: int64(1000000 + i)},
		}
	}
	batch := &plugins.Batch{Pipeline: "bench", Stream: "bench-in", Partition: "3", Attempt: 1, Records: recs}
	call := func() {
		res, err := pool.Handle(context.Background(), batch)
		if err != nil {
			b.Fatal(err)
		}
		if handler == "echo" && len(res.Outputs) != n {
			b.Fatalf("%d outputs, want %d", len(res.Outputs), n)
		}
	}
	call() // warm up the connection
	pid := pool.PIDs()[0]
	host0, plugin0 := selfCPU(b), procCPU(b, pid)
	b.SetBytes(int64(n * size))
	b.ResetTimer()
	for b.Loop() {
		call()
	}
	b.StopTimer()
	host, plugin := selfCPU(b)-host0, procCPU(b, pid)-plugin0
	recsDone := float64(b.N * n)
	b.ReportMetric(host.Seconds()*1e6/recsDone, "host-µs/rec")
	b.ReportMetric(plugin.Seconds()*1e6/recsDone, "plugin-µs/rec")
}

// selfCPU is the user and system CPU time of this process so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user and system CPU time of process pid so far, from
// /proc (in clock ticks of 10ms: run the benchmark for seconds).
func procCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	// The fields after the command name (which may hold spaces), from
	// field 3 on: utime and stime are fields 14 and 15.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parsing /proc/%d/stat: %q", pid, stat)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(utime+stime) * tick
}
