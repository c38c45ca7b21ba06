package iot_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// TestExternalPlugin builds cmd/iot-handler and runs it the way weir runs a
// user's handler: as an external plugin process of a Pool.
func TestExternalPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "iot-handler")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/weirhq/weir/examples/iot/cmd/iot-handler")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Run by hand, it says it is a plugin and fails.
	if out, err := exec.Command(bin).CombinedOutput(); err == nil || !bytes.Contains(out, []byte("plugin")) {
		t.Errorf("run by hand: %v, %s", err, out)
	}

	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := plugins.NewPool(ctx, plugins.PoolConfig{
		Name: "iot-ingest", Path: bin, Instances: 2, Timeout: 10 * time.Second,
		Logger: zerolog.New(zerolog.SyncWriter(&logs)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pool.Close(ctx); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	}()
	if info := pool.Info(); info.Name != iot.Name || info.Version != iot.Version || info.ProtocolVersion != plugins.ProtocolVersion {
		t.Errorf("Info = %+v", info)
	}

	const n, every = 500, 50
	b := &plugins.Batch{Pipeline: "iot-ingest", Stream: "sensor-readings", Partition: "3", Attempt: 1}
	for i := range n {
		k, v := iot.Generate(1, i, every)
		b.Records = append(b.Records, record.Record{
			Key: k, Value: v, Timestamp: time.Unix(1795600000, 0),
			Headers:  []record.Header{{Key: "source", Value: []byte("test")}},
			Position: record.Position{Offset: int64(i)},
		})
	}
	res, err := pool.Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, n, every)

	// Same answer as the handler in process, byte for byte.
	local, err := iot.Handler().Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(local.Outputs) != len(res.Outputs) {
		t.Fatalf("%d outputs in process, %d from the plugin", len(local.Outputs), len(res.Outputs))
	}
	for i, o := range res.Outputs {
		l := local.Outputs[i]
		if o.Index != l.Index || !bytes.Equal(o.Key, l.Key) || !bytes.Equal(o.Value, l.Value) || len(o.Headers) != 2 ||
			string(o.Headers[0].Value) != "test" || string(o.Headers[1].Value) != "iot/"+iot.Version {
			t.Fatalf("output %d: plugin %+v, in process %+v", i, o, l)
		}
	}
}
