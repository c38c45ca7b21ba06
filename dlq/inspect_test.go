package dlq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

func newInspector(t *testing.T, e *kafkasrc.Embedded, cfg InspectConfig) *Inspector {
	t.Helper()
	cfg.Brokers = e.Addrs()
	cfg.Logger = testLogger(t)
	in, err := NewInspector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// twoPipelines is a DLQ of 6 envelopes from 2 pipelines, 2 error classes
// and 3 source partitions.
var twoPipelines = []failed{
	{pipeline: "iot", class: "invalid_input", stream: "readings", partition: 0, offset: 10, key: "d-1", value: "v1", minute: 3,
		headers: []record.Header{{Key: "trace", Value: []byte("t-1")}}},
	{pipeline: "iot", class: "invalid_input", stream: "readings", partition: 1, offset: 11, key: "d-2", value: "v2", minute: 1},
	{pipeline: "iot", class: "timeout", stream: "readings", partition: 1, offset: 12, key: "d-3", value: "v3", minute: 5},
	{pipeline: "iot", class: "timeout", stream: "readings", partition: 0, offset: 13, key: "d-4", value: "v4", minute: 2},
	{pipeline: "iot", class: "invalid_input", stream: "readings", partition: 0, offset: 14, key: "d-5", value: "v5", minute: 4},
	{pipeline: "billing", class: "invalid_input", stream: "invoices", partition: 2, offset: 7, key: "", value: "v6", minute: 0},
}

func TestInspectCountsByPipelineSourceAndClass(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 2))
	// Envelopes on partition 0, in order (so samples are deterministic),
	// and a record that is not an envelope at dlq/1@0.
	produceFailed(t, e, "dlq", 1, twoPipelines...)
	cl := newClient(t, e, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce(t, cl, &kgo.Record{Topic: "dlq", Partition: 1, Key: []byte("junk"), Value: []byte("not an envelope")})

	rep, err := newInspector(t, e, InspectConfig{Topic: "dlq", Samples: 4}).Inspect(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 7 || rep.Envelopes != 6 || rep.Invalid != 1 {
		t.Fatalf("records/envelopes/invalid = %d/%d/%d, want 7/6/1", rep.Records, rep.Envelopes, rep.Invalid)
	}
	if len(rep.InvalidRecords) != 1 || rep.InvalidRecords[0].Partition != 1 || rep.InvalidRecords[0].Offset != 0 ||
		!strings.Contains(rep.InvalidRecords[0].Reason, HeaderPipeline) {
		t.Fatalf("invalid records = %+v, want dlq/1@0 with the missing header named", rep.InvalidRecords)
	}
	wantCounts := func(name string, got, want map[string]int64) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
			return
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s = %v, want %v", name, got, want)
				return
			}
		}
	}
	wantCounts("by pipeline", rep.ByPipeline, map[string]int64{"iot": 5, "billing": 1})
	wantCounts("by class", rep.ByErrorClass, map[string]int64{"invalid_input": 4, "timeout": 2})
	wantCounts("by source", rep.BySource, map[string]int64{"readings/0": 3, "readings/1": 2, "invoices/2": 1})
	wantCounts("by replay count", rep.ByReplayCount, map[string]int64{"0": 6})
	if rep.FirstFailure == nil || !rep.FirstFailure.Equal(t0.Add(-time.Second)) ||
		rep.LastFailure == nil || !rep.LastFailure.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("failures from %v to %v, want %v to %v", rep.FirstFailure, rep.LastFailure, t0.Add(-time.Second), t0.Add(5*time.Minute))
	}

	// Samples: the first of each pipeline and class, then the latest.
	if len(rep.Samples) != 4 {
		t.Fatalf("samples = %d, want 4: %+v", len(rep.Samples), rep.Samples)
	}
	kinds := map[string]bool{}
	for _, s := range rep.Samples[:3] {
		var p, c string
		for _, h := range s.Headers {
			switch h.Key {
			case HeaderPipeline:
				p = h.Value
			case HeaderErrorClass:
				c = h.Value
			}
		}
		kinds[p+"/"+c] = true
	}
	if !kinds["iot/invalid_input"] || !kinds["iot/timeout"] || !kinds["billing/invalid_input"] {
		t.Errorf("the first samples do not show each pipeline and class: %v", kinds)
	}
	// d-1, d-3 and the billing record are the first of their kind; d-5
	// is the latest of the others.
	var got []string
	for _, x := range rep.Samples {
		got = append(got, fmt.Sprint(x.Offset))
	}
	if strings.Join(got, ",") != "0,2,5,4" {
		t.Errorf("sample offsets = %v, want 0,2,5,4", got)
	}
	s := rep.Samples[0]
	if s.Key == nil || *s.Key != "d-1" || s.Value != "v1" || s.ValueBytes != 2 || len(s.Headers) != 14 || s.Headers[0].Key != "trace" {
		t.Errorf("first sample = %+v, want d-1 with its trace header and the 13 weir.* headers", s)
	}

	// The JSON form is one object with the same numbers.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"records", "envelopes", "invalid", "invalid_records", "by_pipeline", "by_source", "by_error_class",
		"first_failure", "last_failure", "samples", "partitions"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON report lacks %q: %s", k, b)
		}
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"7 records (6 envelopes, 1 not envelopes)", "PIPELINE", "iot ", "ERROR CLASS", "invalid_input",
		"readings/0", "NOT ENVELOPES", "dlq/1", "key ", "weir.error.class"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestInspectEmptyAndMissingTopics(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("empty", 3), kafkasrc.WithoutAutoCreateTopics())
	rep, err := newInspector(t, e, InspectConfig{Topic: "empty"}).Inspect(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 0 || len(rep.Samples) != 0 || len(rep.Partitions) != 3 {
		t.Fatalf("empty topic: %+v", rep)
	}
	_, err = newInspector(t, e, InspectConfig{Topic: "nope"}).Inspect(testCtx(t))
	if !errors.Is(err, kerr.UnknownTopicOrPartition) || !strings.Contains(err.Error(), "nope does not exist") {
		t.Fatalf("missing topic: err = %v", err)
	}
}

// The end of a partition written by a transactional producer is a commit or
// abort marker, never delivered as a record: reading must still stop there,
// and leave out aborted records.
func TestInspectStopsAtTheEndOfATransactionalTopic(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1))
	cl := newClient(t, e, kgo.TransactionalID("dlq-writer"))
	ctx := testCtx(t)
	for i, commit := range []bool{true, true, false} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produce(t, cl, twoPipelines[i].envelope("dlq"))
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := newInspector(t, e, InspectConfig{Topic: "dlq"}).Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 2 || rep.Envelopes != 2 {
		t.Fatalf("records = %d, envelopes = %d; want the 2 committed ones", rep.Records, rep.Envelopes)
	}
}

func TestNewInspectorNamesTheBadOption(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  InspectConfig
		want string
	}{
		{"no brokers", InspectConfig{Topic: "t"}, "Brokers"},
		{"empty broker", InspectConfig{Brokers: []string{""}, Topic: "t"}, "Brokers[0]"},
		{"no topic", InspectConfig{Brokers: []string{"b:9092"}}, "Topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewInspector(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

func TestPreview(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("plain"), "plain"},
		{[]byte{0xff, 0x00}, "0xff00"},
		{[]byte(long), strings.Repeat("é", 80) + "…"},
	} {
		if got := preview(tc.in); got != tc.want {
			t.Errorf("preview(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
