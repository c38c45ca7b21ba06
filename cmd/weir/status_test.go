package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weirhq/weir/host"
)

func TestStatusTable(t *testing.T) {
	st := host.Status{Host: "h1", Ready: false, Reason: "pipeline iot: breaker handler is open", Pipelines: []host.PipelineStatus{{
		Name: "iot", State: host.StateRunning,
		Counters: host.Snapshot{RecordsIn: 1000, Completed: 990, Outputs: 980, Failures: 10, DLQ: 10, Batches: 4},
		Breakers: []host.BreakerStatus{{Name: "handler", State: "open"}, {Name: "dlq", State: "closed"}},
		Lanes: []host.LaneStatus{{Topic: "readings", Partition: "0", Committed: "499",
			Lag: host.PartitionLag{Known: true, End: 900, Next: 500, Lag: 400, Blocked: 400, BlockedBy: "breaker"}},
			{Topic: "readings", Partition: "1", Paused: true}},
		Lag:    host.LagTotals{Lag: 400, Blocked: 400},
		Source: host.SourceStatus{Connected: true},
		Plugin: host.PluginStatus{Name: "iot-enrich", Instances: 2}, DLQ: 10, InflightBytes: 2048,
	}}}
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"status", "--addr", addr})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"host h1  ready no: pipeline iot: breaker handler is open", "pipeline iot (running)",
		"handler=open", "dlq=closed", "iot-enrich x2", "2.0KiB", "readings  0          499        400  0          400 (breaker)", "paused",
		"lag: 400 (drainable 0, blocked 400)", "source: connected"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	root = newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"status", "--addr", addr, "--json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if out.String() != string(body) {
		t.Errorf("--json printed %q, want the body as served", out.String())
	}

	root = newRoot()
	root.SetArgs([]string{"status", "--addr", "127.0.0.1:1"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "is weir running") {
		t.Errorf("unreachable admin server: err = %v", err)
	}
}
