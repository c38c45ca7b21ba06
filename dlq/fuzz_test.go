package dlq

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

// fuzzHeaders decodes a fuzz input into headers: NUL separates a key from
// its value and one header from the next ("k\x00v\x00k2\x00v2").
func fuzzHeaders(b []byte) []record.Header {
	parts := bytes.Split(b, []byte{0})
	var hs []record.Header
	for i := 0; i+1 < len(parts); i += 2 {
		hs = append(hs, record.Header{Key: string(parts[i]), Value: parts[i+1]})
	}
	return hs
}

func encodeHeaders(hs []record.Header) []byte {
	var b []byte
	for _, h := range hs {
		b = append(b, h.Key...)
		b = append(b, 0)
		b = append(b, h.Value...)
		b = append(b, 0)
	}
	return b
}

// FuzzParse feeds arbitrary headers to the envelope decoder (a DLQ topic is
// writable by anyone who can produce to it). Parse gives an Entry or an
// error naming the envelope; it never panics. An Entry it accepts survives
// being dead-lettered again: enveloping the record it describes and parsing
// that gives the same origin, failure, replay count and original headers.
func FuzzParse(f *testing.F) {
	ts := time.Date(2026, 11, 26, 6, 0, 0, 123, time.UTC)
	r := &record.Record{Key: []byte("k"), Value: []byte("v"), Timestamp: ts,
		Headers:   []record.Header{{Key: "trace", Value: []byte("abc")}, {Key: HeaderReplayCount, Value: []byte("2")}},
		Partition: record.KafkaPartition("in", 3), Position: record.Position{Offset: 42}}
	m := Envelope(r, Failure{Message: "bad", Class: "invalid_input", Attempts: 3, FirstFailure: ts, LastFailure: ts},
		Origin{Pipeline: "p", HandlerName: "h", HandlerVersion: "1", HostID: "host"})
	f.Add([]byte("k"), []byte("v"), encodeHeaders(m.Headers))
	f.Add([]byte(nil), []byte(nil), []byte(nil))
	f.Add([]byte{}, []byte("x"), encodeHeaders(append(slices.Clone(m.Headers), record.Header{Key: HeaderReplayCount, Value: []byte("0")})))
	f.Add([]byte{0xff}, []byte{}, []byte("weir.pipeline\x00p\x00weir.source.stream\x00s\x00weir.source.partition\x000\x00weir.source.position\x00-1\x00weir.attempts\x00-5\x00"))
	f.Add([]byte{}, []byte{}, []byte("weir.pipeline\x00p\x00weir.source.stream\x00s\x00weir.source.partition\x000\x00weir.source.position\x001\x00weir.replay-count\x009223372036854775807\x00weir.source.timestamp\x000000-01-01T00:00:00+01:00\x00"))
	f.Fuzz(func(t *testing.T, key, value, hdrs []byte) {
		e, err := Parse(key, value, fuzzHeaders(hdrs))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dlq envelope: ") {
				t.Fatalf("error does not say what it parsed: %v", err)
			}
			return
		}
		if e.ReplayCount < 0 || e.Failure.Attempts < 0 {
			t.Fatalf("negative count accepted: replay %d, attempts %d", e.ReplayCount, e.Failure.Attempts)
		}
		for _, h := range e.Headers {
			if strings.HasPrefix(h.Key, HeaderPrefix) && h.Key != HeaderReplayCount {
				t.Fatalf("weir header %s left among the original headers", h.Key)
			}
		}
		again := Envelope(&record.Record{Key: e.Key, Value: e.Value, Headers: e.Headers, Timestamp: e.Timestamp,
			Partition: e.Source, Position: record.Position{Seq: e.Position}}, e.Failure, e.Origin)
		e2, err := Parse(again.Key, again.Value, again.Headers)
		if err != nil {
			t.Fatalf("an accepted envelope, dead-lettered again, does not parse: %v", err)
		}
		if e2.Source != e.Source || e2.Position != e.Position || e2.Origin != e.Origin || e2.ReplayCount != e.ReplayCount ||
			e2.Failure.Message != e.Failure.Message || e2.Failure.Class != e.Failure.Class || e2.Failure.Attempts != e.Failure.Attempts ||
			!e2.Timestamp.Equal(e.Timestamp) || !e2.Failure.FirstFailure.Equal(e.Failure.FirstFailure) || !e2.Failure.LastFailure.Equal(e.Failure.LastFailure) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", e, e2)
		}
		if !slices.EqualFunc(e.Headers, e2.Headers, func(a, b record.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Fatalf("round trip changed the original headers:\n%+v\n%+v", e.Headers, e2.Headers)
		}
	})
}

// Regressions the fuzzer found. A producer may set any Kafka timestamp; a
// record stamped before year 0 or after 9999 used to get an envelope whose
// weir.source.timestamp no longer parsed, so `weir dlq replay` skipped it
// as "not a weir envelope" and committed past it: lost. A second
// weir.replay-count header, or a negative one, reset the count that stops a
// replay loop.
func TestHostileEnvelopes(t *testing.T) {
	for _, ts := range []time.Time{time.UnixMilli(-1 << 50), time.UnixMilli(1 << 50), time.Date(0, 1, 1, 0, 0, 0, 5, time.FixedZone("x", 3600))} {
		r := &record.Record{Timestamp: ts, Partition: record.KafkaPartition("in", 0), Position: record.Position{Offset: 1}}
		m := Envelope(r, Failure{Message: "m", FirstFailure: ts}, Origin{Pipeline: "p"})
		e, err := Parse(m.Key, m.Value, m.Headers)
		if err != nil {
			t.Fatalf("timestamp %v: %v", ts, err)
		}
		if !e.Timestamp.Equal(ts) || !e.Failure.FirstFailure.Equal(ts) {
			t.Fatalf("timestamp %v read back as %v", ts, e.Timestamp)
		}
	}
	base := []record.Header{{Key: HeaderPipeline, Value: []byte("p")}, {Key: HeaderStream, Value: []byte("in")},
		{Key: HeaderPartition, Value: []byte("0")}, {Key: HeaderPosition, Value: []byte("1")}}
	for name, tc := range map[string]struct {
		extra []record.Header
		want  string
	}{
		"second replay count":   {[]record.Header{{Key: HeaderReplayCount, Value: []byte("9")}, {Key: HeaderReplayCount, Value: []byte("0")}}, "weir.replay-count appears more than once"},
		"negative replay count": {[]record.Header{{Key: HeaderReplayCount, Value: []byte("-100")}}, `weir.replay-count: "-100" is not a non-negative integer`},
		"signed attempts":       {[]record.Header{{Key: HeaderAttempts, Value: []byte("+3")}}, `weir.attempts: "+3" is not a non-negative integer`},
		"huge replay count":     {[]record.Header{{Key: HeaderReplayCount, Value: []byte("9999999999")}}, "below 2^31"},
	} {
		_, err := Parse(nil, nil, append(slices.Clone(base), tc.extra...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := Parse(nil, nil, append(slices.Clone(base[:3]), record.Header{Key: HeaderPosition})); err == nil || !strings.Contains(err.Error(), "weir.source.position is empty") {
		t.Errorf("empty position: err = %v", err)
	}
}

// FuzzDecodeKinesis feeds arbitrary data to the Kinesis envelope decoder
// (a DLQ stream is writable by anyone who can put records to it): it
// never panics, an error names the envelope, and what it accepts encodes
// back to data that decodes to the same message.
func FuzzDecodeKinesis(f *testing.F) {
	ts := time.Date(2026, 11, 26, 6, 0, 0, 123, time.UTC)
	r := &record.Record{Key: []byte("k"), Value: []byte("v"), Timestamp: ts,
		Headers:   []record.Header{{Key: "trace", Value: []byte("abc")}, {Key: "null"}},
		Partition: record.Partition{Stream: "in", ID: "shardId-000000000000"}, Position: record.Position{Seq: "4959"}}
	m := Envelope(r, Failure{Message: "bad", Class: "invalid_input", Attempts: 3, FirstFailure: ts, LastFailure: ts},
		Origin{Pipeline: "p", HandlerName: "h", HandlerVersion: "1", HostID: "host"})
	f.Add(EncodeKinesis(m))
	f.Add([]byte("WDLQ\x01"))
	f.Add([]byte("WDLQ\x01\x1a\x02\x0a\x00"))
	f.Add([]byte(`{"weir":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeKinesis(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dlq envelope: ") {
				t.Fatalf("error does not say what it decoded: %v", err)
			}
			return
		}
		again, err := DecodeKinesis(EncodeKinesis(m))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !bytes.Equal(again.Key, m.Key) || (again.Key == nil) != (m.Key == nil) || !bytes.Equal(again.Value, m.Value) ||
			(again.Value == nil) != (m.Value == nil) || len(again.Headers) != len(m.Headers) || unixNano(again.Timestamp) != unixNano(m.Timestamp) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, again)
		}
		for i, h := range m.Headers {
			if again.Headers[i].Key != h.Key || !bytes.Equal(again.Headers[i].Value, h.Value) || (again.Headers[i].Value == nil) != (h.Value == nil) {
				t.Fatalf("header %d changed: %+v -> %+v", i, h, again.Headers[i])
			}
		}
		if _, err := ParseKinesis(data); err != nil && !strings.HasPrefix(err.Error(), "dlq envelope: ") {
			t.Fatalf("parse error does not say what it parsed: %v", err)
		}
	})
}
