package iot_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/conformance"
	"github.com/weirhq/weir/record"
)

// BenchmarkHandlerPlugins compares the IoT handler in Go (cmd/iot-handler)
// and in TypeScript, each as one plugin process, on batches of 500
// readings: ns/op is one batch, round trip included; records/s is reported.
//
//	go test -run '^$' -bench HandlerPlugins ./examples/iot/
func BenchmarkHandlerPlugins(b *testing.B) {
	batch := &plugins.Batch{Pipeline: "iot-ingest", Stream: "sensor-readings", Partition: "0", Attempt: 1}
	for i := range 500 {
		k, v := iot.Generate(3, i, 100)
		batch.Records = append(batch.Records, record.Record{Key: k, Value: v, Timestamp: time.Unix(1795600000, 0),
			Position: record.Position{Offset: int64(i)}})
	}
	run := func(b *testing.B, cfg plugins.PoolConfig) {
		pool := conformance.StartPool(b, conformance.Target{Name: "bench", Config: cfg}, 1, 30*time.Second, nil)
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			if _, err := pool.Handle(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(batch.Records))/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("go", func(b *testing.B) {
		bin := filepath.Join(b.TempDir(), "iot-handler")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/weirhq/weir/examples/iot/cmd/iot-handler").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
		run(b, plugins.PoolConfig{Path: bin})
	})
	b.Run("typescript", func(b *testing.B) {
		node, err := exec.LookPath("node")
		if err != nil {
			b.Skip("no node")
		}
		root, err := conformance.RepoRoot()
		if err != nil {
			b.Fatal(err)
		}
		run(b, plugins.PoolConfig{Path: node, Args: []string{filepath.Join(root, "examples", "iot", "typescript", "dist", "handler.js")}})
	})
}
