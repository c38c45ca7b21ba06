package host_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/loadtest"
)

// Hostile records reach a real plugin: a header key that is not UTF-8 (the
// handler protocol carries header keys as protobuf strings, which must be
// UTF-8), timestamps no RFC 3339 year can hold, no key and no value. Each
// either reaches the output or lands in the DLQ with a class saying why and
// an envelope that parses; the others are untouched, and the partition is
// committed to its end.
func TestHostileRecordsEndToEnd(t *testing.T) {
	e := newEnv(t, 1)
	const n = 200
	bad := map[int]string{} // record index -> expected error class
	inProcess := os.Getenv("WEIR_TEST_KAFKA") == ""
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		r := &kgo.Record{Key: []byte("k" + strconv.Itoa(i%7)), Value: []byte(strconv.Itoa(i))}
		switch i {
		case 10, 11:
			r.Headers = []kgo.RecordHeader{{Key: "ok", Value: []byte("x")}, {Key: "bad\xff\xfe", Value: []byte("\xff")}}
			bad[i] = "invalid_input"
		// Apache Kafka refuses such timestamps by default (INVALID_TIMESTAMP,
		// message.timestamp.after.max.ms); the in-process broker takes them.
		case 50:
			if inProcess {
				r.Timestamp = time.UnixMilli(-62198755200000 - 86400000) // before year 0
			}
		case 51:
			if inProcess {
				r.Timestamp = time.UnixMilli(1 << 52) // year 142,000-odd
			}
		case 52:
			r.Headers = []kgo.RecordHeader{{Key: "", Value: nil}, {Key: "v", Value: []byte{0xff}}}
		case 99:
			r.Key = nil
		}
		return r
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(echoHandler, "    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	r := e.start(cfg, "host-a", nil)
	outs := e.consume(n-len(bad), time.Minute)
	dead := readTopic(t, e.brokers, dlqTopic, len(bad), 30*time.Second)
	r.stop(t)
	e.requireCommittedToEnd()

	if len(outs) != n-len(bad) {
		t.Fatalf("outputs = %d, want %d", len(outs), n-len(bad))
	}
	seen := map[int]bool{}
	for _, o := range outs {
		i, _ := strconv.Atoi(string(o.Value))
		if _, isBad := bad[i]; isBad || seen[i] {
			t.Fatalf("unexpected output %q", o.Value)
		}
		seen[i] = true
	}
	if len(dead) != len(bad) {
		t.Fatalf("dlq holds %d records, want %d", len(dead), len(bad))
	}
	for _, d := range dead {
		en, err := dlq.Parse(d.Key, d.Value, recordHeaders(d))
		if err != nil {
			t.Fatalf("dead letter %q does not parse: %v", d.Value, err)
		}
		i, _ := strconv.Atoi(string(d.Value))
		if want, ok := bad[i]; !ok || en.Failure.Class != want || en.Failure.Attempts != 1 {
			t.Fatalf("record %d dead-lettered with class %q after %d attempts (%s); want %q after 1", i, en.Failure.Class, en.Failure.Attempts, en.Failure.Message, bad[i])
		}
		if len(en.Headers) != 2 || en.Headers[1].Key != "bad\xff\xfe" {
			t.Fatalf("record %d: original headers not kept: %q", i, en.Headers)
		}
		t.Logf("record %d: %s: %s", i, en.Failure.Class, en.Failure.Message)
	}
}

// A record whose reply is over handler.max_reply_bytes fails its batch as a
// bad reply, not retried as is: the batch is bisected until that record is
// alone, and it is dead-lettered (bad_reply, naming the limit) while the
// records around it are written.
func TestOversizedReplyIsBisectedToItsRecord(t *testing.T) {
	e := newEnv(t, 1)
	const n = 60
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		v := []byte(strconv.Itoa(i) + ":")
		size := 500
		if i == 33 {
			size = 100 << 10
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%5)), Value: append(v, make([]byte, size)...)}
	})
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic := e.out + "-dlq"
	cfg := e.configWith(`{ plugin: "builtin:echo", instances: 1, max_reply_bytes: 64KiB, max_output_bytes: 64KiB, env: { WEIR_ECHO_SINK: out } }`,
		"    dlq: { kafka: { topic: "+dlqTopic+" } }\n")
	cfg.Pipelines[0].Batch.MaxWait = 500 * time.Millisecond // one batch
	r := e.start(cfg, "host-a", nil)
	outs := e.consume(n-1, time.Minute)
	dead := readTopic(t, e.brokers, dlqTopic, 1, 30*time.Second)
	r.stop(t)
	e.requireCommittedToEnd()
	if len(outs) != n-1 || len(dead) != 1 {
		t.Fatalf("%d outputs and %d dead letters, want %d and 1", len(outs), len(dead), n-1)
	}
	en, err := dlq.Parse(dead[0].Key, dead[0].Value, recordHeaders(dead[0]))
	if err != nil {
		t.Fatal(err)
	}
	if en.Position != "33" || en.Failure.Class != "bad_reply" || !strings.Contains(en.Failure.Message, "max_reply_bytes") {
		t.Fatalf("dead letter: position %s, class %s: %s", en.Position, en.Failure.Class, en.Failure.Message)
	}
}
