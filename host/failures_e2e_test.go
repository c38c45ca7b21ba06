package host_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// readTopic reads every record of topic from the start until want arrived
// (then briefly longer, to catch extras) or within passes.
func readTopic(t *testing.T, brokers []string, topic string, want int, within time.Duration) []*kgo.Record {
	t.Helper()
	e := &env{t: t, brokers: brokers, out: topic}
	return e.consume(want, within)
}

// A poison record in the middle of a batch of 500: exactly it lands in the
// DLQ, with its key, value and headers untouched and every weir.* header
// right; the 499 others reach the output in per-key order.
func TestPoisonRecordInABatchOf500(t *testing.T) {
	e := newEnv(t, 1)
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	err := loadtest.Produce(context.Background(), e.cl, e.in, 500, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		if i == 250 {
			v = "250-POISON"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%50)), Value: []byte(v), Timestamp: ts,
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + strconv.Itoa(i))}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(`{ plugin: "builtin:echo", env: { WEIR_FAIL_ON: POISON } }`,
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	cfg.Pipelines[0].Batch.MaxWait = 500 * time.Millisecond // one batch of 500
	before := time.Now()
	r := e.start(cfg, "host-a", nil)
	outs := e.consume(499, time.Minute)
	dead := readTopic(t, e.brokers, dlqTopic, 1, 30*time.Second)
	r.stop(t)
	e.requireCommittedToEnd()

	if len(outs) != 499 {
		t.Fatalf("outputs = %d, want 499", len(outs))
	}
	last := map[string]int{}
	for _, o := range outs {
		id, err := strconv.Atoi(string(o.Value))
		if err != nil || id == 250 {
			t.Fatalf("unexpected output %q", o.Value)
		}
		if prev, ok := last[string(o.Key)]; ok && id <= prev {
			t.Fatalf("key %s: %d after %d", o.Key, id, prev)
		}
		last[string(o.Key)] = id
	}
	if len(dead) != 1 {
		t.Fatalf("dlq holds %d records, want 1", len(dead))
	}
	d := dead[0]
	if string(d.Key) != "k0" || string(d.Value) != "250-POISON" || !d.Timestamp.Equal(ts) {
		t.Fatalf("dlq record key=%q value=%q ts=%v: not the original", d.Key, d.Value, d.Timestamp)
	}
	h := map[string]string{}
	for _, hd := range d.Headers {
		h[hd.Key] = string(hd.Value)
	}
	want := map[string]string{
		"trace": "t-250", dlq.HeaderPipeline: "e2e", dlq.HeaderStream: e.in, dlq.HeaderPartition: "0",
		dlq.HeaderPosition: "250", dlq.HeaderErrorClass: "invalid_input", dlq.HeaderAttempts: "1",
		dlq.HeaderHandlerName: "echo", dlq.HeaderHandlerVersion: "1.0.0", dlq.HeaderHost: "host-a",
		dlq.HeaderTimestamp: ts.UTC().Format(time.RFC3339Nano),
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if !strings.Contains(h[dlq.HeaderErrorMessage], "POISON") {
		t.Errorf("error message %q does not say what was wrong", h[dlq.HeaderErrorMessage])
	}
	for _, k := range []string{dlq.HeaderFirstFailure, dlq.HeaderLastFailure} {
		at, err := time.Parse(time.RFC3339Nano, h[k])
		if err != nil || at.Before(before) || at.After(time.Now()) {
			t.Errorf("header %s = %q: not a failure time of this run", k, h[k])
		}
	}
	entry, err := dlq.Parse(d.Key, d.Value, recordHeaders(d))
	if err != nil {
		t.Fatalf("the envelope does not parse back: %v", err)
	}
	if entry.Source.Stream != e.in || entry.Position != "250" {
		t.Fatalf("parsed envelope = %+v", entry)
	}
}

// A handler whose process exits on one record among 10,000: the plugin is
// restarted, bisection finds the record, it lands in the DLQ as a crash, and
// everything else is handled once.
func TestHandlerCrashingOnOneRecord(t *testing.T) {
	const n = 10_000
	e := newEnv(t, 4)
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		if i == 5000 {
			v = "5000-CRASH"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%100)), Value: []byte(v)}
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(`{ plugin: "builtin:echo-crash", instances: 2, env: { WEIR_CRASH_ON: CRASH } }`,
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	r := e.start(cfg, "h1", nil)
	outs := e.consume(n-1, 2*time.Minute)
	dead := readTopic(t, e.brokers, dlqTopic, 1, 30*time.Second)
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
	for i := 0; i < n; i++ {
		if i == 5000 {
			continue
		}
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Fatalf("record %d output %d times", i, c)
		}
	}
	if len(dead) != 1 || string(dead[0].Value) != "5000-CRASH" {
		t.Fatalf("dlq = %d records (%v), want the crashing one", len(dead), dead)
	}
	if class := header(dead[0], dlq.HeaderErrorClass); class != "crash" {
		t.Fatalf("dlq error class = %q, want crash", class)
	}
	if restarts == 0 {
		t.Fatal("the plugin was never restarted")
	}
}

// A downstream outage: the handler fails every record retryably while a
// file exists. The breaker opens, nothing is dead-lettered, no offset
// moves; once the outage ends every record is handled once.
func TestOutageEndToEnd(t *testing.T) {
	const n = 2000
	e := newEnv(t, 2)
	e.produce(0, n, 100)
	flag := filepath.Join(t.TempDir(), "down")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(fmt.Sprintf(`{ plugin: "builtin:echo", env: { WEIR_RETRY_WHILE: %q } }`, flag),
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n"+
			"    breaker: { min_requests: 4, failure_ratio: 0.5, open_for: 300ms }\n")
	cfg.Pipelines[0].Retry.MaxAttempts = 2
	r := e.start(cfg, "h1", nil)
	time.Sleep(3 * time.Second)
	var opened bool
	for _, s := range r.h.Stats() {
		opened = opened || s.Paused > 0
	}
	if !opened {
		t.Fatal("partitions were not paused during the outage")
	}
	committed, err := e.adm.FetchOffsetsForTopics(context.Background(), e.group, e.in)
	if err != nil {
		t.Fatal(err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.At > 0 {
			t.Errorf("partition %d committed %d during the outage", o.Partition, o.At)
		}
	})
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	outs := e.consume(n, 2*time.Minute)
	r.stop(t)
	verifyOutputs(t, outs, n)
	e.requireCommittedToEnd()
	if c, err := loadtest.Count(context.Background(), e.adm, dlqTopic); err != nil || c != 0 {
		t.Fatalf("dlq holds %d records (err %v) after an outage", c, err)
	}
}

// The DLQ lives on another cluster, which is down: the lane holds at the
// failed record (nothing committed past it) until the cluster comes up,
// then the record lands there and everything completes.
func TestDLQOnAnotherClusterThatIsDown(t *testing.T) {
	e := newEnv(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	err = loadtest.Produce(context.Background(), e.cl, e.in, 200, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		if i == 100 {
			v = "100-POISON"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%10)), Value: []byte(v)}
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(`{ plugin: "builtin:echo", env: { WEIR_FAIL_ON: POISON } }`,
		fmt.Sprintf("    dlq: { kafka: { topic: %s, brokers: [\"127.0.0.1:%d\"] } }\n", dlqTopic, port))
	cfg.Pipelines[0].Ordering = "partition"
	cfg.Pipelines[0].Batch.MaxRecords = 20
	r := e.start(cfg, "h1", nil)
	time.Sleep(3 * time.Second)
	committed, err := e.adm.FetchOffsetsForTopics(context.Background(), e.group, e.in)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := committed.Lookup(e.in, 0); ok && o.At > 100 {
		t.Fatalf("committed %d past the record whose DLQ write is failing (offset 100)", o.At)
	}
	other, err := kafkasrc.StartEmbedded(kafkasrc.WithPort(port))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	outs := e.consume(199, time.Minute)
	dead := readTopic(t, other.Addrs(), dlqTopic, 1, time.Minute)
	r.stop(t)
	e.requireCommittedToEnd()
	if len(outs) != 199 || len(dead) != 1 || string(dead[0].Value) != "100-POISON" {
		t.Fatalf("outputs %d, dlq %v", len(outs), dead)
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func recordHeaders(r *kgo.Record) []record.Header {
	hs := make([]record.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = record.Header{Key: h.Key, Value: h.Value}
	}
	return hs
}
