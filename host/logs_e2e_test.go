package host_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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
)

// jsonLines decodes every JSON log line of out.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// Every log line about a batch, at debug level, through a crash, a bisect,
// retries and dead-lettering, carries the pipeline, the stream (the Kafka
// topic), the partition, the batch id and the batch's first and last
// offsets; the plugin's own stderr lines carry the plugin's name and
// instance (a line written just before os.Exit can be lost: go-plugin
// forwards a Go plugin's os.Stderr over its connection); and a secret handed to the handler through its environment
// appears in no line.
func TestBatchLogLinesCarryTheirContext(t *testing.T) {
	const n = 200
	e := newEnv(t, 2)
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		switch i {
		case 50:
			v += "-CRASH"
		case 120, 121:
			v += "-MALFORMED"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%10)), Value: []byte(v)}
	})
	if err != nil {
		t.Fatal(err)
	}
	secret := "tok-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s] }
admin: { addr: off }
pipelines:
  - name: e2e
    source: { kafka: { topics: [%s], group: %s } }
    batch: { max_records: 50, max_wait: 5ms }
    handler: { plugin: "builtin:echo-crash", instances: 2, env: { WEIR_ECHO_SINK: out, WEIR_CRASH_ON: CRASH, WEIR_FAIL_ON: MALFORMED, WEIR_STDERR: "1", API_TOKEN: "${API_TOKEN}" } }
    retry: { max_attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
    sinks: { out: { kafka: { topic: %s } } }
    dlq: { kafka: { topic: %s-dlq } }
    shutdown_timeout: 10s
`, strings.Join(e.brokers, ", "), e.in, e.group, e.out, e.out)
	cfg, err := config.Parse("logs.yaml", []byte(y), config.WithLookupEnv(func(k string) (string, bool) {
		if k == "API_TOKEN" {
			return secret, true
		}
		return "", false
	}))
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	runLogged(t, cfg, &logs, n)

	out := logs.String()
	if strings.Contains(out, secret) {
		t.Error("a log line holds the handler's API_TOKEN")
	}
	batchLines, stderrLines := 0, 0
	msgs := map[string]bool{}
	for _, l := range jsonLines(t, out) {
		msg, _ := l["message"].(string)
		if _, ok := l["batch"]; ok {
			batchLines++
			msgs[msg] = true
			for _, f := range []string{"pipeline", "stream", "partition", "first", "last"} {
				if s, ok := l[f].(string); !ok || s == "" {
					t.Errorf("batch log line without %s: %v", f, l)
				}
			}
			if l["stream"] != e.in {
				t.Errorf("batch log line with stream %v, want the topic %s", l["stream"], e.in)
			}
		}
		if strings.HasPrefix(msg, "echo: handling ") {
			stderrLines++
			if l["plugin"] != "e2e" || l["instance"] == nil || l["pipeline"] != "e2e" {
				t.Errorf("plugin stderr line without plugin=e2e and an instance: %v", l)
			}
		}
	}
	for _, want := range []string{"batch failed; retrying", "batch keeps failing; bisecting to isolate the poison records",
		"dead-lettered (first of them shown; debug level lists each)", "record dead-lettered"} {
		if !msgs[want] {
			t.Errorf("no batch log line %q; batch lines: %v", want, msgs)
		}
	}
	if batchLines == 0 || stderrLines == 0 {
		t.Errorf("%d batch lines, %d plugin stderr lines; want some of each", batchLines, stderrLines)
	}
}

// A Redis that refuses weir's password (a wrong one, or a rotated one)
// fails the start with an error that names what failed, and the password
// is in neither the error nor any log line.
func TestSecretsStayOutOfLogsWhenRedisRefuses(t *testing.T) {
	srv := testenv.StartRedis(t)
	if reply := testenv.RedisCommand(t, srv.Addr(), "CONFIG", "SET", "requirepass", "the-right-one"); reply != "+OK" {
		t.Fatalf("CONFIG SET requirepass: %s", reply)
	}
	secret := "wr0ng-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	e := newEnv(t, 1)
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s] }
redis: { addr: %q, username: default, password: "${REDIS_PASSWORD}" }
admin: { addr: off }
pipelines:
  - name: e2e
    source: { kafka: { topics: [%s], group: %s } }
    handler: { plugin: "builtin:echo", env: { WEIR_ECHO_SINK: out } }
    sinks: { out: { kafka: { topic: %s } } }
`, strings.Join(e.brokers, ", "), srv.Addr(), e.in, e.group, e.out)
	cfg, err := config.Parse("secret.yaml", []byte(y), config.WithLookupEnv(func(k string) (string, bool) {
		if k == "REDIS_PASSWORD" {
			return secret, true
		}
		return "", false
	}))
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	h := host.New(cfg, host.Options{Logger: zerolog.New(&logs).Level(zerolog.DebugLevel), HostID: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = h.Run(ctx)
	if err == nil {
		t.Fatal("the host started with a password redis refuses")
	}
	if !strings.Contains(err.Error(), "idempotency store") {
		t.Errorf("error %q does not say the idempotency store failed", err)
	}
	for what, text := range map[string]string{"the error": err.Error(), "the logs": logs.String()} {
		if strings.Contains(text, secret) {
			t.Errorf("%s contain the redis password:\n%s", what, text)
		}
	}
}
