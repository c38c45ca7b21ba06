package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
	"github.com/weirhq/weir/plugins/sdk"
	"github.com/weirhq/weir/record"
)

// The test binary is its own plugin: a Pool with Builtin set re-executes it
// with WEIR_BUILTIN_HANDLER, and TestMain serves that handler instead of
// running the tests.
func TestMain(m *testing.M) {
	if name := os.Getenv(plugins.EnvBuiltinHandler); name != "" && os.Getenv("WEIR_TEST_WRONG_BATCH_CHECK") != "" {
		plugins.ServeWithWrongBatchFileCheck(testHandlers()[name])
		os.Exit(0)
	}
	if name := os.Getenv(plugins.EnvBuiltinHandler); name != "" && os.Getenv("WEIR_TEST_OWN_TLS_KEY") != "" {
		plugins.ServeMakingItsOwnTLSKey(testHandlers()[name])
		os.Exit(0)
	}
	if name := os.Getenv(plugins.EnvBuiltinHandler); name != "" && os.Getenv("WEIR_TEST_NO_CALL_SOCKET") != "" {
		plugins.ServeWithoutCallSocket(testHandlers()[name])
		os.Exit(0)
	}
	plugins.ServeBuiltinIfRequested(testHandlers())
	os.Exit(m.Run())
}

// testHandlers are weir's builtin handlers plus handlers made for these
// tests. It runs in the plugin process, after its environment is set.
func testHandlers() map[string]plugins.Handler {
	hs := builtin.Handlers()
	v := sdk.Options{Version: "test"}
	named := func(name string) sdk.Options { o := v; o.Name = name; return o }
	// sleep sleeps for the duration in its first record's value, ignoring
	// ctx like a wedged handler, then echoes.
	hs["sleep"] = sdk.New(named("sleep"), func(ctx context.Context, b *plugins.Batch, res *sdk.Result) error {
		if len(b.Records) > 0 {
			d, _ := time.ParseDuration(string(b.Records[0].Value))
			time.Sleep(d)
		}
		return builtin.Echo("out", nil)(ctx, b, res)
	})
	// stderr writes each record's value to stderr and stdout.
	hs["stderr"] = sdk.New(named("stderr"), func(_ context.Context, b *plugins.Batch, _ *sdk.Result) error {
		for _, r := range b.Records {
			fmt.Fprintf(os.Stderr, "to stderr: %s\n", r.Value)
			fmt.Fprintf(os.Stdout, "to stdout: %s\n", r.Value)
		}
		return nil
	})
	// pid answers with its process id.
	hs["pid"] = sdk.New(named("pid"), func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		for i := range b.Records {
			res.Output(i, "out", nil, []byte(strconv.Itoa(os.Getpid())))
		}
		return nil
	})
	// fail fails every batch as a whole with a transient error.
	hs["fail"] = sdk.New(named("fail"), func(context.Context, *plugins.Batch, *sdk.Result) error {
		return sdk.Retryable(errors.New("database unavailable"))
	})
	// environ answers with its environment, one variable a line.
	hs["environ"] = sdk.New(named("environ"), func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		res.Output(0, "out", nil, []byte(strings.Join(os.Environ(), "\n")))
		return nil
	})
	// badutf8 emits an output whose header key is not UTF-8, which
	// protobuf refuses to marshal.
	hs["badutf8"] = sdk.New(named("badutf8"), func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		res.Outputs = append(res.Outputs, plugins.Output{Index: 0, Sink: "out",
			Message: record.Message{Headers: []record.Header{{Key: "\xff", Value: []byte("x")}}}})
		return nil
	})
	// viafile echoes each record's value, with how many batches this
	// process has read from its batch file so far, after a "|".
	echoReads := func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		n := []byte("|" + strconv.FormatInt(plugins.BatchFileReads(), 10) + "|" + strconv.FormatInt(plugins.BatchesDecodedInPlace(), 10))
		for i, r := range b.Records {
			res.Output(i, "out", r.Key, append(r.Value[:len(r.Value):len(r.Value)], n...), r.Headers...)
		}
		return nil
	}
	hs["viafile"] = sdk.New(named("viafile"), echoReads)
	// viafile-borrowed is viafile borrowing its records (its outputs'
	// values are copies; their keys and headers the records').
	borrowed := named("viafile-borrowed")
	borrowed.BorrowRecords = true
	hs["viafile-borrowed"] = sdk.New(borrowed, echoReads)
	// procs answers with the process's GOMAXPROCS. A batch whose first
	// value is "hold" and one whose first value is "release" each wait (up
	// to a minute) for the other to be served before they answer, so that
	// the two are served at once whichever arrives first.
	holding, released := make(chan struct{}), make(chan struct{})
	var holdOnce, releaseOnce sync.Once
	wait := func(ctx context.Context, c <-chan struct{}) error {
		select {
		case <-c:
			return nil
		case <-time.After(time.Minute):
			return errors.New("the other call never came")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	hs["procs"] = sdk.New(named("procs"), func(ctx context.Context, b *plugins.Batch, res *sdk.Result) error {
		switch string(b.Records[0].Value) {
		case "hold":
			holdOnce.Do(func() { close(holding) })
			if err := wait(ctx, released); err != nil {
				return err
			}
		case "release":
			defer releaseOnce.Do(func() { close(released) })
			if err := wait(ctx, holding); err != nil {
				return err
			}
		}
		res.Output(0, "out", nil, []byte(strconv.Itoa(runtime.GOMAXPROCS(0))))
		return nil
	})
	// memprofilerate answers with the process's runtime.MemProfileRate.
	hs["memprofilerate"] = sdk.New(named("memprofilerate"), func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		res.Output(0, "out", nil, []byte(strconv.Itoa(runtime.MemProfileRate)))
		return nil
	})
	hs["future"] = futureHandler{}
	return hs
}

// futureHandler speaks a protocol version this host does not.
type futureHandler struct{}

func (futureHandler) Describe(context.Context) (plugins.Info, error) {
	return plugins.Info{Name: "future", Version: "9", ProtocolVersion: plugins.ProtocolVersion + 1}, nil
}

func (futureHandler) Handle(context.Context, *plugins.Batch) (*plugins.Result, error) {
	return &plugins.Result{}, nil
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(b.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// newPool starts a pool of a builtin handler of this test binary and closes
// it at the end of the test. Its log goes to the returned buffer, and to the
// test log if the test fails.
func newPool(t *testing.T, cfg plugins.PoolConfig) (*plugins.Pool, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := plugins.NewPool(ctx, cfg)
	if err != nil {
		t.Fatalf("NewPool: %v\nlog:\n%s", err, logs)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("pool log:\n%s", logs)
		}
	})
	return p, logs
}

func batchOf(values ...string) *plugins.Batch {
	b := &plugins.Batch{Pipeline: "test", Stream: "s", Partition: "0", Attempt: 1}
	for i, v := range values {
		b.Records = append(b.Records, record.Record{
			Key:      []byte("k" + strconv.Itoa(i)),
			Value:    []byte(v),
			Headers:  []record.Header{{Key: "i", Value: []byte(strconv.Itoa(i))}},
			Position: record.Position{Offset: int64(i)},
		})
	}
	return b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPoolHandlesBatches(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "echo", Instances: 2, Timeout: 10 * time.Second})
	if info := p.Info(); info.Name != "echo" || info.Version != builtin.Version || info.ProtocolVersion != plugins.ProtocolVersion {
		t.Errorf("Info = %+v", info)
	}
	values := make([]string, 500)
	for i := range values {
		values[i] = fmt.Sprintf(`{"n":%d}`, i)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			b := batchOf(values...)
			res, err := p.Handle(context.Background(), b)
			if err != nil {
				t.Error(err)
				return
			}
			if b.Deadline.IsZero() {
				t.Error("Handle did not set the batch deadline")
			}
			if len(res.Outputs) != len(values) || len(res.Failures) != 0 {
				t.Errorf("%d outputs, %d failures; want %d, 0", len(res.Outputs), len(res.Failures), len(values))
				return
			}
			for i, o := range res.Outputs {
				if o.Index != i || o.Sink != builtin.DefaultEchoSink || string(o.Value) != values[i] ||
					string(o.Key) != "k"+strconv.Itoa(i) || len(o.Headers) != 1 || string(o.Headers[0].Value) != strconv.Itoa(i) {
					t.Errorf("output %d = %+v", i, o)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := p.Restarts(); n != 0 {
		t.Errorf("Restarts = %d", n)
	}
}

func TestPoolEnvReachesThePlugin(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "echo", Instances: 1, Env: map[string]string{builtin.EnvEchoSink: "elsewhere"}})
	res, err := p.Handle(context.Background(), batchOf("x"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Sink != "elsewhere" {
		t.Errorf("outputs %+v, want one to sink elsewhere", res.Outputs)
	}
}

// TestPoolKillMidCall: kill -9 of a plugin process during a call fails that
// call (and only it) with ErrPluginExited; the instance is restarted and
// serves the next calls.
func TestPoolKillMidCall(t *testing.T) {
	p, logs := newPool(t, plugins.PoolConfig{Name: "killme", Builtin: "sleep", Instances: 2, Timeout: 20 * time.Second})
	before := p.PIDs()

	type outcome struct {
		err error
		at  time.Time
	}
	results := make(chan outcome, 2)
	for range 2 {
		go func() {
			_, err := p.Handle(context.Background(), batchOf("1500ms"))
			results <- outcome{err, time.Now()}
		}()
	}
	waitFor(t, "both instances busy", 10*time.Second, func() bool { return p.IdleCount() == 0 })
	time.Sleep(200 * time.Millisecond) // let the calls reach the plugins
	victim := before[0]
	killedAt := time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	var failed, succeeded int
	for range 2 {
		o := <-results
		if o.err == nil {
			succeeded++
			continue
		}
		failed++
		if !errors.Is(o.err, plugins.ErrPluginExited) || plugins.ClassOf(o.err) != plugins.ClassCrash {
			t.Errorf("killed call: %v (class %v), want ErrPluginExited", o.err, plugins.ClassOf(o.err))
		}
		if !strings.Contains(o.err.Error(), strconv.Itoa(victim)) || !strings.Contains(o.err.Error(), `"killme"`) {
			t.Errorf("error %q does not name the plugin and pid %d", o.err, victim)
		}
		if d := o.at.Sub(killedAt); d > time.Second {
			t.Errorf("killed call returned %s after the kill, want at once", d)
		}
	}
	if failed != 1 || succeeded != 1 {
		t.Fatalf("%d calls failed, %d succeeded; want 1 and 1", failed, succeeded)
	}

	waitFor(t, "the restart", 15*time.Second, func() bool { return p.Restarts() == 1 })
	after := p.PIDs()
	if after[0] == victim || after[0] == 0 || after[1] != before[1] {
		t.Errorf("pids %v -> %v: want instance 0 replaced, instance 1 kept", before, after)
	}
	for range 4 {
		if _, err := p.Handle(context.Background(), batchOf("0s")); err != nil {
			t.Errorf("call after restart: %v", err)
		}
	}
	if !strings.Contains(logs.String(), "plugin instance restarted") {
		t.Error("the restart was not logged")
	}
}

// TestPoolCrashingRecord: a record that makes the plugin exit fails its
// batch with ErrPluginExited (never silently lost); later batches succeed on
// the restarted instance.
func TestPoolCrashingRecord(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "echo-crash", Instances: 1, Env: map[string]string{builtin.EnvCrashOn: "poison"}})
	if _, err := p.Handle(context.Background(), batchOf("a", "b")); err != nil {
		t.Fatal(err)
	}
	_, err := p.Handle(context.Background(), batchOf("a", "contains poison", "c"))
	if !errors.Is(err, plugins.ErrPluginExited) {
		t.Fatalf("err = %v, want ErrPluginExited", err)
	}
	res, err := p.Handle(context.Background(), batchOf("d"))
	if err != nil || len(res.Outputs) != 1 {
		t.Fatalf("after the crash: %v, %+v", err, res)
	}
	if n := p.Restarts(); n != 1 {
		t.Errorf("Restarts = %d, want 1", n)
	}
}

// TestPoolTimeout: a call past the timeout fails with ErrTimeout without
// waiting for the plugin, whose process is killed and restarted.
func TestPoolTimeout(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "sleep", Instances: 1, Timeout: 300 * time.Millisecond})
	stuck := p.PIDs()[0]
	start := time.Now()
	b := batchOf("1h")
	_, err := p.Handle(context.Background(), b)
	if !errors.Is(err, plugins.ErrTimeout) || plugins.ClassOf(err) != plugins.ClassTimeout || !plugins.IsRetryable(err) {
		t.Fatalf("err = %v (class %v), want ErrTimeout", err, plugins.ClassOf(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timed-out call took %s", d)
	}
	if d := b.Deadline.Sub(start); d < 250*time.Millisecond || d > time.Second {
		t.Errorf("batch deadline %s after the call, want the timeout", d)
	}
	res, err := p.Handle(context.Background(), batchOf("0s"))
	if err != nil || len(res.Outputs) != 1 {
		t.Fatalf("after the timeout: %v", err)
	}
	if n := p.Restarts(); n != 1 {
		t.Errorf("Restarts = %d, want 1", n)
	}
	if p.PIDs()[0] == stuck {
		t.Error("the stuck process was not replaced")
	}
	if err := syscall.Kill(stuck, 0); err == nil {
		t.Errorf("the stuck process %d is still alive", stuck)
	}
}

// TestPoolHandlerErrorKeepsInstance: an error the handler returns fails the
// batch with the handler's class; the process is healthy and kept.
func TestPoolHandlerErrorKeepsInstance(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "fail", Instances: 1})
	pid := p.PIDs()[0]
	for range 3 {
		_, err := p.Handle(context.Background(), batchOf("x"))
		var perr *plugins.Error
		if !errors.As(err, &perr) || perr.Class != plugins.ClassTransient || !perr.Retryable ||
			!strings.Contains(err.Error(), "database unavailable") {
			t.Fatalf("err = %v, want a retryable transient *plugins.Error", err)
		}
	}
	if p.Restarts() != 0 || p.PIDs()[0] != pid {
		t.Error("a handler error restarted the instance")
	}
}

func TestPoolStderrIsLogged(t *testing.T) {
	p, logs := newPool(t, plugins.PoolConfig{Name: "chatty", Builtin: "stderr", Instances: 1})
	if _, err := p.Handle(context.Background(), batchOf("hello-42")); err != nil {
		t.Fatal(err)
	}
	find := func(msg string) map[string]any {
		for _, l := range logs.lines(t) {
			if l["message"] == msg {
				return l
			}
		}
		return nil
	}
	waitFor(t, "the plugin's output in the log", 5*time.Second, func() bool {
		return find("to stderr: hello-42") != nil && find("to stdout: hello-42") != nil
	})
	for _, msg := range []string{"to stderr: hello-42", "to stdout: hello-42"} {
		l := find(msg)
		if l["plugin"] != "chatty" || l["instance"] != float64(0) || l["level"] != "info" {
			t.Errorf("log line %v: want plugin=chatty instance=0 level=info", l)
		}
	}
}

func TestPoolStartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notPlugin := filepath.Join(dir, "not-a-plugin")
	if err := os.WriteFile(notPlugin, []byte("#!/bin/sh\necho hello\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  plugins.PoolConfig
		want []string
	}{
		{"missing file", plugins.PoolConfig{Path: filepath.Join(dir, "no-such-handler")},
			[]string{filepath.Join(dir, "no-such-handler"), "does not exist"}},
		{"not executable", plugins.PoolConfig{Path: notExec}, []string{notExec, "not executable"}},
		{"directory", plugins.PoolConfig{Path: dir}, []string{dir, "is a directory"}},
		{"not in PATH", plugins.PoolConfig{Path: "weir-no-such-handler-xyz"}, []string{"weir-no-such-handler-xyz", "not found in PATH"}},
		{"not a plugin", plugins.PoolConfig{Path: notPlugin, StartTimeout: 5 * time.Second}, []string{notPlugin, "instance 0"}},
		{"unknown builtin", plugins.PoolConfig{Builtin: "no-such-builtin", StartTimeout: 5 * time.Second},
			[]string{`builtin handler "no-such-builtin"`}},
		{"protocol mismatch", plugins.PoolConfig{Builtin: "future", Instances: 1}, []string{"protocol version 2", "speaks 1"}},
		{"neither path nor builtin", plugins.PoolConfig{}, []string{"one of Path and Builtin"}},
		{"both path and builtin", plugins.PoolConfig{Path: "x", Builtin: "echo"}, []string{"only one of Path"}},
		{"negative instances", plugins.PoolConfig{Builtin: "echo", Instances: -1}, []string{"Instances: -1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			tc.cfg.Logger = zerolog.New(logs)
			p, err := plugins.NewPool(context.Background(), tc.cfg)
			if err == nil {
				_ = p.Close(context.Background())
				t.Fatal("NewPool succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestPoolUnknownBuiltinExplainsOnStderr: the re-executed binary's complaint
// reaches the log.
func TestPoolUnknownBuiltinExplainsOnStderr(t *testing.T) {
	logs := &syncBuffer{}
	_, err := plugins.NewPool(context.Background(), plugins.PoolConfig{Builtin: "no-such-builtin", Instances: 1, Logger: zerolog.New(logs)})
	if err == nil {
		t.Fatal("NewPool succeeded")
	}
	if s := logs.String(); !strings.Contains(s, "no such builtin handler") || !strings.Contains(s, "echo") {
		t.Errorf("log does not explain: %s", s)
	}
}

func TestPoolClose(t *testing.T) {
	t.Run("graceful waits for calls in flight", func(t *testing.T) {
		p, _ := newPool(t, plugins.PoolConfig{Builtin: "sleep", Instances: 1})
		errc := make(chan error, 1)
		go func() {
			_, err := p.Handle(context.Background(), batchOf("400ms"))
			errc <- err
		}()
		waitFor(t, "the call", 5*time.Second, func() bool { return p.IdleCount() == 0 })
		pid := p.PIDs()[0]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Errorf("call in flight during Close: %v", err)
		}
		if err := p.Close(ctx); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := p.Handle(context.Background(), batchOf("0s")); !errors.Is(err, plugins.ErrPoolClosed) {
			t.Errorf("Handle after Close: %v, want ErrPoolClosed", err)
		}
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("plugin process %d outlived Close", pid)
		}
	})
	t.Run("forced when ctx ends", func(t *testing.T) {
		p, _ := newPool(t, plugins.PoolConfig{Builtin: "sleep", Instances: 1})
		errc := make(chan error, 1)
		go func() {
			_, err := p.Handle(context.Background(), batchOf("1h"))
			errc <- err
		}()
		waitFor(t, "the call", 5*time.Second, func() bool { return p.IdleCount() == 0 })
		waiting := make(chan error, 1)
		go func() {
			_, err := p.Handle(context.Background(), batchOf("0s"))
			waiting <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("forced Close took %s", d)
		}
		if err := <-errc; !errors.Is(err, plugins.ErrPluginExited) {
			t.Errorf("call in flight: %v, want ErrPluginExited", err)
		}
		if err := <-waiting; !errors.Is(err, plugins.ErrPoolClosed) {
			t.Errorf("call waiting for an instance: %v, want ErrPoolClosed", err)
		}
	})
}

// TestPoolWaitIsContextAware: with every instance busy, a call waits for
// one only as long as its context allows.
func TestPoolWaitIsContextAware(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "sleep", Instances: 1})
	go func() { _, _ = p.Handle(context.Background(), batchOf("1s")) }()
	waitFor(t, "the call", 5*time.Second, func() bool { return p.IdleCount() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Handle(ctx, batchOf("0s"))
	if !errors.Is(err, context.DeadlineExceeded) || plugins.ClassOf(err) != plugins.ClassTimeout {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
}

// TestPoolAbandonedCallRecyclesInstance: a call whose caller gives up is not
// left running beside the next batch; its process is replaced.
func TestPoolAbandonedCallRecyclesInstance(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "sleep", Instances: 1})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	_, err := p.Handle(ctx, batchOf("1h"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if _, err := p.Handle(context.Background(), batchOf("0s")); err != nil {
		t.Fatal(err)
	}
	if p.Restarts() != 1 {
		t.Errorf("Restarts = %d, want 1", p.Restarts())
	}
}

// A handler that allocates without bound under PoolConfig.MemoryLimit is
// killed by the kernel's limit (its allocation fails, the runtime dies):
// the call fails as a crash, the instance is restarted, and the next batch
// is handled. Without the limit echo-leak would allocate builtin.LeakCap
// and fail the call with an error saying so.
func TestMemoryLimitKillsALeakingHandler(t *testing.T) {
	if !plugins.MemoryLimitSupported {
		t.Skip("memory limits are enforced on Linux only")
	}
	if testenv.RaceEnabled {
		t.Skip("the race detector multiplies the plugin's memory; the limit is tested in the build without -race")
	}
	p, _ := newPool(t, plugins.PoolConfig{
		// 256MiB: the plugin is the whole test binary, and under load its
		// runtime maps more (threads, arenas) than at rest; 128MiB killed it
		// at start now and then, before it leaked anything.
		Builtin: "echo-leak", Instances: 1, Timeout: time.Minute, MemoryLimit: 256 << 20,
		Env: map[string]string{builtin.EnvLeakOn: "LEAK"},
	})
	pid := p.PIDs()[0]
	limit, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(limit), "Max data size             268435456            268435456") {
		t.Fatalf("RLIMIT_DATA of the plugin is not 256MiB:\n%s", limit)
	}
	_, err = p.Handle(context.Background(), &plugins.Batch{Records: []record.Record{{Value: []byte("a LEAK")}}})
	if !errors.Is(err, plugins.ErrPluginExited) || plugins.ClassOf(err) != plugins.ClassCrash {
		t.Fatalf("leaking call: err = %v, want a crash (ErrPluginExited)", err)
	}
	res, err := p.Handle(context.Background(), &plugins.Batch{Records: []record.Record{{Value: []byte("fine")}}})
	if err != nil || len(res.Outputs) != 1 {
		t.Fatalf("call after the restart: %+v, %v", res, err)
	}
	if p.Restarts() != 1 || p.PIDs()[0] == pid {
		t.Fatalf("restarts = %d, pid %d -> %d; want one restart", p.Restarts(), pid, p.PIDs()[0])
	}
}

// MaxConcurrency lets one process serve several calls at once: three calls
// that each sleep overlap on a single instance, and a crash during
// concurrent calls restarts the process once, after which it serves
// concurrent calls again.
func TestMaxConcurrencyPerInstance(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "sleep", Instances: 1, MaxConcurrency: 3, Timeout: time.Minute})
	if n := p.IdleCount(); n != 3 {
		t.Fatalf("idle tokens = %d, want 3 (one instance x max_concurrency 3)", n)
	}
	concurrently := func(values ...string) []error {
		errs := make([]error, len(values))
		var wg sync.WaitGroup
		for i, v := range values {
			wg.Go(func() {
				_, errs[i] = p.Handle(context.Background(), &plugins.Batch{Records: []record.Record{{Value: []byte(v)}}})
			})
		}
		wg.Wait()
		return errs
	}
	start := time.Now()
	for _, err := range concurrently("1s", "1s", "1s") {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Serially they take 3s; overlapped about 1s (generous for a loaded machine).
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("three 1s calls on one instance with max_concurrency 3 took %s: not concurrent", took)
	}
	pid := p.PIDs()[0]
	// "x" is not a duration: the sleep handler does not sleep. Kill the
	// process while two calls are in flight: both fail, one restart.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}()
	for i, err := range concurrently("5s", "5s") {
		if !errors.Is(err, plugins.ErrPluginExited) {
			t.Fatalf("call %d on a killed process: %v, want ErrPluginExited", i, err)
		}
	}
	for _, err := range concurrently("100ms", "100ms", "100ms") {
		if err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	if r := p.Restarts(); r != 1 || p.PIDs()[0] == pid {
		t.Fatalf("restarts = %d, pid %d -> %d; want exactly one restart", r, pid, p.PIDs()[0])
	}
	if n := p.IdleCount(); n != 3 {
		t.Fatalf("idle tokens after the restart = %d, want 3", n)
	}
}

// A handler process runs with one P while it serves one call at a time,
// gets a second when it serves two at once, and keeps GOMAXPROCS as the
// environment sets it.
func TestHandlerProcessProcs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: a handler process has one P anyway")
	}
	procs := func(p *plugins.Pool, value string) string {
		t.Helper()
		res, err := p.Handle(context.Background(), batchOf(value))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 1 {
			t.Fatalf("outputs %+v, want one", res.Outputs)
		}
		return string(res.Outputs[0].Value)
	}
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "procs", Instances: 1, MaxConcurrency: 2, Timeout: 2 * time.Minute})
	if got := procs(p, "one"); got != "1" {
		t.Errorf("GOMAXPROCS serving one call = %s, want 1", got)
	}
	held := make(chan string, 1)
	go func() {
		res, err := p.Handle(context.Background(), batchOf("hold"))
		if err != nil || len(res.Outputs) != 1 {
			held <- fmt.Sprintf("error %v, outputs %+v", err, res)
			return
		}
		held <- string(res.Outputs[0].Value)
	}()
	// The held call waits for this one, so both are served at once
	// (whichever of them the process got first).
	if got := procs(p, "release"); got != "2" {
		t.Errorf("GOMAXPROCS serving two calls at once = %s, want 2", got)
	}
	if got := <-held; got != "2" {
		t.Errorf("held call: GOMAXPROCS = %s, want 2", got)
	}
	if got := procs(p, "one"); got != "2" {
		t.Errorf("GOMAXPROCS after serving two calls at once = %s, want it kept at 2", got)
	}

	p3, _ := newPool(t, plugins.PoolConfig{Builtin: "procs", Instances: 1, Env: map[string]string{"GOMAXPROCS": "3"}})
	if got := procs(p3, "one"); got != "3" {
		t.Errorf("GOMAXPROCS with GOMAXPROCS=3 in the environment = %s, want 3", got)
	}
}

// A handler process does not profile its allocations, unless its
// environment asks for it.
func TestHandlerProcessMemProfile(t *testing.T) {
	for env, want := range map[string]string{"": "0", "memprofilerate=4096": "4096"} {
		cfg := plugins.PoolConfig{Builtin: "memprofilerate", Instances: 1}
		if env != "" {
			cfg.Env = map[string]string{"GODEBUG": env}
		}
		p, _ := newPool(t, cfg)
		res, err := p.Handle(context.Background(), batchOf("x"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 1 || string(res.Outputs[0].Value) != want {
			t.Errorf("GODEBUG=%q: MemProfileRate %+v, want %s", env, res.Outputs, want)
		}
	}
}
