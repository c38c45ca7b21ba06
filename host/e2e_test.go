package host_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// broker returns seed brokers for an end-to-end test: the real Kafka the
// test script started (WEIR_TEST_KAFKA=host:port), or an in-process kfake
// broker. Tests use unique topic and group names so they can share one.
func broker(t *testing.T) []string {
	t.Helper()
	if addr := os.Getenv("WEIR_TEST_KAFKA"); addr != "" {
		return strings.Split(addr, ",")
	}
	emb, err := kafkasrc.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	return emb.Addrs()
}

type env struct {
	t       *testing.T
	brokers []string
	cl      *kgo.Client
	adm     *kadm.Client
	in, out string
	group   string
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	e := &env{t: t, brokers: broker(t)}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	e.in, e.out, e.group = name+"-in-"+suffix, name+"-out-"+suffix, name+"-"+suffix
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e.cl, e.adm = cl, kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, partitions, e.in); err != nil {
		t.Fatal(err)
	}
	return e
}

// echoHandler is the handler section of e.config.
const echoHandler = `{ plugin: "builtin:echo", instances: 2, timeout: 10s, env: { WEIR_ECHO_SINK: out } }`

// config is a one-pipeline file: builtin echo handler, key ordering, output
// to e.out. extra is appended to the pipeline (indented YAML).
func (e *env) config(extra string) *config.File {
	e.t.Helper()
	return e.configWith(echoHandler, extra)
}

// configWith is config with another handler section.
func (e *env) configWith(handler, extra string) *config.File {
	e.t.Helper()
	return e.configWithRedis("", handler, extra)
}

// configWithRedis is configWith plus a redis section at redisAddr (none if
// empty; then idempotency is off). Keys get a prefix of the test's own.
func (e *env) configWithRedis(redisAddr, handler, extra string) *config.File {
	e.t.Helper()
	redis := ""
	if redisAddr != "" {
		redis = fmt.Sprintf("redis: { addr: %q, key_prefix: %q }\n", redisAddr, "weir-test:"+e.group+":")
	}
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s] }
%s
pipelines:
  - name: e2e
    source: { kafka: { topics: [%s], group: %s } }
    batch: { max_records: 200, max_bytes: 1MiB, max_wait: 5ms }
    handler: %s
    ordering: key
    retry: { max_attempts: 5, initial_backoff: 10ms, max_backoff: 200ms }
    sinks: { out: { kafka: { topic: %s } } }
    shutdown_timeout: 10s
%s`, strings.Join(e.brokers, ", "), redis, e.in, e.group, handler, e.out, extra)
	cfg, err := config.Parse("e2e.yaml", []byte(y))
	if err != nil {
		e.t.Fatalf("config: %v", err)
	}
	return cfg
}

// produce writes records from..from+n-1: key k<i%keys>, value i.
func (e *env) produce(from, n, keys int) {
	e.t.Helper()
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		id := from + i
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(id%keys)), Value: []byte(strconv.Itoa(id))}
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// running is a Host running in the background.
type running struct {
	h      *host.Host
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(cfg *config.File, name string, onEvent func(host.Event)) *running {
	log := zerolog.New(zerolog.NewTestWriter(e.t)).Level(testLogLevel()).With().Str("host", name).Logger()
	h := host.New(cfg, host.Options{Logger: log, HostID: name, OnEvent: onEvent,
		// notice rebalances within a tenth of a second, not kgo's 3s default
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}})
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{h: h, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- h.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop shuts the host down gracefully and fails the test on a run error.
func (r *running) stop(t *testing.T) {
	r.cancel()
	if r.done == nil {
		return
	}
	select {
	case err := <-r.done:
		r.done = nil
		if err != nil {
			t.Errorf("host run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("host did not stop within 60s")
	}
}

// runLogged runs a host whose debug-level log goes to logs until n records
// are complete, then stops it and fails the test on a run error.
func runLogged(t *testing.T, cfg *config.File, logs *testenv.SyncBuffer, n int64) {
	t.Helper()
	h := host.New(cfg, host.Options{Logger: zerolog.New(logs).Level(zerolog.DebugLevel), HostID: "h1",
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	waitFor(t, func() bool {
		var c int64
		for _, s := range h.Stats() {
			c += s.Completed
		}
		return c == n
	}, "every record to complete")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("host run: %v\n%s", err, logs.String())
	}
}

func (r *running) completed() int64 {
	var n int64
	for _, s := range r.h.Stats() {
		n += s.Completed
	}
	return n
}

// consume reads the output topic from the start until it holds want records
// (then a little longer, to catch duplicates) or the deadline passes.
// opts are added to the reading client's.
func (e *env) consume(want int, within time.Duration, opts ...kgo.Opt) []*kgo.Record {
	e.t.Helper()
	return e.consumeTopic(e.out, want, within, opts...)
}

// consumeTopic is consume of another topic.
func (e *env) consumeTopic(topic string, want int, within time.Duration, opts ...kgo.Opt) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(within)
	var settleUntil time.Time
	for time.Now().Before(deadline) {
		if len(out) >= want {
			if settleUntil.IsZero() {
				settleUntil = time.Now().Add(500 * time.Millisecond)
			} else if time.Now().After(settleUntil) {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// verifyOutputs checks that ids 0..n-1 each appear exactly once and that each
// key's ids increase (per-key order kept from input to output).
func verifyOutputs(t *testing.T, recs []*kgo.Record, n int) {
	t.Helper()
	seen := make([]int, n)
	last := map[string]int{}
	var dups, orderBreaks int
	for _, r := range recs {
		id, err := strconv.Atoi(string(r.Value))
		if err != nil || id < 0 || id >= n {
			t.Fatalf("output value %q is not an input id", r.Value)
		}
		if seen[id]++; seen[id] > 1 {
			dups++
		}
		if prev, ok := last[string(r.Key)]; ok && id <= prev && orderBreaks < 5 {
			orderBreaks++
			t.Errorf("key %s: id %d after %d (order broken)", r.Key, id, prev)
		}
		last[string(r.Key)] = id
	}
	var lost []int
	for id, c := range seen {
		if c == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d ids lost, first: %v", len(lost), lost[:min(len(lost), 10)])
	}
	if dups > 0 {
		t.Errorf("%d duplicate outputs without a crash", dups)
		var ids []int
		for id, c := range seen {
			if c > 1 {
				ids = append(ids, id)
			}
		}
		t.Logf("duplicated ids: %v", ids[:min(len(ids), 50)])
	}
}

func (e *env) requireCommittedToEnd() {
	e.t.Helper()
	lags, err := loadtest.Uncommitted(context.Background(), e.adm, e.group, e.in)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(lags) > 0 {
		e.t.Fatalf("committed offsets are not at the end: %+v", lags)
	}
}

// 100,000 records over 8 partitions and 1,000 keys through a real plugin
// subprocess: each handled once, per-key order kept, committed to the end.
func TestEndToEnd(t *testing.T) {
	const n, keys = 100_000, 1000
	e := newEnv(t, 8)
	e.produce(0, n, keys)
	r := e.start(e.config(""), "h1", nil)
	recs := e.consume(n, 2*time.Minute)
	r.stop(t)
	verifyOutputs(t, recs, n)
	e.requireCommittedToEnd()
}

// ownership follows one host's partition events and flags a commit made
// while it did not own the partition.
type ownership struct {
	mu       sync.Mutex
	owned    map[string]map[record.Partition]bool
	problems []string
	commits  int
}

func (o *ownership) observe(hostName string) func(host.Event) {
	return func(ev host.Event) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.owned == nil {
			o.owned = map[string]map[record.Partition]bool{}
		}
		if o.owned[hostName] == nil {
			o.owned[hostName] = map[record.Partition]bool{}
		}
		switch ev.Kind {
		case host.EventAssigned:
			o.owned[hostName][ev.Partition] = true
		case host.EventRevoked, host.EventLost:
			o.owned[hostName][ev.Partition] = false
		case host.EventCommit:
			o.commits++
			if !o.owned[hostName][ev.Partition] {
				o.problems = append(o.problems, fmt.Sprintf("%s committed %s at %s without owning it", hostName, ev.Partition, ev.Position))
			}
		}
	}
}

// Two hosts in one group, a third joins and one leaves while records flow:
// nothing lost or repeated, per-key order kept, no commit by a host that no
// longer owned the partition.
func TestRebalanceWhileFlowing(t *testing.T) {
	const n, keys = 60_000, 500
	e := newEnv(t, 8)
	cfg := e.config("")
	own := &ownership{}
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < n; i += 1000 { // ~6s of steady input
			e.produce(i, 1000, keys)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	h1 := e.start(cfg, "h1", own.observe("h1"))
	h2 := e.start(cfg, "h2", own.observe("h2"))
	waitFor(t, func() bool { return h1.completed()+h2.completed() > n/6 }, "first records handled")
	h3 := e.start(cfg, "h3", own.observe("h3"))
	waitFor(t, func() bool { return h3.completed() > 0 }, "the third host to take over partitions")
	waitFor(t, func() bool { return h1.completed()+h2.completed()+h3.completed() > n/2 }, "half handled")
	h1.stop(t) // leaves the group gracefully while records flow
	afterLeave := h2.completed() + h3.completed()
	select {
	case <-produced:
		t.Fatal("input ended before the first host left; the test no longer covers a rebalance under load")
	default:
	}
	<-produced
	recs := e.consume(n, 2*time.Minute)
	h2.stop(t)
	h3.stop(t)
	verifyOutputs(t, recs, n)
	e.requireCommittedToEnd()
	own.mu.Lock()
	defer own.mu.Unlock()
	for _, p := range own.problems {
		t.Error(p)
	}
	if own.commits == 0 {
		t.Fatal("no commit events observed")
	}
	if h2.completed()+h3.completed() <= afterLeave {
		t.Fatal("no record handled after the first host left")
	}
}

// A plugin process SIGKILLed mid-batch: the pool restarts it, the batch is
// retried, and nothing is lost (or written twice: outputs are only written
// once the handler has answered).
func TestPluginKilledMidBatch(t *testing.T) {
	const n, keys = 30_000, 300
	e := newEnv(t, 4)
	e.produce(0, n, keys)
	cfg := e.config("")
	cfg.Pipelines[0].Batch.MaxRecords = 50
	r := e.start(cfg, "h1", nil)
	failedCalls := func() int64 {
		var f int64
		for _, s := range r.h.Stats() {
			f += s.HandlerErrors
		}
		return f
	}
	// Kill a plugin process at least three times, and until one kill hit a
	// batch in flight (a kill can land on an idle process, which is
	// restarted without failing anything).
	killed := 0
	for killed < 3 || (failedCalls() == 0 && killed < 12) {
		waitFor(t, func() bool { return r.completed() > int64(killed+1)*int64(n)/14 }, "progress")
		pids := childPids(t)
		if len(pids) == 0 {
			t.Fatal("no plugin processes found")
		}
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatal(err)
		}
		killed++
		time.Sleep(50 * time.Millisecond)
	}
	recs := e.consume(n, 2*time.Minute)
	var restarts, failed int64
	for _, s := range r.h.Stats() {
		restarts += s.PluginRestarts
		failed += s.HandlerErrors
	}
	r.stop(t)
	verifyOutputs(t, recs, n)
	e.requireCommittedToEnd()
	if restarts < 3 {
		t.Fatalf("plugin restarts = %d after %d kills, want at least 3", restarts, killed)
	}
	if failed == 0 {
		t.Fatal("no batch failed: no kill hit a batch in flight")
	}
}

// childPids lists the processes whose parent is this test binary: the
// plugin subprocesses.
func childPids(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	me := os.Getpid()
	var pids []int
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + de.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == me {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogLevel is warn, or WEIR_TEST_LOG (debug, info, ...) to see more of a
// failing end-to-end test.
func testLogLevel() zerolog.Level {
	if l, err := zerolog.ParseLevel(os.Getenv("WEIR_TEST_LOG")); err == nil && os.Getenv("WEIR_TEST_LOG") != "" {
		return l
	}
	return zerolog.WarnLevel
}
