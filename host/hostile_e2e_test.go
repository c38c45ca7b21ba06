package host_test

import (
	"context"
	"strconv"
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
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		r := &kgo.Record{Key: []byte("k" + strconv.Itoa(i%7)), Value: []byte(strconv.Itoa(i))}
		switch i {
		case 10, 11:
			r.Headers = []kgo.RecordHeader{{Key: "ok", Value: []byte("x")}, {Key: "bad\xff\xfe", Value: []byte("\xff")}}
			bad[i] = "invalid_input"
		case 50:
			r.Timestamp = time.UnixMilli(-62198755200000 - 86400000) // before year 0
		case 51:
			r.Timestamp = time.UnixMilli(1 << 52) // year 142,000-odd
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
