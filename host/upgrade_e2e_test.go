package host_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/plugins/builtin"
)

// installHandler writes a plugin "binary" at path that serves this test
// binary's builtin handler name reporting version, with env, replacing any
// previous one atomically (write beside, then rename), as a deploy should.
func installHandler(t *testing.T, path, name, version string, env ...string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexport %s=%s %s=%s %s\nexec %q \"$@\"\n",
		"WEIR_BUILTIN_HANDLER", name, builtin.EnvEchoVersion, version, strings.Join(env, " "), exe)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Upgrade under load: records flow while the plugin file is replaced by a
// version tagging its outputs v2, then by a v3 that crashes on every batch.
// Every record is output exactly once; per input partition the outputs'
// handler version goes from v1 to v2 once and never back; v3 is rolled
// back (the log says so) and produces nothing.
func TestHandlerUpgradeUnderLoad(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const parts = 8
	e := newEnv(t, parts)
	dir := t.TempDir()
	plugin := filepath.Join(dir, "handler")
	installHandler(t, plugin, "echo", "v1", "WEIR_ECHO_SINK=out")

	cfg := e.configWith(fmt.Sprintf(`{ plugin: %q, instances: 2, timeout: 10s, watch: 100ms }`, plugin), "")
	pc := &cfg.Pipelines[0]
	pc.Ordering = config.OrderingPartition
	// v3's crashes are retried on the rolled-back version; leave room.
	pc.Retry.MaxAttempts = 10

	logs := &testenv.SyncBuffer{}
	log := zerolog.New(logs).Level(zerolog.InfoLevel)
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(logs.String(), "\n")
			t.Logf("last log lines:\n%s", strings.Join(lines[max(0, len(lines)-150):], "\n"))
		}
	})
	h := host.New(cfg, host.Options{Logger: log, HostID: "h1",
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host run: %v", err)
		}
	}()

	prod, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(from, to int) {
		t.Helper()
		err := loadtest.Produce(context.Background(), prod, e.in, to-from, func(i int) *kgo.Record {
			id := from + i
			p := int32(id % parts)
			return &kgo.Record{Partition: p, Key: []byte("k" + strconv.Itoa(id%1000)), Value: []byte(strconv.Itoa(id) + ".r"),
				Headers: []kgo.RecordHeader{{Key: "in-part", Value: []byte(strconv.Itoa(int(p)))}}}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	completed := func() int64 {
		var c int64
		for _, s := range h.Stats() {
			c += s.Completed
		}
		return c
	}
	logHas := func(s string) func() bool { return func() bool { return strings.Contains(logs.String(), s) } }

	// Phase 1: v1 runs; the file is replaced by v2 while records flow (the
	// first half is produced over about 3s, in steps).
	phase1 := make(chan struct{})
	go func() {
		defer close(phase1)
		const steps = 30
		for i := range steps {
			produce(i*n/2/steps, (i+1)*n/2/steps)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitFor(t, func() bool { return completed() >= int64(n/8) }, "an eighth of the records handled by v1")
	replaced := time.Now()
	installHandler(t, plugin, "echo", "v2", "WEIR_ECHO_SINK=out")
	waitFor(t, logHas("new batches go to version v2"), "the switch to v2")
	t.Logf("switched to v2 %s after the file was replaced (watch: 100ms), with %d records completed",
		time.Since(replaced).Round(time.Millisecond), completed())
	<-phase1
	// Phase 2: v2 passes probation on more records.
	produce(n/2, 3*n/4)
	waitFor(t, logHas("handler upgrade complete"), "v2 passing probation")
	// Phase 3: a v3 that crashes on every batch is rolled back.
	installHandler(t, plugin, "echo-crash", "v3", "WEIR_ECHO_SINK=out", builtin.EnvCrashOn+"=.r")
	waitFor(t, logHas("new batches go to version v3"), "the switch to v3")
	produce(3*n/4, n)
	waitFor(t, logHas("handler upgrade rolled back: the new version failed its first batches"), "v3 rolled back")

	outs := e.consume(n, 3*time.Minute)
	if st := h.Status(); st.Pipelines[0].Plugin.Version != "v2" {
		t.Errorf("status reports handler version %q after the rollback, want v2", st.Pipelines[0].Plugin.Version)
	}

	type out struct {
		id      int
		version string
	}
	byPart := map[string][]out{}
	seen := make([]int, n)
	versions := map[string]int{}
	for _, o := range outs {
		id, err := strconv.Atoi(strings.TrimSuffix(string(o.Value), ".r"))
		if err != nil || id < 0 || id >= n {
			t.Fatalf("unexpected output %q", o.Value)
		}
		seen[id]++
		v := header(o, dlq.HeaderHandlerVersion)
		versions[v]++
		byPart[header(o, "in-part")] = append(byPart[header(o, "in-part")], out{id, v})
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("record %d output %d times", id, c)
		}
	}
	if versions["v1"] == 0 || versions["v2"] == 0 || len(versions) != 2 {
		t.Fatalf("outputs by handler version: %v; want v1 and v2 only", versions)
	}
	v2InPhase1 := 0
	for _, os := range byPart {
		for _, o := range os {
			if o.id < n/2 && o.version == "v2" {
				v2InPhase1++
			}
		}
	}
	if v2InPhase1 == 0 {
		t.Fatalf("no record of the first half was handled by v2: the switch did not happen while they flowed")
	}
	for p, os := range byPart {
		slices.SortFunc(os, func(a, b out) int { return a.id - b.id })
		for i := 1; i < len(os); i++ {
			if os[i-1].version == "v2" && os[i].version != "v2" {
				t.Fatalf("input partition %s: record %d handled by %s after record %d by v2", p, os[i].id, os[i].version, os[i-1].id)
			}
		}
	}
	t.Logf("outputs by version: %v; %d records of the first half handled by v2", versions, v2InPhase1)
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// POST /admin/reload rolls the handler to the plugin file as it is now
// (here with watching off, so nothing else would), and outputs and dead
// letters name the version that made them; with a config loader that
// fails, it answers 500 with the config's errors and changes nothing.
func TestAdminReloadRollsTheHandler(t *testing.T) {
	e := newEnv(t, 2)
	plugin := filepath.Join(t.TempDir(), "handler")
	installHandler(t, plugin, "echo", "v1", "WEIR_ECHO_SINK=out")
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(fmt.Sprintf(`{ plugin: %q, instances: 1, watch: 0s }`, plugin),
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	cfg.Admin.Addr = "127.0.0.1:0"
	var failLoad atomic.Bool
	h := host.New(cfg, host.Options{Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel()), HostID: "h1",
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)},
		LoadConfig: func() (*config.File, error) {
			if failLoad.Load() {
				return nil, errors.New("weir.yaml:3: pipelines[0].colour: unknown field")
			}
			return cfg, nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host run: %v", err)
		}
	}()
	waitFor(t, func() bool { return h.AdminAddr() != "" && h.Status().Ready }, "the host to be ready")
	base := "http://" + h.AdminAddr()

	e.produce(0, 100, 10)
	waitFor(t, func() bool { return len(e.consume(100, 5*time.Second)) >= 100 }, "100 outputs of v1")
	installHandler(t, plugin, "echo", "v2", "WEIR_ECHO_SINK=out", builtin.EnvFailOn+"=POISON")
	if code, body := post(t, base+"/admin/reload"); code != http.StatusOK || !strings.Contains(body, `"ok": true`) {
		t.Fatalf("POST /admin/reload: %d %s", code, body)
	}
	if v := h.Status().Pipelines[0].Plugin.Version; v != "v2" {
		t.Fatalf("status reports version %q after the reload, want v2", v)
	}
	_, metrics := get(t, base+"/metrics")
	if v := metricValue(t, metrics, `weir_handler_info{handler="echo",pipeline="e2e",version="v2"}`); v != 1 {
		t.Fatalf("weir_handler_info for v2 = %v", v)
	}
	if v := metricValue(t, metrics, `weir_handler_upgrades_total{outcome="switched",pipeline="e2e"}`); v != 1 {
		t.Fatalf("weir_handler_upgrades_total{outcome=switched} = %v, want 1", v)
	}
	e.produce(100, 100, 10)
	if err := loadtest.Produce(context.Background(), e.cl, e.in, 1, func(int) *kgo.Record {
		return &kgo.Record{Key: []byte("k1"), Value: []byte("POISON")}
	}); err != nil {
		t.Fatal(err)
	}
	dead := readTopic(t, e.brokers, dlqTopic, 1, time.Minute)
	if len(dead) != 1 || header(dead[0], dlq.HeaderHandlerVersion) != "v2" || header(dead[0], dlq.HeaderHandlerName) != "echo" {
		t.Fatalf("dlq: %d records; want the poison one naming handler echo v2 (not v1, the version the pipeline started with)", len(dead))
	}
	outs := e.consume(200, time.Minute)
	versions := map[string]int{}
	for _, o := range outs {
		versions[header(o, dlq.HeaderHandlerVersion)]++
	}
	if len(outs) != 200 || versions["v1"] != 100 || versions["v2"] != 100 {
		t.Fatalf("outputs by version %v (%d outputs), want 100 of v1 and 100 of v2", versions, len(outs))
	}

	failLoad.Store(true)
	code, body := post(t, base+"/admin/reload")
	if code != http.StatusInternalServerError || !strings.Contains(body, "the new config is rejected") || !strings.Contains(body, "colour") {
		t.Fatalf("POST /admin/reload with a broken config: %d %s", code, body)
	}
	if st := h.Status(); !st.Ready || st.Pipelines[0].Plugin.Version != "v2" {
		t.Fatalf("after a rejected reload: ready %v (%s), version %q", st.Ready, st.Reason, st.Pipelines[0].Plugin.Version)
	}
}
