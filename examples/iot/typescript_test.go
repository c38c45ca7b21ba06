package iot_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/conformance"
	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// typescriptHandler returns node and the compiled TypeScript handler
// (examples/iot/typescript/dist/handler.js, built by testenv/sdk.sh). It
// skips the test when either is missing, and fails it under CI.
func typescriptHandler(t *testing.T) (root, node, script string) {
	t.Helper()
	root, err := conformance.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	unavailable := func(err error) {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skipf("%v (CI fails instead of skipping)", err)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		unavailable(errors.New("node is not on PATH: install Node.js 20+, then run testenv/sdk.sh"))
	}
	script = filepath.Join(root, "examples", "iot", "typescript", "dist", "handler.js")
	for _, need := range []string{script, filepath.Join(root, "plugins", "sdk", "typescript", "node_modules", "@grpc", "grpc-js")} {
		if _, err := os.Stat(need); err != nil {
			unavailable(errors.New(need + " is missing: run testenv/sdk.sh"))
		}
	}
	return root, node, script
}

// The TypeScript handler behaves as the Go one: on thousands of generated
// readings and on every documented good and malformed case, run as a plugin
// process of a Pool, the same records fail (invalid_input, not retryable)
// with the same words, and the others give the same outputs byte for byte:
// key, value, sink, headers.
func TestTypeScriptHandlerMatchesGo(t *testing.T) {
	_, node, script := typescriptHandler(t)
	pool := conformance.StartPool(t, conformance.Target{Name: "iot-typescript",
		Config: plugins.PoolConfig{Path: node, Args: []string{script}}}, 1, 30*time.Second, nil)
	if info := pool.Info(); info.Name != iot.Name || info.Version != iot.Version {
		t.Errorf("Info = %+v, want the Go handler's name and version", info)
	}

	b := &plugins.Batch{Pipeline: "iot-ingest", Stream: "sensor-readings", Partition: "0", Attempt: 1}
	add := func(key, value []byte, ts time.Time) {
		b.Records = append(b.Records, record.Record{Key: key, Value: value, Timestamp: ts,
			Headers:  []record.Header{{Key: "source", Value: []byte("test")}, {Key: iot.HandlerHeader, Value: []byte("old/0")}},
			Position: record.Position{Offset: int64(len(b.Records))}})
	}
	for i := range 3000 {
		k, v := iot.Generate(5, i, 40)
		add(k, v, time.Unix(1795600000+int64(i), 0))
	}
	for _, v := range []string{
		`{"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature":71.3,"unit":"F","humidity":40.2,"battery_mv":3710}`,
		`{"device_id":"d-1","ts":"2026-11-26T08:00:00.1234567+02:00","temperature":20,"unit":"c","battery_mv":3299}`,
		`{"device_id":"d-2","temperature":300.15,"unit":"K","extra":"ignored"}`,
		`{"device_id":"d-3","ts":"2026-11-26T06:00:00Z","temperature":32,"unit":"C","humidity":70}`,
		`{"device_id":"d-4","ts":"2026-11-26T06:00:00Z","temperature":-40,"unit":"F","humidity":0}`,
		`{"device_id":"d-5","temperature":-0.005,"unit":"C","humidity":100,"battery_mv":0}`,
	} {
		add(nil, []byte(v), time.Date(2026, 11, 26, 7, 30, 0, 120000000, time.FixedZone("CET", 3600)))
	}
	malformedAt := len(b.Records)
	for _, tc := range malformedCases {
		add(nil, []byte(tc.value), time.Time{})
	}

	ctx := context.Background()
	ts, err := pool.Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	goRes, err := iot.Handler().Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}

	if len(ts.Outputs) != len(goRes.Outputs) {
		t.Fatalf("%d outputs from TypeScript, %d from Go", len(ts.Outputs), len(goRes.Outputs))
	}
	for i, o := range ts.Outputs {
		g := goRes.Outputs[i]
		same := o.Index == g.Index && o.Sink == g.Sink && bytes.Equal(o.Key, g.Key) && bytes.Equal(o.Value, g.Value) &&
			len(o.Headers) == len(g.Headers)
		for j := 0; same && j < len(o.Headers); j++ {
			same = o.Headers[j].Key == g.Headers[j].Key && bytes.Equal(o.Headers[j].Value, g.Headers[j].Value)
		}
		if !same {
			t.Fatalf("output %d differs:\n  typescript %d %s %s %s %v\n  go         %d %s %s %s %v", i,
				o.Index, o.Sink, o.Key, o.Value, o.Headers, g.Index, g.Sink, g.Key, g.Value, g.Headers)
		}
	}
	if len(ts.Failures) != len(goRes.Failures) {
		t.Fatalf("%d failures from TypeScript, %d from Go", len(ts.Failures), len(goRes.Failures))
	}
	for i, f := range ts.Failures {
		g := goRes.Failures[i]
		if f.Index != g.Index || f.Class != plugins.ClassInvalidInput || f.Retryable {
			t.Errorf("failure %d: typescript %+v, go %+v", i, f, g)
			continue
		}
		// JSON syntax errors are worded by each language's parser; every
		// other message is the same.
		if !strings.HasPrefix(g.Message, "invalid JSON") && f.Message != g.Message {
			t.Errorf("record %d: typescript says %q, go says %q", f.Index, f.Message, g.Message)
		}
		if k := f.Index - malformedAt; k >= 0 && !strings.Contains(f.Message, malformedCases[k].want) {
			t.Errorf("%s: typescript says %q, want it to contain %q", malformedCases[k].name, f.Message, malformedCases[k].want)
		}
	}
}

// examples/iot/typescript/weir.yaml runs end to end: the host, with the
// TypeScript handler as its plugin processes, consumes generated readings
// from the broker, writes the enriched ones (the same bytes as the Go
// handler's) to readings-enriched and the malformed ones to the DLQ, and
// commits to the end.
func TestTypeScriptPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a pipeline; the full pass runs it")
	}
	root, _, _ := typescriptHandler(t)
	const n, every = 2000, 50
	emb, err := kafkasrc.StartEmbedded(kafkasrc.WithTopic("sensor-readings", 4))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	cfg, err := config.Load(filepath.Join(root, "examples", "iot", "typescript", "weir.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := map[string]bool{} // enriched values, by the Go handler
	err = loadtest.Produce(context.Background(), cl, "sensor-readings", n, func(i int) *kgo.Record {
		k, v := iot.Generate(9, i, every)
		r := &kgo.Record{Key: k, Value: v, Timestamp: time.Unix(1795600000, 0)}
		if outs, err := iot.Enrich(context.Background(), record.Record{Key: k, Value: v, Timestamp: r.Timestamp}); err == nil {
			want[string(outs[0].Value)] = true
		}
		return r
	})
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	h := host.New(cfg, host.Options{Logger: zerolog.New(zerolog.SyncWriter(&logs)).Level(zerolog.WarnLevel),
		KafkaBrokers: emb.Addrs(), AdminAddr: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host run: %v", err)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	}()
	start := time.Now()
	for {
		var completed, dlq int64
		for _, s := range h.Stats() {
			completed, dlq = s.Completed, s.DLQ
		}
		if completed == n {
			if dlq != n/every {
				t.Fatalf("%d records dead-lettered, want the %d malformed", dlq, n/every)
			}
			break
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("%d of %d records complete after 90s", completed, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d readings through the TypeScript handler in %v", n, time.Since(start).Round(time.Millisecond))

	got := consumeAll(t, emb.Addrs(), "readings-enriched", n-n/every)
	seen := map[string]bool{}
	for _, r := range got {
		v := string(r.Value)
		if !want[v] || seen[v] {
			t.Fatalf("output %s: not one the Go handler makes, or a duplicate (seen %v)", v, seen[v])
		}
		seen[v] = true
		if !strings.Contains(v, `"device_id":"`+string(r.Key)+`"`) {
			t.Fatalf("output keyed %q is another device's: %s", r.Key, v)
		}
	}
	if len(got) != n-n/every {
		t.Fatalf("%d enriched readings, want %d", len(got), n-n/every)
	}
	if dead := consumeAll(t, emb.Addrs(), "iot-ingest.dlq", n/every); len(dead) != n/every {
		t.Fatalf("%d records in the DLQ, want %d", len(dead), n/every)
	}
}

// consumeAll reads topic from the start until it has want records, or 30s.
func consumeAll(t *testing.T, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
		cancel()
	}
	return out
}
