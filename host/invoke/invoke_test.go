package invoke_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/host/invoke"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
)

func TestMain(m *testing.M) {
	plugins.ServeBuiltinIfRequested(builtin.Handlers())
	os.Exit(m.Run())
}

func TestReadReportsEveryBadLineWithItsNumber(t *testing.T) {
	in := strings.Join([]string{
		`{"key":"a","value":"x"}`,
		``,
		`# a comment`,
		`{"key":"a","value":`,
		`{"value":"x","value_b64":"eA=="}`,
		`{"value_b64":"%%%"}`,
		`{"value":"x","colour":"blue"}`,
		`{"partition":"one"}`,
		`{"offset":0}`,
		`[1,2]`,
		`{"value":"x"} {"value":"y"}`,
	}, "\n")
	_, err := invoke.Read(strings.NewReader(in), "in.jsonl", "t")
	if err == nil {
		t.Fatal("Read accepted bad lines")
	}
	want := []string{
		"in.jsonl:4: truncated JSON object",
		"in.jsonl:5: value: both value and value_b64 are set",
		"in.jsonl:6: value_b64: not standard base64",
		`in.jsonl:7: json: unknown field "colour"`,
		"in.jsonl:8: field partition: string is not a valid int32",
		"in.jsonl:9: offset: 0 is not after offset 0 of partition 0 (line 1)",
		"in.jsonl:10: want a JSON object",
		"in.jsonl:11: more than one JSON value on the line",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	var le *invoke.LineError
	if !errors.As(err, &le) || le.Line != 4 {
		t.Errorf("first error is not a *LineError of line 4: %#v", le)
	}
}

func TestReadDefaultsAndDecoding(t *testing.T) {
	in := `{"key":"k","value_b64":"AP8=","headers":{"b":"2","a":"1"},"partition":3,"offset":10,"timestamp":"2026-11-26T06:00:00Z"}
{"value":"v2","partition":3}
{"value":"v3"}
`
	recs, err := invoke.Read(strings.NewReader(in), "in", "topic")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("got %d records", len(recs))
	}
	r := recs[0]
	if string(r.Key) != "k" || !bytes.Equal(r.Value, []byte{0, 0xff}) || r.Partition.String() != "topic/3" || r.Position.Offset != 10 {
		t.Errorf("record 0 = %+v", r.Record)
	}
	if len(r.Headers) != 2 || r.Headers[0].Key != "a" || string(r.Headers[1].Value) != "2" {
		t.Errorf("headers = %+v, want a=1, b=2 in key order", r.Headers)
	}
	if !r.Timestamp.Equal(time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("timestamp = %v", r.Timestamp)
	}
	if recs[1].Position.Offset != 11 || recs[2].Position.Offset != 0 || recs[2].Partition.ID != "0" || recs[1].Line != 2 {
		t.Errorf("default offsets: got %d (p3) and %d (p0)", recs[1].Position.Offset, recs[2].Position.Offset)
	}
	if recs[1].Key != nil {
		t.Errorf("a record without key has key %q", recs[1].Key)
	}
}

func TestReadRefusesEmptyInput(t *testing.T) {
	if _, err := invoke.Read(strings.NewReader("\n# nothing\n"), "in", "t"); err == nil || !strings.Contains(err.Error(), "no records") {
		t.Fatalf("err = %v, want no records", err)
	}
}

func startPool(t *testing.T, name string, env map[string]string) *plugins.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := plugins.NewPool(ctx, plugins.PoolConfig{Builtin: name, Instances: 1, Env: env, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// Good and malformed IoT readings: every good one has its enriched output,
// every malformed one an invalid_input failure, and batches are cut as a
// pipeline's would be.
func TestRunIoTGoodAndMalformed(t *testing.T) {
	var sample bytes.Buffer
	if err := invoke.WriteSample(&sample, 40); err != nil {
		t.Fatal(err)
	}
	inputs, err := invoke.Read(&sample, "sample", "readings")
	if err != nil {
		t.Fatal(err)
	}
	pool := startPool(t, "iot", nil)
	rep, err := invoke.Run(context.Background(), pool, pool.Info(), inputs, invoke.Options{MaxRecords: 7, Sinks: []string{iot.Sink}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Handler.Name != iot.Name {
		t.Errorf("handler = %+v", rep.Handler)
	}
	parts := map[int32]int{}
	for i, r := range rep.Records {
		parts[r.Partition]++
		malformed := iot.IsMalformed(i, invoke.SampleMalformedEvery)
		switch {
		case malformed && (r.OK || r.Failure == nil || r.Failure.Class != "invalid_input" || r.Failure.Retryable):
			t.Errorf("line %d is malformed, got %+v", r.Line, r)
		case !malformed && (!r.OK || len(r.Outputs) != 1 || r.Outputs[0].Sink != iot.Sink):
			t.Errorf("line %d is good, got %+v", r.Line, r)
		case !malformed:
			var e iot.Enriched
			if err := json.Unmarshal([]byte(*r.Outputs[0].Value), &e); err != nil || e.DeviceID != r.Key {
				t.Errorf("line %d: output %q is not the enriched reading of %s: %v", r.Line, *r.Outputs[0].Value, r.Key, err)
			}
		}
	}
	wantBatches := 0
	for _, n := range parts {
		wantBatches += (n + 6) / 7
	}
	s := rep.Summary
	if s.Records != 40 || s.Failed != 4 || s.OK != 36 || s.Outputs != 36 || s.Batches != wantBatches {
		t.Errorf("summary = %+v, want 40 records, 4 failed, %d batches", s, wantBatches)
	}
	var js bytes.Buffer
	if err := invoke.WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back invoke.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Summary.Failed != 4 {
		t.Fatalf("JSON report does not round-trip: %v", err)
	}
	var table bytes.Buffer
	if err := invoke.WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "FAILED") || !strings.Contains(table.String(), "40 records in") {
		t.Errorf("table lacks failures or the summary:\n%s", table.String())
	}
}

// A record that crashes the handler is isolated by bisection: only it is
// reported failed (class crash), its neighbours succeed.
func TestRunBisectsACrashToItsRecord(t *testing.T) {
	var in strings.Builder
	for i := range 16 {
		v := "ok"
		if i == 11 {
			v = "boom"
		}
		in.WriteString(`{"key":"k","value":"` + v + `"}` + "\n")
	}
	inputs, err := invoke.Read(strings.NewReader(in.String()), "in", "t")
	if err != nil {
		t.Fatal(err)
	}
	pool := startPool(t, "echo-crash", map[string]string{builtin.EnvCrashOn: "boom"})
	rep, err := invoke.Run(context.Background(), pool, pool.Info(), inputs, invoke.Options{Bisect: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rep.Records {
		if i == 11 {
			if r.OK || r.Failure == nil || r.Failure.Class != "crash" || !r.Failure.Batch {
				t.Errorf("the crashing record: %+v", r)
			}
			continue
		}
		if !r.OK || len(r.Outputs) != 1 {
			t.Errorf("record %d: %+v, want ok", i, r)
		}
	}
	if rep.Summary.Failed != 1 || rep.Summary.Batches < 5 {
		t.Errorf("summary = %+v, want 1 failed after at least 5 calls (1 + bisection)", rep.Summary)
	}
}

// An output to a sink the pipeline does not declare fails its record, as
// in a running pipeline.
func TestRunUndeclaredSinkFailsTheRecord(t *testing.T) {
	inputs, err := invoke.Read(strings.NewReader(`{"value":"a"}`), "in", "t")
	if err != nil {
		t.Fatal(err)
	}
	pool := startPool(t, "echo", nil) // writes to "out"
	rep, err := invoke.Run(context.Background(), pool, pool.Info(), inputs, invoke.Options{Sinks: []string{"enriched"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Records[0]; r.OK || r.Failure == nil || r.Failure.Class != "bad_reply" || !strings.Contains(r.Failure.Message, `"out"`) {
		t.Fatalf("record = %+v, want a bad_reply failure naming sink out", r)
	}
}
