package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/loadtest/harness"
)

// runWeir runs the weir command line in process and returns its standard
// output.
func runWeir(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	if errOut.Len() > 0 {
		t.Logf("stderr:\n%s", errOut.String())
	}
	return out.String(), err
}

// `weir loadtest --json` pushes 20,000 records through the echo plugin on
// an in-process broker and finds every one exactly once, in order per key,
// with the group committed to the end. No timing is asserted.
func TestLoadtestVerifiesEveryRecord(t *testing.T) {
	html := filepath.Join(t.TempDir(), "report.html")
	out, err := runWeir(t, "loadtest", "--records", "20000", "--json", "--html", html, "--log-level", "warn")
	if err != nil {
		t.Fatalf("weir loadtest: %v\n%s", err, out)
	}
	var rep loadtest.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("the report is not one JSON object: %v\n%s", err, out)
	}
	v := rep.Verification
	if !rep.OK || rep.Lost != 0 || rep.Duplicated != 0 || rep.Reordered != 0 || v.Unique != 20000 || !rep.CommittedToEnd {
		t.Fatalf("loadtest did not verify 20000 records: %s", out)
	}
	if v.Latency.Count != 20000 || rep.RecordsPerS <= 0 || rep.Resources.PeakRSSSelfBytes <= 0 {
		t.Fatalf("report lacks latency, throughput or RSS: %s", out)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "End-to-end latency over time", "Throughput", "polyline"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	for _, external := range []string{"<script", "http://", "https://", "<link"} {
		if bytes.Contains(bytes.ReplaceAll(page, []byte(`xmlns="http://www.w3.org/2000/svg"`), nil), []byte(external)) {
			t.Errorf("the HTML report is not self-contained: it has %q", external)
		}
	}
}

// With the noop handler there are no outputs: the counts and the commits
// are verified.
func TestLoadtestNoopKeyOrdering(t *testing.T) {
	out, err := runWeir(t, "loadtest", "--records", "5000", "--handler", "noop", "--ordering", "key", "--log-level", "warn")
	if err != nil {
		t.Fatalf("weir loadtest: %v\n%s", err, out)
	}
	for _, want := range []string{"result        OK", "counts only", "committed     true"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}

// The bench harness runs at a tiny size and prints all four measurements
// for each size. Rates are printed, never asserted.
func TestLoadtestBenchPrintsEveryMeasurement(t *testing.T) {
	out, err := runWeir(t, "loadtest", "bench", "--records", "5000", "--sizes", "100", "--log-level", "warn")
	if err != nil {
		t.Fatalf("weir loadtest bench: %v\n%s", err, out)
	}
	for _, m := range []string{harness.MeasureRaw, harness.MeasureNoop, harness.MeasureNoopKey, harness.MeasureIdempote} {
		if strings.Count(out, m) != 1 {
			t.Errorf("the table should have one row %q:\n%s", m, out)
		}
	}
	if !strings.Contains(out, "RATIO") || strings.Contains(out, "false") {
		t.Errorf("the table lacks ratios or has a measurement that did not consume everything:\n%s", out)
	}
}

func TestLoadtestRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"loadtest", "--handler", "nope"},
		{"loadtest", "--ordering", "sideways"},
		{"loadtest", "--records", "0"},
	} {
		if _, err := runWeir(t, args...); err == nil {
			t.Errorf("weir %v: no error", args)
		}
	}
}
