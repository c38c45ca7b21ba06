package host_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// startWithAdmin starts cfg like e.start, with the admin server on a free
// loopback port, and returns its base URL once it listens.
func (e *env) startWithAdmin(cfg *config.File, name string) (*running, string) {
	e.t.Helper()
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Admin.LagInterval = 100 * time.Millisecond
	r := e.start(cfg, name, nil)
	var addr string
	waitFor(e.t, func() bool { addr = r.h.AdminAddr(); return addr != "" }, "the admin server to listen")
	return r, "http://" + addr
}

// status gets and decodes /status.
func status(t *testing.T, base string) host.Status {
	t.Helper()
	var st host.Status
	_, body := get(t, base+"/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return st
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// metricValue finds the sample whose name and labels are exactly series
// (like `weir_dlq_records_total{pipeline="e2e"}`) in a text exposition.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics:\n%s", series, body)
	return 0
}

// A known run: n records, k of them malformed, through builtin:echo with a
// DLQ. Scraped over HTTP, the metrics count exactly that, and /status shows
// the lanes with their committed positions.
func TestAdminMetricsAfterKnownRun(t *testing.T) {
	const n, k = 300, 7
	e := newEnv(t, 3)
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		if i%(n/k) == 0 && i/(n/k) < k {
			v += "-MALFORMED"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%20)), Value: []byte(v)}
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(`{ plugin: "builtin:echo", instances: 2, env: { WEIR_ECHO_SINK: out, WEIR_FAIL_ON: MALFORMED } }`,
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	r, base := e.startWithAdmin(cfg, "h1")

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	waitFor(t, func() bool { return r.completed() == n }, "every record to complete")
	waitFor(t, func() bool {
		var st host.Status
		_, body := get(t, base+"/status")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
		committed := 0
		for _, l := range st.Pipelines[0].Lanes {
			if l.Committed != "" {
				committed++
			}
		}
		return committed == 3
	}, "/status to show a committed position on each of the 3 lanes")
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK }, "/readyz to be 200")
	// Lag is measured: every partition consumed to its end, none behind.
	waitFor(t, func() bool {
		st := status(t, base)
		for _, l := range st.Pipelines[0].Lanes {
			if !l.Lag.Known || l.Lag.Lag != 0 || l.Lag.End == 0 {
				return false
			}
		}
		return len(st.Pipelines[0].Lanes) == 3
	}, "/status to show lag 0 on each of the 3 lanes")

	_, body := get(t, base+"/metrics")
	p := `{pipeline="e2e"}`
	for series, want := range map[string]float64{
		"weir_records_in_total" + p:                                                         n,
		"weir_records_completed_total" + p:                                                  n,
		"weir_outputs_total" + p:                                                            n - k,
		`weir_failures_total{class="invalid_input",pipeline="e2e"}`:                         k,
		`weir_failures_total{class="transient",pipeline="e2e"}`:                             0,
		"weir_dlq_records_total" + p:                                                        k,
		"weir_retries_total" + p:                                                            0,
		`weir_handler_errors_total{class="crash",pipeline="e2e"}`:                           0,
		"weir_plugin_instances_up" + p:                                                      2,
		"weir_source_connected" + p:                                                         1,
		"weir_inflight_bytes" + p:                                                           0,
		"weir_paused_partitions" + p:                                                        0,
		"weir_plugin_instances" + p:                                                         2,
		"weir_plugin_restarts_total" + p:                                                    0,
		"weir_pipeline_running" + p:                                                         1,
		"weir_assigned_partitions" + p:                                                      3,
		`weir_rebalances_total{kind="assigned",pipeline="e2e"}`:                             3,
		`weir_breaker_state{breaker="handler",pipeline="e2e"}`:                              0,
		`weir_breaker_state{breaker="dlq",pipeline="e2e"}`:                                  0,
		`weir_partition_paused{partition="0",pipeline="e2e",topic="` + e.in + `"}`:          0,
		`weir_lag_records{partition="1",pipeline="e2e",topic="` + e.in + `"}`:               0,
		`weir_lag_drainable_records{partition="2",pipeline="e2e",topic="` + e.in + `"}`:     0,
		`weir_lag_blocked_records{partition="0",pipeline="e2e",topic="` + e.in + `"}`:       0,
		`weir_oldest_unfinished_seconds{partition="0",pipeline="e2e",topic="` + e.in + `"}`: 0,
	} {
		if got := metricValue(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	batches := metricValue(t, body, "weir_batches_total"+p)
	if calls := metricValue(t, body, "weir_handler_call_seconds_count"+p); batches < 1 || calls != batches {
		t.Errorf("batches %v, handler calls %v: want equal and positive", batches, calls)
	}
	if inf := metricValue(t, body, `weir_handler_call_seconds_bucket{pipeline="e2e",le="+Inf"}`); inf != batches {
		t.Errorf("histogram +Inf bucket %v, want %v", inf, batches)
	}
	if sum, count := metricValue(t, body, "weir_batch_records_sum"+p), metricValue(t, body, "weir_batch_records_count"+p); sum != n || count != batches {
		t.Errorf("batch size histogram: sum %v count %v; want %d records in %v batches", sum, count, n, batches)
	}
	if count := metricValue(t, body, "weir_batch_seconds_count"+p); count != batches {
		t.Errorf("batch latency histogram: count %v, want %v", count, batches)
	}
	if metricValue(t, body, "weir_commits_total"+p) < 1 {
		t.Error("weir_commits_total is 0")
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := get(t, base+"/"); code != http.StatusOK || !strings.Contains(body, "/status") {
		t.Errorf("/ = %d, want the status page polling /status", code)
	}
	r.stop(t)
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the admin server still answers after Run returned")
	}
}

// /readyz is 503, naming the breaker, while the handler's breaker is open
// (a downstream outage), and 200 again once the outage ends.
func TestReadyzFollowsTheBreaker(t *testing.T) {
	const n = 200
	e := newEnv(t, 1)
	e.produce(0, n, 10)
	flag := filepath.Join(t.TempDir(), "down")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.configWith(fmt.Sprintf(`{ plugin: "builtin:echo", env: { WEIR_ECHO_SINK: out, WEIR_RETRY_WHILE: %q } }`, flag),
		"    dlq: { kafka: { topic: "+e.out+"-dlq } }\n"+
			"    breaker: { min_requests: 2, failure_ratio: 0.5, open_for: 200ms }\n")
	cfg.Pipelines[0].Retry.MaxAttempts = 2
	r, base := e.startWithAdmin(cfg, "h1")

	var body string
	waitFor(t, func() bool {
		var code int
		code, body = get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "breaker handler")
	}, "/readyz to be 503 with the handler breaker open")
	var ready struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || ready.Ready {
		t.Fatalf("/readyz body %q (%v): want ready false with a reason", body, err)
	}
	_, m := get(t, base+"/metrics")
	if v := metricValue(t, m, `weir_breaker_state{breaker="handler",pipeline="e2e"}`); v == 0 {
		t.Errorf("weir_breaker_state of the handler = %v during the outage", v)
	}
	// Behind an open breaker, all of the lag is blocked: more workers
	// would meet the same outage.
	var lag host.PartitionLag
	waitFor(t, func() bool {
		st := status(t, base)
		if len(st.Pipelines[0].Lanes) != 1 {
			return false
		}
		lag = st.Pipelines[0].Lanes[0].Lag
		return lag.Known && lag.At.After(st.Time.Add(-time.Second)) && lag.BlockedBy == "breaker"
	}, "/status to show the lag blocked by the breaker")
	if lag.Lag == 0 || lag.Blocked != lag.Lag || lag.Drainable != 0 {
		t.Errorf("lag during the outage: %+v; want all of it blocked", lag)
	}
	_, m = get(t, base+"/metrics")
	series := `{partition="0",pipeline="e2e",topic="` + e.in + `"}`
	if b, d := metricValue(t, m, "weir_lag_blocked_records"+series), metricValue(t, m, "weir_lag_drainable_records"+series); b == 0 || d != 0 {
		t.Errorf("metrics during the outage: blocked %v drainable %v; want blocked > 0, drainable 0", b, d)
	}
	// The outage's failures are counted by their class.
	if v := metricValue(t, m, `weir_failures_total{class="transient",pipeline="e2e"}`); v == 0 {
		t.Error(`weir_failures_total{class="transient"} is 0 during a transient outage`)
	}
	if v := metricValue(t, m, `weir_failures_total{class="invalid_input",pipeline="e2e"}`); v != 0 {
		t.Errorf(`weir_failures_total{class="invalid_input"} = %v, want 0`, v)
	}

	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return r.completed() == n }, "every record to complete after the outage")
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK }, "/readyz to be 200 again")
}

// The Redis password, taken from the environment, is used (a redis-server
// that requires it keeps the idempotency marks) and appears nowhere: not in
// any log line at debug level, not in /status, not in /metrics.
func TestSecretsStayOutOfLogsAndAdmin(t *testing.T) {
	const n = 100
	secret := "s3cr3t-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	srv := testenv.StartRedis(t)
	// StartRedis waits for an unauthenticated PING, so the password is set
	// once the server is up.
	if reply := testenv.RedisCommand(t, srv.Addr(), "CONFIG", "SET", "requirepass", secret); reply != "+OK" {
		t.Fatalf("CONFIG SET requirepass: %s", reply)
	}
	if reply := testenv.RedisCommand(t, srv.Addr(), "PING"); !strings.Contains(reply, "NOAUTH") {
		t.Fatalf("redis-server answers without the password: %s", reply)
	}

	e := newEnv(t, 2)
	e.produce(0, n, 10)
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s] }
redis: { addr: %q, password: "${REDIS_PASSWORD}", key_prefix: "weir-test:%s:" }
admin: { addr: "127.0.0.1:0" }
pipelines:
  - name: e2e
    source: { kafka: { topics: [%s], group: %s } }
    batch: { max_records: 20, max_wait: 5ms }
    handler: { plugin: "builtin:echo", env: { WEIR_ECHO_SINK: out } }
    sinks: { out: { kafka: { topic: %s } } }
    shutdown_timeout: 10s
`, strings.Join(e.brokers, ", "), srv.Addr(), e.group, e.in, e.group, e.out)
	cfg, err := config.Parse("secret.yaml", []byte(y), config.WithLookupEnv(func(k string) (string, bool) {
		if k == "REDIS_PASSWORD" {
			return secret, true
		}
		return "", false
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.Password != secret {
		t.Fatal("the password was not taken from the environment")
	}

	var logs testenv.SyncBuffer
	h := host.New(cfg, host.Options{Logger: zerolog.New(&logs).Level(zerolog.DebugLevel), HostID: "h1",
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, func() bool {
		var c int64
		for _, s := range h.Stats() {
			c += s.Completed
		}
		return c == n
	}, "every record to complete")
	base := "http://" + h.AdminAddr()
	_, status := get(t, base+"/status")
	_, metrics := get(t, base+"/metrics")
	_, ready := get(t, base+"/readyz")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("host run: %v", err)
	}
	done <- nil

	if reply := testenv.RedisCommand(t, srv.Addr(), "AUTH", secret); reply != "+OK" {
		t.Fatalf("AUTH: %s", reply)
	}
	out := logs.String()
	if !strings.Contains(out, "idempotency marks and checkpoints in redis") {
		t.Fatalf("the pipeline did not use redis; logs:\n%s", out)
	}
	for what, text := range map[string]string{"the logs": out, "/status": status, "/metrics": metrics, "/readyz": ready} {
		if strings.Contains(text, secret) {
			t.Errorf("%s contain the redis password", what)
		}
	}
}

// /readyz is 503, naming the source, while the broker is gone, and 200
// again once a broker answers at the address again; weir_source_connected
// follows.
func TestReadyzFollowsTheSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	emb, err := kafkasrc.StartEmbedded(kafkasrc.WithPort(port))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { emb.Close() }()
	e := &env{t: t, brokers: emb.Addrs(), in: "src-ready-in", out: "src-ready-out", group: "src-ready"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	e.cl = cl
	if err := kafkasrc.EnsureTopics(context.Background(), []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, 1, e.in); err != nil {
		t.Fatal(err)
	}
	e.produce(0, 10, 2)
	cfg := e.config("")
	cfg.Pipelines[0].ShutdownTimeout = time.Second
	r, base := e.startWithAdmin(cfg, "h1")
	waitFor(t, func() bool { return r.completed() == 10 }, "the records to complete")
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK }, "/readyz to be 200")

	emb.Close()
	waitFor(t, func() bool {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "source not connected")
	}, "/readyz to be 503 with the broker gone")
	_, m := get(t, base+"/metrics")
	if v := metricValue(t, m, `weir_source_connected{pipeline="e2e"}`); v != 0 {
		t.Errorf("weir_source_connected = %v with the broker gone", v)
	}

	emb, err = kafkasrc.StartEmbedded(kafkasrc.WithPort(port), kafkasrc.WithTopic(e.in, 1))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK }, "/readyz to be 200 with a broker back")
	_, m = get(t, base+"/metrics")
	if v := metricValue(t, m, `weir_source_connected{pipeline="e2e"}`); v != 1 {
		t.Errorf("weir_source_connected = %v with the broker back", v)
	}
}
