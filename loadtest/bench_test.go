package loadtest_test

// Benchmarks of the hot paths that live outside host internals (the host's
// own are in host/tracker_test.go). Run them with
//
//	go test -run '^$' -bench . -benchmem ./loadtest/

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
	"github.com/weirhq/weir/plugins/pb"
	"github.com/weirhq/weir/record"
)

// TestMain lets this test binary serve the builtin handlers, for the plugin
// round-trip benchmark.
func TestMain(m *testing.M) {
	plugins.ServeBuiltinIfRequested(builtin.Handlers())
	os.Exit(m.Run())
}

const batchSize = 500

func BenchmarkGeneratorRecord(b *testing.B) {
	g := loadtest.NewGenerator(100, 1000)
	now := time.Now()
	b.SetBytes(100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = g.Record(int64(i), now)
	}
}

func BenchmarkVerifierObserve(b *testing.B) {
	g := loadtest.NewGenerator(100, 1000)
	const n = 1 << 20
	vals := make([][]byte, 4096)
	now := time.Now()
	for i := range vals {
		vals[i] = g.AppendValue(nil, int64(i), now)
	}
	v := loadtest.NewVerifier(n, true, now)
	written := now.Add(time.Millisecond)
	b.SetBytes(100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%n == 0 {
			v = loadtest.NewVerifier(n, true, now)
		}
		j := i % len(vals)
		v.Observe(g.Key(int64(j)), vals[j], written, written)
	}
}

// pbBatch is a 500-record batch of 100-byte values as the host sends it.
func pbBatch() *pb.Batch {
	g := loadtest.NewGenerator(100, 1000)
	now := time.Now()
	recs := make([]pb.Record, batchSize)
	ptrs := make([]*pb.Record, batchSize)
	for i := range recs {
		recs[i].Key = g.Key(int64(i))
		recs[i].Value = g.AppendValue(nil, int64(i), now)
		recs[i].TimestampUnixNano = now.UnixNano()
		recs[i].Offset = int64(i)
		ptrs[i] = &recs[i]
	}
	return &pb.Batch{Pipeline: "bench", Stream: "in", Partition: "0", Attempt: 1, Records: ptrs}
}

func BenchmarkProtoBatch500Marshal(b *testing.B) {
	batch := pbBatch()
	buf, _ := proto.Marshal(batch)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	opts := proto.MarshalOptions{}
	for b.Loop() {
		var err error
		if buf, err = opts.MarshalAppend(buf[:0], batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProtoBatch500Unmarshal(b *testing.B) {
	buf, err := proto.Marshal(pbBatch())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var out pb.Batch
		if err := proto.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProtoResult500RoundTrip encodes and decodes the result of an
// echo handler for a 500-record batch: 500 outputs.
func BenchmarkProtoResult500RoundTrip(b *testing.B) {
	in := pbBatch()
	outs := make([]*pb.Output, batchSize)
	for i, r := range in.Records {
		outs[i] = &pb.Output{Index: uint32(i), Sink: "out", Key: r.Key, Value: r.Value}
	}
	res := &pb.Result{Outputs: outs}
	buf, _ := proto.Marshal(res)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], res); err != nil {
			b.Fatal(err)
		}
		var out pb.Result
		if err := proto.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPluginRoundTrip500 is one Handle call of a 500-record batch to
// the builtin handler (a plugin subprocess over gRPC), through the exported
// plugins.Pool: conversion, encoding, the RPC and the reply.
func BenchmarkPluginRoundTrip500(b *testing.B) {
	for _, name := range []string{"noop", "echo"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			pool, err := plugins.NewPool(ctx, plugins.PoolConfig{Builtin: name, Instances: 1, Timeout: 10 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close(ctx)
			g := loadtest.NewGenerator(100, 1000)
			now := time.Now()
			recs := make([]record.Record, batchSize)
			for i := range recs {
				recs[i] = record.Record{Key: g.Key(int64(i)), Value: g.AppendValue(nil, int64(i), now), Timestamp: now,
					Partition: record.Partition{Stream: "in", ID: "0"}, Position: record.Position{Offset: int64(i)}}
			}
			batch := &plugins.Batch{Pipeline: "bench", Stream: "in", Partition: "0", Attempt: 1, Records: recs}
			b.SetBytes(batchSize * 100)
			b.ReportAllocs()
			for b.Loop() {
				res, err := pool.Handle(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if name == "echo" && len(res.Outputs) != batchSize {
					b.Fatalf("%d outputs, want %d", len(res.Outputs), batchSize)
				}
			}
			b.ReportMetric(float64(b.N)*batchSize/b.Elapsed().Seconds(), "records/s")
		})
	}
}
