package host_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/plugins"
)

// rssBytes is this process's resident set size.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// A handler that allocates without bound on one record, under
// handler.memory_limit: the kernel stops it at its limit, the pool restarts
// it, the batch is retried and bisected like any crash, and only the record
// that leaks is dead-lettered (class crash); every other record is output
// once, and the host's own memory does not grow with the leak.
func TestMemoryLimitKillsALeakingHandlerEndToEnd(t *testing.T) {
	if !plugins.MemoryLimitSupported {
		t.Skip("memory limits are enforced on Linux only")
	}
	if testenv.RaceEnabled {
		t.Skip("the race detector multiplies the plugin's memory; the limit is tested in the build without -race")
	}
	const n = 2000
	e := newEnv(t, 2)
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		if i == 1234 {
			v = "1234-LEAK"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%50)), Value: []byte(v)}
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	// The plugin is this test binary, which needs more than a small Go
	// program: at 128MiB a process sometimes died at start or on a clean
	// batch on a loaded machine (and that record was dead-lettered as a
	// crash, correctly, but not what this test is about).
	cfg := e.configWith(`{ plugin: "builtin:echo-leak", instances: 2, memory_limit: 256MiB, env: { WEIR_LEAK_ON: LEAK, WEIR_ECHO_SINK: out } }`,
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	// Fewer crashes to isolate the record: the restart backoff doubles with
	// each crash in a row.
	cfg.Pipelines[0].Retry.MaxAttempts = 2
	cfg.Pipelines[0].Batch.MaxRecords = 32
	rssBefore := rssBytes(t)
	r := e.start(cfg, "h1", nil)
	outs := e.consume(n-1, 2*time.Minute)
	dead := readTopic(t, e.brokers, dlqTopic, 1, time.Minute)
	rssAfter := rssBytes(t)
	var restarts int64
	for _, s := range r.h.Stats() {
		restarts += s.PluginRestarts
	}
	r.stop(t)
	e.requireCommittedToEnd()

	seen := map[string]int{}
	for _, o := range outs {
		seen[string(o.Value)]++
	}
	for i := range n {
		if c := seen[strconv.Itoa(i)]; i != 1234 && c != 1 {
			t.Fatalf("record %d output %d times", i, c)
		}
	}
	if len(dead) != 1 || string(dead[0].Value) != "1234-LEAK" {
		t.Fatalf("dlq = %d records, want the leaking one", len(dead))
	}
	// crash, not echo-leak's own error: the limit stopped it before
	// builtin.LeakCap.
	if class := header(dead[0], dlq.HeaderErrorClass); class != "crash" {
		t.Fatalf("dlq error class = %q (%s), want crash", class, header(dead[0], dlq.HeaderErrorMessage))
	}
	if restarts < 2 {
		t.Fatalf("plugin restarts = %d; want at least 2 (the leak crashes every attempt until bisect isolates it)", restarts)
	}
	// Each attempt leaked up to 256MiB, in another process; the host grows
	// only by what it holds for the records themselves.
	if grew := rssAfter - rssBefore; grew > 100<<20 {
		t.Fatalf("host RSS grew by %d MiB while the handler leaked", grew>>20)
	}
	t.Logf("host RSS %d MiB -> %d MiB; %d plugin restarts", rssBefore>>20, rssAfter>>20, restarts)
}
