package host

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

const (
	tpIn  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tpOwn = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
)

func TestTraceID(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string
	}{
		{tpIn, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""}, // zero trace id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""}, // zero parent id
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""}, // upper case
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""}, // unknown version
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", ""},    // short
		{"", ""},
	} {
		got, ok := traceID([]byte(tc.v))
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("traceID(%q) = %q %v, want %q", tc.v, got, ok, tc.want)
		}
	}
}

// Trace context passes through a pipeline unchanged: an output without a
// traceparent of its own gets the record's (with its tracestate), an output
// with its own keeps it, a record without one or with an invalid one adds
// nothing, the DLQ envelope keeps the record's, and the log lines about a
// failing batch name its trace ids.
func TestTraceContextPassesThrough(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.Retry.MaxAttempts = 2
	var logs testenv.SyncBuffer
	handler := handlerFunc(func(_ context.Context, b *plugins.Batch) (*plugins.Result, error) {
		res := &plugins.Result{}
		for i, r := range b.Records {
			switch string(r.Value) {
			case "poison":
				res.Failures = append(res.Failures, plugins.Failure{Index: i, Class: plugins.ClassTransient, Retryable: true, Message: "keeps failing"})
				continue
			case "own":
				res.Outputs = append(res.Outputs, plugins.Output{Index: i, Sink: "out", Message: record.Message{Value: r.Value,
					Headers: []record.Header{{Key: "traceparent", Value: []byte(tpOwn)}}}})
				continue
			}
			res.Outputs = append(res.Outputs, plugins.Output{Index: i, Sink: "out",
				Message: record.Message{Value: r.Value, Headers: []record.Header{{Key: "x", Value: []byte("1")}}}})
		}
		return res, nil
	})
	hs := newHarness(t, cfg, handler, true)
	hs.pl.log = zerolog.New(&logs).With().Str("pipeline", cfg.Name).Logger()
	p := record.KafkaPartition("t", 0)
	hs.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 1}})
	traced := []record.Header{{Key: "traceparent", Value: []byte(tpIn)}, {Key: "tracestate", Value: []byte("congo=t61rcWkgMzE")}}
	recs := []record.Record{
		{Value: []byte("plain"), Headers: traced},
		{Value: []byte("own"), Headers: traced},
		{Value: []byte("untraced")},
		{Value: []byte("invalid"), Headers: []record.Header{{Key: "traceparent", Value: []byte("garbage")}}},
		{Value: []byte("poison"), Headers: traced},
	}
	for i := range recs {
		recs[i].Partition, recs[i].Position = p, record.Position{Offset: int64(i)}
	}
	// the other calls succeed, so the poison record is dead-lettered, not
	// held as an outage
	hs.pl.successes.Add(1)
	hs.pl.Deliver(p, recs)
	hs.waitCompleted(int64(len(recs)))

	got := map[string][]record.Header{}
	for _, m := range hs.out.all() {
		got[string(m.Value)] = m.Headers
	}
	want := map[string]string{"plain": tpIn, "own": tpOwn, "untraced": "", "invalid": ""}
	for v, tp := range want {
		h, ok := header(got[v], "traceparent")
		if string(h) != tp || ok != (tp != "") {
			t.Errorf("output %q: traceparent %q (present %v), want %q", v, h, ok, tp)
		}
		if x, _ := header(got[v], "x"); v != "own" && string(x) != "1" {
			t.Errorf("output %q lost the handler's own header: %v", v, got[v])
		}
	}
	if ts, _ := header(got["plain"], "tracestate"); string(ts) != "congo=t61rcWkgMzE" {
		t.Errorf("output plain: tracestate %q", ts)
	}
	dead := hs.dead.all()
	if len(dead) != 1 {
		t.Fatalf("%d records dead-lettered, want 1", len(dead))
	}
	if tp, _ := header(dead[0].Headers, "traceparent"); string(tp) != tpIn {
		t.Errorf("DLQ envelope traceparent %q, want %q", tp, tpIn)
	}
	if !strings.Contains(logs.String(), `"trace_ids":["4bf92f3577b34da6a3ce929d0e0e4736"]`) {
		t.Errorf("no log line about the failing batch names its trace id:\n%s", logs.String())
	}
}
