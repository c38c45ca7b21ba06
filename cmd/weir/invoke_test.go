package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/host/invoke"
)

func invokeCLI(t *testing.T, o invokeOpts, stdin string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globalFlags{logFormat: "json", logLevel: "warn"}
	err := runInvoke(context.Background(), g, &o, strings.NewReader(stdin), &out, &errb)
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
	default:
		t.Fatalf("runInvoke: %v", err)
	}
	return out.String(), errb.String(), code
}

// `weir invoke` on good and malformed IoT readings: the JSON report has an
// output per good reading and a failure per malformed one, and the exit
// status says a record failed; on good readings alone it is 0.
func TestInvokeIoTExitStatusReflectsFailures(t *testing.T) {
	dir := t.TempDir()
	sample, _, code := invokeCLI(t, invokeOpts{sample: 30}, "")
	if code != 0 || strings.Count(sample, "\n") != 30 {
		t.Fatalf("--sample 30: status %d, %d lines", code, strings.Count(sample, "\n"))
	}
	path := filepath.Join(dir, "readings.jsonl")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := invokeCLI(t, invokeOpts{handler: "builtin:iot", input: path, json: true}, "")
	if code != 1 {
		t.Fatalf("exit status %d with malformed readings, want 1; stderr:\n%s", code, stderr)
	}
	var rep invoke.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if rep.Summary.Records != 30 || rep.Summary.Failed != 3 || rep.Summary.Outputs != 27 {
		t.Fatalf("summary = %+v, want 30 records, 3 failed, 27 outputs", rep.Summary)
	}

	// The good readings only, from stdin, through a config file's pipeline.
	var good []string
	for i, l := range strings.Split(strings.TrimSpace(sample), "\n") {
		if i%invoke.SampleMalformedEvery != invoke.SampleMalformedEvery-1 {
			good = append(good, l)
		}
	}
	cfg := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfg, []byte(`version: 1
kafka: { brokers: [localhost:9092] }
pipelines:
  - name: other
    source: { kafka: { topics: [x] } }
    handler: { plugin: "builtin:echo" }
    sinks: { out: { stdout: {} } }
  - name: iot
    source: { kafka: { topics: [readings] } }
    batch: { max_records: 5 }
    handler: { plugin: "builtin:iot", instances: 1 }
    sinks: { enriched: { stdout: {} } }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = invokeCLI(t, invokeOpts{configPath: cfg, pipeline: "iot", input: "-", json: true}, strings.Join(good, "\n"))
	if code != 0 {
		t.Fatalf("exit status %d on good readings, want 0; stderr:\n%s\n%s", code, stderr, out)
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Failed != 0 || rep.Summary.OK != 27 || rep.Summary.Batches < 27/5 {
		t.Fatalf("summary = %+v, want 27 ok in batches of at most 5", rep.Summary)
	}
	_, stderr, code = invokeCLI(t, invokeOpts{configPath: cfg, input: "-"}, good[0])
	if code != 2 || !strings.Contains(stderr, "choose one with --pipeline (other, iot)") {
		t.Fatalf("two pipelines without --pipeline: status %d, stderr %q", code, stderr)
	}
}

// Malformed input lines are named by number and nothing is run (exit 2).
func TestInvokeBadInputLines(t *testing.T) {
	out, stderr, code := invokeCLI(t, invokeOpts{handler: "builtin:echo", input: "-"}, "{\"value\":\"a\"}\n{\"value\":\n{\"key\":1}\n")
	if code != 2 || out != "" {
		t.Fatalf("status %d, stdout %q; want 2 and nothing run", code, out)
	}
	for _, want := range []string{"stdin:2: truncated JSON object", "stdin:3: field key: number is not a valid string"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	_, stderr, code = invokeCLI(t, invokeOpts{handler: "builtin:nope", input: "-"}, `{"value":"a"}`)
	if code != 2 || !strings.Contains(stderr, "no such builtin handler") {
		t.Fatalf("unknown builtin: status %d, %q", code, stderr)
	}
}
