package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
	"github.com/weirhq/weir/record"
)

// versions starts, on each call, the next of a list of handler versions:
// a builtin with env, or a start error.
type versions struct {
	t    *testing.T
	next int
	list []func(ctx context.Context) (*plugins.Pool, error)
}

func builtinVersion(name, version string, env ...string) func(ctx context.Context) (*plugins.Pool, error) {
	return func(ctx context.Context) (*plugins.Pool, error) {
		e := map[string]string{builtin.EnvEchoVersion: version}
		for i := 0; i+1 < len(env); i += 2 {
			e[env[i]] = env[i+1]
		}
		return plugins.NewPool(ctx, plugins.PoolConfig{Builtin: name, Instances: 2, Env: e, Timeout: 20 * time.Second})
	}
}

func (v *versions) start(ctx context.Context) (*plugins.Pool, error) {
	if v.next >= len(v.list) {
		return nil, errors.New("no more versions")
	}
	f := v.list[v.next]
	v.next++
	return f(ctx)
}

func batchOf(part string, values ...string) *plugins.Batch {
	b := &plugins.Batch{Pipeline: "p", Stream: "t", Partition: part, Attempt: 1}
	for _, v := range values {
		b.Records = append(b.Records, record.Record{Value: []byte(v)})
	}
	return b
}

// An upgrade switches new batches to the new version and names it on
// results; a version that fails to start leaves the running one in place;
// a version that fails its first batches is rolled back, and the log says
// so; a good version passes probation and the previous one is stopped.
func TestRollingHandlerUpgradesAndRollsBack(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	v := &versions{t: t, list: []func(context.Context) (*plugins.Pool, error){
		builtinVersion("echo", "v1"),
		func(context.Context) (*plugins.Pool, error) { return nil, errors.New("exec format error") },
		builtinVersion("echo-crash", "v3", builtin.EnvCrashOn, "x"),
		builtinVersion("echo", "v4"),
	}}
	ctx := context.Background()
	rh, err := newRollingHandler(ctx, "p", "", 10*time.Second, zerolog.New(logs), v.start)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close(ctx)
	handle := func(part string) (*plugins.Result, error) {
		return rh.Handle(ctx, batchOf(part, "x1", "x2"))
	}
	res, err := handle("0")
	if err != nil || res.Handler.Version != "v1" || len(res.Outputs) != 2 {
		t.Fatalf("v1: %+v, %v", res, err)
	}

	// A version that does not start: refused, v1 keeps handling.
	if err := rh.Upgrade(ctx, "test", true); err == nil || !strings.Contains(err.Error(), "exec format error") {
		t.Fatalf("upgrade to a version that fails to start: %v", err)
	}
	if res, err := handle("0"); err != nil || res.Handler.Version != "v1" {
		t.Fatalf("after a failed start: %+v, %v", res, err)
	}

	// A version that crashes on every batch: rolled back after
	// probationFailures batches; each failed call names v3.
	if err := rh.Upgrade(ctx, "test", true); err != nil {
		t.Fatal(err)
	}
	if got := rh.Info().Version; got != "v3" {
		t.Fatalf("after upgrading, current version %q, want v3", got)
	}
	if err := rh.Upgrade(ctx, "test", true); !errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("a second upgrade during probation: %v, want ErrUpgradeInProgress", err)
	}
	for i := range probationFailures {
		_, err := handle(fmt.Sprint(i))
		if info, ok := handlerOf(err); !errors.Is(err, plugins.ErrPluginExited) || !ok || info.Version != "v3" {
			t.Fatalf("call %d on v3: %v (version %q), want a crash of v3", i, err, info.Version)
		}
	}
	if got := rh.Info().Version; got != "v1" {
		t.Fatalf("after v3 failed %d batches, current version %q, want v1 (rolled back)", probationFailures, got)
	}
	if res, err := handle("0"); err != nil || res.Handler.Version != "v1" {
		t.Fatalf("after the rollback: %+v, %v", res, err)
	}
	if !strings.Contains(logs.String(), "handler upgrade rolled back: the new version failed its first batches") ||
		!strings.Contains(logs.String(), "handler upgrade rolled back: the new version failed to start") {
		t.Fatalf("the log does not say both upgrades were rolled back:\n%s", logs.String())
	}

	// A good version: promoted after probationSuccesses batches.
	if err := rh.Upgrade(ctx, "test", true); err != nil {
		t.Fatal(err)
	}
	for i := range probationSuccesses {
		if res, err := handle(fmt.Sprint(i % 3)); err != nil || res.Handler.Version != "v4" {
			t.Fatalf("v4 call %d: %+v, %v", i, res, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rh.mu.Lock()
		live, prev := len(rh.live), rh.prev
		rh.mu.Unlock()
		if live == 1 && prev == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v1 and v3 not stopped after v4 passed probation: %d versions live", live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "handler upgrade complete") {
		t.Fatalf("the log does not say v4 passed probation:\n%s", logs.String())
	}
	rh.mu.Lock()
	counts := rh.upgrades
	rh.mu.Unlock()
	if counts["switched"] != 2 || counts["completed"] != 1 || counts["rolled_back"] != 1 || counts["failed_to_start"] != 1 {
		t.Fatalf("upgrade counts %v, want 2 switched (v3, v4), 1 completed, 1 rolled back, 1 failed to start", counts)
	}
}

// A version that rejects every record of its first batches (a bad deploy,
// not bad data) is rolled back too; one bad record in a batch is not held
// against it.
func TestRollingHandlerRollsBackAVersionRejectingEverything(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	v := &versions{t: t, list: []func(context.Context) (*plugins.Pool, error){
		builtinVersion("echo", "v1"),
		builtinVersion("echo", "v2", builtin.EnvFailOn, "x"),
	}}
	ctx := context.Background()
	rh, err := newRollingHandler(ctx, "p", "", 10*time.Second, zerolog.New(logs), v.start)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close(ctx)
	if err := rh.Upgrade(ctx, "test", true); err != nil {
		t.Fatal(err)
	}
	// Batches with one bad record of two: judged on the data, not the version.
	for range probationFailures {
		res, err := rh.Handle(ctx, batchOf("0", "x", "ok"))
		if err != nil || len(res.Failures) != 1 || res.Handler.Version != "v2" {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	for range probationFailures {
		if res, err := rh.Handle(ctx, batchOf("0", "x1", "x2")); err != nil || len(res.Failures) != 2 {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	if got := rh.Info().Version; got != "v1" {
		t.Fatalf("version %q after v2 rejected every record of %d batches, want v1", got, probationFailures)
	}
	if !strings.Contains(logs.String(), "rejected all 2 records of a batch") {
		t.Fatalf("the rollback does not say why:\n%s", logs.String())
	}
}

// A partition's batch waits while the previous version still has a batch
// of that partition in flight, so a partition never runs on two versions
// at once; other partitions go ahead.
func TestRollingHandlerKeepsAPartitionOnOneVersion(t *testing.T) {
	v := &versions{t: t, list: []func(context.Context) (*plugins.Pool, error){
		builtinVersion("echo", "v1"), builtinVersion("echo", "v2"),
	}}
	ctx := context.Background()
	rh, err := newRollingHandler(ctx, "p", "", 10*time.Second, zerolog.Nop(), v.start)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close(ctx)
	// Pretend v1 has a batch of partition 0 in flight.
	g1, wait := rh.enter(record.Partition{Stream: "t", ID: "0"})
	if wait != nil {
		t.Fatal("nothing in flight, yet enter waits")
	}
	if err := rh.Upgrade(ctx, "test", true); err != nil {
		t.Fatal(err)
	}
	done := make(chan *plugins.Result, 1)
	go func() {
		res, err := rh.Handle(ctx, batchOf("0", "a"))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	if res, err := rh.Handle(ctx, batchOf("1", "b")); err != nil || res.Handler.Version != "v2" {
		t.Fatalf("partition 1 on v2: %+v, %v", res, err)
	}
	select {
	case <-done:
		t.Fatal("partition 0 ran on v2 while v1 had a batch of it in flight")
	case <-time.After(300 * time.Millisecond):
	}
	rh.leave(g1, record.Partition{Stream: "t", ID: "0"}, &plugins.Result{}, nil, 1)
	select {
	case res := <-done:
		if res.Handler.Version != "v2" {
			t.Fatalf("partition 0 after v1 finished: version %q", res.Handler.Version)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("partition 0 still waiting after v1 finished its batch")
	}
}

// The watcher upgrades when the plugin file's content changes and has held
// still, and not when it is rewritten with the same bytes.
func TestRollingHandlerWatchesThePluginFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(path, []byte("version 1"), 0o755); err != nil {
		t.Fatal(err)
	}
	v := &versions{t: t, list: []func(context.Context) (*plugins.Pool, error){
		builtinVersion("echo", "v1"), builtinVersion("echo", "v2"), builtinVersion("echo", "v3"),
	}}
	logs := &testenv.SyncBuffer{}
	ctx := context.Background()
	rh, err := newRollingHandler(ctx, "p", path, 10*time.Second, zerolog.New(logs), v.start)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close(ctx)
	rh.StartWatching(20 * time.Millisecond)
	replace := func(content string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	waitVersion := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for rh.Info().Version != want {
			if time.Now().After(deadline) {
				t.Fatalf("version %q, want %q; log:\n%s", rh.Info().Version, want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	replace("version 2")
	waitVersion("v2")
	// v2 passes probation.
	for range probationSuccesses {
		if _, err := rh.Handle(ctx, batchOf("0", "a")); err != nil {
			t.Fatal(err)
		}
	}
	// Same bytes, new file: nothing to roll (what the watcher does on a
	// change, called here so that the test needs no sleep).
	replace("version 2")
	for {
		err := rh.Upgrade(ctx, "test", false)
		if errors.Is(err, ErrUpgradeInProgress) { // the watcher is at it too
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if got := rh.Info().Version; got != "v2" || v.next != 2 {
		t.Fatalf("an identical file was rolled out: version %q, %d started", got, v.next)
	}
	replace("version 3")
	waitVersion("v3")
	if v.next != 3 {
		t.Fatalf("%d versions started, want 3", v.next)
	}
}

// Each output gets its own headers plus the version, from one slab, and the
// handler's headers are not written to.
func TestVersionTagger(t *testing.T) {
	shared := []record.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}
	res := &plugins.Result{Handler: plugins.Info{Version: "v7"}, Outputs: []plugins.Output{
		{Message: record.Message{Headers: shared[:1:2]}},
		{Message: record.Message{Headers: shared[1:]}},
		{Message: record.Message{}},
	}}
	vt := newVersionTagger(res)
	var got [][]record.Header
	for _, o := range res.Outputs {
		got = append(got, vt.tag(o.Message).Headers)
	}
	want := [][]string{{"a=1", "weir.handler.version=v7"}, {"b=2", "weir.handler.version=v7"}, {"weir.handler.version=v7"}}
	for i := range want {
		var s []string
		for _, h := range got[i] {
			s = append(s, h.Key+"="+string(h.Value))
		}
		if strings.Join(s, ",") != strings.Join(want[i], ",") {
			t.Errorf("output %d headers %v, want %v", i, s, want[i])
		}
	}
	if string(shared[1].Value) != "2" {
		t.Errorf("the handler's header slice was written to: %v", shared)
	}
	if res := vt.tag(record.Message{Headers: shared}); len(res.Headers) != 3 {
		t.Errorf("a message beyond the slab: %v", res.Headers)
	}
	if m := newVersionTagger(&plugins.Result{}).tag(record.Message{Headers: shared}); len(m.Headers) != 2 {
		t.Errorf("without a version the headers change: %v", m.Headers)
	}
}

// BenchmarkRollingHandler500 measures a 500-record echo batch through the
// pool directly and through the rollingHandler (plus tagging the outputs'
// version): the cost of upgradability per batch.
func BenchmarkRollingHandler500(b *testing.B) {
	ctx := context.Background()
	batch := batchOf("0")
	for i := range 500 {
		batch.Records = append(batch.Records, record.Record{Key: []byte(fmt.Sprint(i)), Value: make([]byte, 100)})
	}
	start := builtinVersion("echo", "v1")
	b.Run("pool", func(b *testing.B) {
		pool, err := start(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close(ctx)
		for b.Loop() {
			if _, err := pool.Handle(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rolling", func(b *testing.B) {
		rh, err := newRollingHandler(ctx, "p", "", 10*time.Second, zerolog.Nop(), start)
		if err != nil {
			b.Fatal(err)
		}
		defer rh.Close(ctx)
		for b.Loop() {
			res, err := rh.Handle(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			vt := newVersionTagger(res)
			for _, o := range res.Outputs {
				_ = vt.tag(o.Message)
			}
		}
	})
}

// A config read twice is the same pipeline (a reload must not restart
// it), a start time included; a changed field is not.
func TestSamePipelineAcrossReads(t *testing.T) {
	src := `version: 1
kafka: { brokers: [embedded] }
pipelines:
  - name: p
    source: { kafka: { topics: [in], start: "2025-01-31T10:00:00+01:00" } }
    handler: { plugin: "builtin:echo", env: { A: "1" } }
    sinks: { out: { kafka: { topic: out } } }
    dlq: { kafka: { topic: dead } }
`
	a, err := config.Parse("w.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Parse("w.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !samePipeline(&a.Pipelines[0], &b.Pipelines[0]) {
		t.Fatal("the same file read twice gives different pipelines")
	}
	c, err := config.Parse("w.yaml", []byte(strings.Replace(src, `A: "1"`, `A: "2"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if samePipeline(&a.Pipelines[0], &c.Pipelines[0]) {
		t.Fatal("a changed handler.env is not a change")
	}
}
