//go:build linux

package host_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
)

// The crash test: `weir run` SIGKILLed at random moments and restarted,
// against a broker and a real redis-server that outlive it. The handler
// appends every side effect it performs to a file (which survives the
// kill). Nothing is lost; with idempotency on, a side effect is repeated
// only for a record that was in flight in a killed process, never for one
// that had completed (its mark is in Redis even when its offset was not
// committed yet): commit_interval is long here, so most records completed
// before a kill are uncommitted at it, and each of them would be repeated
// without the marks.
func TestCrashRepeatsNoCompletedSideEffect(t *testing.T) {
	crashTest(t, false)
}

// The crash test under delivery: exactly_once (no Redis): a read_committed
// reader of the output sees every id exactly once, however many kills
// interrupted transactions. Every process has the same --host-id (as a
// StatefulSet pod would), so each restart fences its predecessor's open
// transaction at once instead of waiting for the broker to time it out.
func TestCrashExactlyOnce(t *testing.T) {
	crashTest(t, true)
}

func crashTest(t *testing.T, exactlyOnce bool) {
	n, kills := 200_000, 6
	if testing.Short() {
		n, kills = 40_000, 5
	}
	const parts, maxRecords = 8, 100
	var redis string
	if !exactlyOnce {
		redis = testenv.Redis(t)
	}
	e := newEnv(t, parts)
	// Records keep arriving while the kills happen (about 15s of input).
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		const chunk = 2000
		for i := 0; i < n; i += chunk {
			e.produce(i, min(chunk, n-i), 1000)
			time.Sleep(time.Duration(15_000*chunk/n) * time.Millisecond)
		}
	}()
	dir := keepOnFailure(t, "weir-crash-")
	sidefx := filepath.Join(dir, "side-effects")
	cfgPath := filepath.Join(dir, "weir.yaml")
	delivery := fmt.Sprintf(`redis: { addr: %q, key_prefix: "weir-crash:%s:" }`, redis, e.group)
	mode := "idempotency: { key: position }"
	var env []string
	var readOpts []kgo.Opt
	if exactlyOnce {
		delivery, mode = "", "delivery: exactly_once"
		env = []string{"WEIR_HOST_ID=crash-" + e.group}
		readOpts = []kgo.Opt{readCommitted}
	}
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s], session_timeout: 6s, heartbeat_interval: 500ms }
%s
pipelines:
  - name: crash
    source: { kafka: { topics: [%s], group: %s } }
    batch: { max_records: %d, max_wait: 5ms }
    handler: { plugin: "builtin:echo", instances: 2, env: { WEIR_ECHO_SINK: out, WEIR_SIDEFX_FILE: %q } }
    ordering: partition
    %s
    sinks: { out: { kafka: { topic: %s } } }
    commit_interval: 2s
    shutdown_timeout: 20s
`, strings.Join(e.brokers, ", "), delivery, e.in, e.group, maxRecords, sidefx, mode, e.out)
	if err := os.WriteFile(cfgPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildWeir(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var uncommittedAtKills int64
	for k := 0; k < kills; k++ {
		p := startWeir(t, bin, cfgPath, dir, "run"+strconv.Itoa(k), env...)
		before := countLines(t, sidefx)
		// Kill only a member that has its partitions: one killed in the
		// middle of joining can hold a rebalance on kfake.
		waitFor(t, p.assigned, "partitions assigned")
		waitFor(t, func() bool { c := countLines(t, sidefx); return c > before+1000 || c >= n }, "side effects after a (re)start")
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		p.kill(t)
		// What a kill leaves behind: records handled but not committed.
		lags, err := loadtest.Uncommitted(context.Background(), e.adm, e.group, e.in)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lags {
			uncommittedAtKills += l.End - max(l.Committed, 0)
		}
	}
	<-produced
	last := startWeir(t, bin, cfgPath, dir, "final", env...)
	outs := e.consume(n, 3*time.Minute, readOpts...)
	waitFor(t, func() bool {
		lags, _ := loadtest.Uncommitted(context.Background(), e.adm, e.group, e.in)
		return len(lags) == 0
	}, "commits at the end")
	last.stop(t)

	// No loss: every id reached the output.
	got := make([]bool, n)
	for _, o := range outs {
		if id, err := strconv.Atoi(string(o.Value)); err == nil && id >= 0 && id < n {
			got[id] = true
		}
	}
	for id, ok := range got {
		if !ok {
			t.Fatalf("id %d lost", id)
		}
	}
	if exactlyOnce {
		// Exactly once in the output, in per-key order; the handler's
		// own side effects are outside the transaction and may repeat.
		verifyOutputs(t, outs, n)
		t.Logf("%d kills; every id read once with read_committed; records past the committed offsets at the kills: %d", kills, uncommittedAtKills)
		e.requireCommittedToEnd()
		return
	}
	// Side effects: every id once, except records in flight at a kill.
	effects := readSideEffects(t, sidefx, n)
	repeated := 0
	for id, pids := range effects {
		if len(pids) == 0 {
			t.Fatalf("id %d never had its side effect", id)
		}
		if len(pids) > 1 {
			repeated++
			seen := map[string]bool{}
			for _, pid := range pids {
				if seen[pid] {
					t.Fatalf("id %d had its side effect twice in one plugin process %s: a retry repeated it", id, pid)
				}
				seen[pid] = true
			}
		}
	}
	// At a kill at most one batch per partition (ordering partition) is in
	// flight, per instance's worth of records.
	bound := kills * parts * maxRecords
	t.Logf("%d kills; %d ids had their side effect repeated (bound for in-flight batches: %d); records past the committed offsets at the kills (repeated without marks if they had been handled): %d",
		kills, repeated, bound, uncommittedAtKills)
	if repeated > bound {
		t.Fatalf("%d ids had their side effect repeated, more than the %d records that can be in flight at %d kills", repeated, bound, kills)
	}
	e.requireCommittedToEnd()
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte{'\n'})
}

// readSideEffects returns, per id, the plugin pids that performed its side
// effect.
func readSideEffects(t *testing.T, path string, n int) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make([][]string, n)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, pid, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(id)
		if !ok || err != nil || i < 0 || i >= n {
			t.Fatalf("side-effect line %q", sc.Text())
		}
		out[i] = append(out[i], pid)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
