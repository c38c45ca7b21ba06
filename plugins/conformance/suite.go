package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// Timeouts of the suite's pools: generous for calls that should succeed
// (under -race on a small machine), short for the timeout case.
const (
	callTimeout  = 20 * time.Second
	shortTimeout = 500 * time.Millisecond
	startTimeout = 30 * time.Second
)

// StartPool starts a pool of tgt's handler with instances processes and the
// per-call timeout, closed at the end of the test.
func StartPool(tb testing.TB, tgt Target, instances int, timeout time.Duration, env map[string]string) *plugins.Pool {
	tb.Helper()
	cfg := tgt.Config
	cfg.Name = "conformance-" + tgt.Name
	cfg.Instances = instances
	cfg.Timeout = timeout
	cfg.StartTimeout = startTimeout
	cfg.Env = maps.Clone(cfg.Env)
	if cfg.Env == nil {
		cfg.Env = map[string]string{}
	}
	maps.Copy(cfg.Env, env)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	pool, err := plugins.NewPool(ctx, cfg)
	if err != nil {
		tb.Fatalf("starting the %s conformance handler: %v", tgt.Name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pool.Close(ctx); err != nil {
			tb.Errorf("closing the pool: %v", err)
		}
	})
	return pool
}

// Run runs the conformance suite against tgt, each case a subtest.
func Run(t *testing.T, tgt Target) {
	pool := StartPool(t, tgt, 1, callTimeout, nil)

	t.Run("describe", func(t *testing.T) {
		want := plugins.Info{Name: HandlerName, Version: HandlerVersion, ProtocolVersion: plugins.ProtocolVersion}
		if got := pool.Info(); got != want {
			t.Errorf("Info() = %+v, want %+v", got, want)
		}
	})
	t.Run("edge_records", func(t *testing.T) { echoCase(t, pool, edgeRecords()) })
	t.Run("large_value", func(t *testing.T) {
		// Past gRPC's default 4 MiB message limit: both sides must raise it.
		big := bytes.Repeat([]byte("0123456789abcdef"), (4<<20)/16+64)
		echoCase(t, pool, []record.Record{{Key: []byte("big"), Value: big}})
	})
	t.Run("many_records", func(t *testing.T) {
		recs := make([]record.Record, 500)
		for i := range recs {
			recs[i] = record.Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "value %d", i)}
		}
		echoCase(t, pool, recs)
	})
	t.Run("empty_batch", func(t *testing.T) { echoCase(t, pool, nil) })
	t.Run("record_failures", func(t *testing.T) { failureCase(t, pool) })
	t.Run("batch_failure", func(t *testing.T) { batchFailureCase(t, pool) })
	t.Run("crash", func(t *testing.T) { crashCase(t, pool) })
	t.Run("timeout", func(t *testing.T) { timeoutCase(t, tgt) })
	t.Run("graceful_close", func(t *testing.T) { closeCase(t, tgt) })
	t.Run("version_mismatch", func(t *testing.T) { versionMismatchCase(t, tgt) })
	t.Run("not_started_by_host", func(t *testing.T) { noCookieCase(t, tgt) })
}

func edgeRecords() []record.Record {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	many := make([]record.Header, 0, 100)
	for i := range 97 {
		many = append(many, record.Header{Key: fmt.Sprintf("h%d", i%10), Value: fmt.Appendf(nil, "v%d", i)})
	}
	many = append(many,
		record.Header{Key: "null-value", Value: nil},
		record.Header{Key: "empty-value", Value: []byte{}},
		record.Header{Key: "", Value: []byte("empty key")},
	)
	return []record.Record{
		{Key: nil, Value: []byte{}},  // nil key, empty value
		{Key: []byte{}, Value: nil},  // empty key, nil value (a tombstone)
		{Key: binary, Value: binary}, // every byte value
		{Key: []byte("ключ"), Value: []byte("héllo wörld ✓ 日本語 🚀 \u0000 \U0010FFFF"), Headers: []record.Header{{Key: "ünïcødé-ключ-🔑", Value: []byte("значение")}}},
		{Key: []byte("headers"), Value: []byte("many headers"), Headers: many},
		{Key: []byte("invalid-utf8"), Value: []byte{0xff, 0xfe, 0xc3, 0x28}},
	}
}

func send(t *testing.T, pool *plugins.Pool, recs []record.Record) (*plugins.Result, error) {
	t.Helper()
	for i := range recs {
		recs[i].Partition = record.Partition{Stream: "conformance", ID: "0"}
		recs[i].Position = record.Position{Offset: int64(i)}
	}
	b := &plugins.Batch{Pipeline: "conformance", Stream: "conformance", Partition: "0", Attempt: 1, Records: recs}
	return pool.Handle(context.Background(), b)
}

// echoCase checks that every record comes back to sink "out" byte for byte,
// null and empty kept apart, in order.
func echoCase(t *testing.T, pool *plugins.Pool, recs []record.Record) {
	res, err := send(t, pool, recs)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(res.Failures) != 0 {
		t.Fatalf("failures: %+v", res.Failures)
	}
	if len(res.Outputs) != len(recs) {
		t.Fatalf("%d outputs for %d records", len(res.Outputs), len(recs))
	}
	for i, o := range res.Outputs {
		r := recs[i]
		if o.Index != i || o.Sink != Sink {
			t.Errorf("output %d: index %d sink %q, want index %d sink %q", i, o.Index, o.Sink, i, Sink)
		}
		checkBytes(t, fmt.Sprintf("output %d key", i), o.Key, r.Key)
		checkBytes(t, fmt.Sprintf("output %d value", i), o.Value, r.Value)
		if len(o.Headers) != len(r.Headers) {
			t.Errorf("output %d: %d headers, want %d", i, len(o.Headers), len(r.Headers))
			continue
		}
		for j, h := range o.Headers {
			if h.Key != r.Headers[j].Key {
				t.Errorf("output %d header %d: key %q, want %q", i, j, h.Key, r.Headers[j].Key)
			}
			checkBytes(t, fmt.Sprintf("output %d header %d value", i, j), h.Value, r.Headers[j].Value)
		}
	}
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	switch {
	case (got == nil) != (want == nil):
		t.Errorf("%s: nil=%t, want nil=%t (null and empty must stay apart)", what, got == nil, want == nil)
	case !bytes.Equal(got, want):
		if len(want) > 64 {
			t.Errorf("%s: %d bytes differ from the %d sent", what, len(got), len(want))
		} else {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
}

func failureCase(t *testing.T, pool *plugins.Pool) {
	recs := []record.Record{
		{Value: []byte("ok-0")},
		{Value: []byte("FAIL:invalid_input:false")},
		{Value: []byte("FAIL:transient:true")},
		{Value: []byte("FAIL:handler:false")},
		{Value: []byte("FAIL:handler:true")},
		{Value: []byte("ok-5")},
	}
	res, err := send(t, pool, recs)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	want := []plugins.Failure{
		{Index: 1, Class: plugins.ClassInvalidInput, Retryable: false},
		{Index: 2, Class: plugins.ClassTransient, Retryable: true},
		{Index: 3, Class: plugins.ClassHandler, Retryable: false},
		{Index: 4, Class: plugins.ClassHandler, Retryable: true},
	}
	if len(res.Failures) != len(want) {
		t.Fatalf("failures %+v, want %+v", res.Failures, want)
	}
	for i, f := range res.Failures {
		w := want[i]
		if f.Index != w.Index || f.Class != w.Class || f.Retryable != w.Retryable {
			t.Errorf("failure %d: index %d class %s retryable %t, want index %d class %s retryable %t",
				i, f.Index, f.Class, f.Retryable, w.Index, w.Class, w.Retryable)
		}
		if f.Message == "" {
			t.Errorf("failure %d: no message", i)
		}
	}
	var idx []int
	for _, o := range res.Outputs {
		idx = append(idx, o.Index)
	}
	if !slices.Equal(idx, []int{0, 5}) {
		t.Errorf("outputs for records %v, want [0 5] (failed records emit nothing)", idx)
	}
}

func batchFailureCase(t *testing.T, pool *plugins.Pool) {
	before := pool.Restarts()
	for _, tc := range []struct {
		value     string
		class     plugins.ErrorClass
		retryable bool
	}{
		{"BATCHFAIL:transient:true", plugins.ClassTransient, true},
		{"BATCHFAIL:invalid_input:false", plugins.ClassInvalidInput, false},
		{"BATCHFAIL:handler:true", plugins.ClassHandler, true},
	} {
		_, err := send(t, pool, []record.Record{{Value: []byte("ok")}, {Value: []byte(tc.value)}})
		switch {
		case err == nil:
			t.Errorf("%s: no error", tc.value)
		case plugins.ClassOf(err) != tc.class || plugins.IsRetryable(err) != tc.retryable:
			t.Errorf("%s: class %s retryable %t, want %s %t (err: %v)", tc.value, plugins.ClassOf(err), plugins.IsRetryable(err), tc.class, tc.retryable, err)
		case !strings.Contains(err.Error(), tc.value):
			t.Errorf("%s: error %q lost the handler's message", tc.value, err)
		case errors.Is(err, plugins.ErrPluginExited):
			t.Errorf("%s: a handler's batch error reads as a crash: %v", tc.value, err)
		}
	}
	if n := pool.Restarts(); n != before {
		t.Errorf("batch errors restarted the process (%d restarts)", n-before)
	}
}

func crashCase(t *testing.T, pool *plugins.Pool) {
	before := pool.Restarts()
	_, err := send(t, pool, []record.Record{{Value: []byte("ok")}, {Value: []byte("CRASH")}})
	if !errors.Is(err, plugins.ErrPluginExited) || plugins.ClassOf(err) != plugins.ClassCrash || !plugins.IsRetryable(err) {
		t.Fatalf("Handle of a crashing batch: %v (class %s), want ErrPluginExited, class crash, retryable", err, plugins.ClassOf(err))
	}
	// The pool restarts the process in the background; the next call waits
	// for it.
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	b := &plugins.Batch{Pipeline: "conformance", Stream: "conformance", Partition: "0", Attempt: 1,
		Records: []record.Record{{Value: []byte("after crash")}}}
	res, err := pool.Handle(ctx, b)
	if err != nil {
		t.Fatalf("Handle after the crash: %v", err)
	}
	if len(res.Outputs) != 1 || string(res.Outputs[0].Value) != "after crash" {
		t.Errorf("after the crash: outputs %+v", res.Outputs)
	}
	if pool.Restarts() != before+1 {
		t.Errorf("restarts %d, want %d", pool.Restarts(), before+1)
	}
}

func timeoutCase(t *testing.T, tgt Target) {
	pool := StartPool(t, tgt, 1, shortTimeout, nil)
	start := time.Now()
	_, err := send(t, pool, []record.Record{{Value: []byte("SLEEP:10000")}})
	if !errors.Is(err, plugins.ErrTimeout) || plugins.ClassOf(err) != plugins.ClassTimeout {
		t.Fatalf("Handle of a sleeping batch: %v (class %s), want ErrTimeout", err, plugins.ClassOf(err))
	}
	if d := time.Since(start); d > shortTimeout+5*time.Second {
		t.Errorf("the timeout took %s to be reported (pool timeout %s)", d, shortTimeout)
	}
	// The wedged process is replaced; a short sleep within the timeout works.
	res, err := send(t, pool, []record.Record{{Value: []byte("SLEEP:10")}})
	if err != nil {
		t.Fatalf("Handle after the timeout: %v", err)
	}
	if len(res.Outputs) != 1 {
		t.Errorf("after the timeout: outputs %+v", res.Outputs)
	}
}

// closeCase: closing the pool asks the process to exit (go-plugin's
// GRPCController.Shutdown), which it must do at once; go-plugin kills a
// process that is still running two seconds later.
func closeCase(t *testing.T, tgt Target) {
	pool := StartPool(t, tgt, 1, callTimeout, nil)
	if _, err := send(t, pool, []record.Record{{Value: []byte("x")}}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := pool.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d >= 1500*time.Millisecond {
		t.Errorf("Close took %s: the handler did not exit when asked (GRPCController.Shutdown)", d)
	}
}

// command returns the command that starts tgt's handler, as the pool would
// but without go-plugin's handshake environment.
func command(t *testing.T, tgt Target) *exec.Cmd {
	t.Helper()
	cfg := tgt.Config
	path := cfg.Path
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "WEIR_PLUGIN=") || strings.HasPrefix(kv, plugins.EnvBuiltinHandler+"=")
	})
	if cfg.Builtin != "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		path = exe
		env = append(env, plugins.EnvBuiltinHandler+"="+cfg.Builtin)
	}
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(path, cfg.Args...)
	cmd.Env = env
	return cmd
}

// versionMismatchCase: a host that speaks only a protocol version the
// handler does not must refuse it at the handshake.
func versionMismatchCase(t *testing.T, tgt Target) {
	const other = plugins.ProtocolVersion + 1
	hs := plugins.Handshake
	hs.ProtocolVersion = other
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{other: {plugins.PluginName: &plugins.GRPCPlugin{}}},
		Cmd:              command(t, tgt),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     startTimeout,
		Stderr:           testWriter{t},
		Logger:           hclog.NewNullLogger(),
	})
	defer client.Kill()
	_, err := client.Client()
	if err == nil {
		t.Fatalf("a host speaking only protocol version %d connected", other)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "version") {
		t.Errorf("handshake error does not mention the version: %v", err)
	}
}

// noCookieCase: run by hand (no magic cookie), a handler says it is a
// plugin and exits non-zero without printing a handshake.
func noCookieCase(t *testing.T, tgt Target) {
	cmd := command(t, tgt)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("exited 0 without the cookie; want a non-zero status")
		}
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("still running 30s after being started without the cookie")
	}
	if strings.Contains(stdout.String(), "|grpc") {
		t.Errorf("printed a handshake without the cookie: %q", stdout.String())
	}
	if !strings.Contains(strings.ToLower(stderr.String()+stdout.String()), "plugin") {
		t.Errorf("no notice that this is a plugin; stderr %q", stderr.String())
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("handler stderr: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// BenchRecords is the size of a benchmark batch.
const BenchRecords = 500

// Benchmark measures records/s through the pool of tgt's handler in its
// no-op mode (WEIR_CONFORMANCE_NOOP=1): 500-record batches of 100-byte
// values, one instance, one call at a time. The difference between targets
// is each SDK's per-batch overhead.
func Benchmark(b *testing.B, tgt Target) {
	pool := StartPool(b, tgt, 1, callTimeout, map[string]string{EnvNoop: "1"})
	recs := make([]record.Record, BenchRecords)
	for i := range recs {
		recs[i] = record.Record{
			Key:       fmt.Appendf(nil, "device-%04d", i%100),
			Value:     bytes.Repeat([]byte{'x'}, 100),
			Headers:   []record.Header{{Key: "content-type", Value: []byte("application/json")}},
			Partition: record.Partition{Stream: "bench", ID: "0"},
			Position:  record.Position{Offset: int64(i)},
		}
	}
	ctx := context.Background()
	batches := 0
	b.ResetTimer()
	for b.Loop() {
		batch := &plugins.Batch{Pipeline: "bench", Stream: "bench", Partition: "0", Attempt: 1, Records: recs}
		if _, err := pool.Handle(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batches++
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(batches*BenchRecords)/sec, "records/s")
	b.ReportMetric(sec/float64(batches)*1e6, "µs/batch")
}
