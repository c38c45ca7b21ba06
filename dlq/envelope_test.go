package dlq

import (
	"bytes"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

func TestEnvelopeRoundTripKeepsTheOriginal(t *testing.T) {
	ts := time.Date(2026, 11, 26, 6, 0, 0, 123, time.UTC)
	r := &record.Record{
		Key: []byte{0, 1, 2}, Value: []byte(`{"bad":`),
		Headers:   []record.Header{{Key: "trace", Value: []byte("abc")}, {Key: "weir.error.class", Value: []byte("stale")}},
		Timestamp: ts, Partition: record.KafkaPartition("readings", 3), Position: record.Position{Offset: 42},
	}
	f := Failure{Message: "unexpected end of JSON", Class: "invalid_input", Attempts: 1, FirstFailure: ts, LastFailure: ts.Add(time.Second)}
	m := Envelope(r, f, Origin{Pipeline: "iot", HandlerName: "iot", HandlerVersion: "1.0.0", HostID: "h1"})
	if !bytes.Equal(m.Key, r.Key) || !bytes.Equal(m.Value, r.Value) || !m.Timestamp.Equal(ts) {
		t.Fatalf("key/value/timestamp changed: %+v", m)
	}
	e, err := Parse(m.Key, m.Value, m.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Headers) != 1 || e.Headers[0].Key != "trace" {
		t.Fatalf("original headers = %+v, want only trace (stale weir.* header dropped)", e.Headers)
	}
	if e.Source != r.Partition || e.Position != "42" || e.Origin.Pipeline != "iot" || e.Origin.HostID != "h1" {
		t.Fatalf("origin wrong: %+v", e)
	}
	if e.Failure.Class != "invalid_input" || e.Failure.Attempts != 1 || !e.Failure.LastFailure.Equal(ts.Add(time.Second)) {
		t.Fatalf("failure wrong: %+v", e.Failure)
	}
	if !e.Timestamp.Equal(ts) {
		t.Fatalf("timestamp = %v", e.Timestamp)
	}
}

func TestParseNamesTheMissingHeader(t *testing.T) {
	_, err := Parse(nil, nil, []record.Header{{Key: HeaderPipeline, Value: []byte("p")}})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(HeaderStream)) {
		t.Fatalf("err = %v, want it to name %s", err, HeaderStream)
	}
}
