package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
)

func TestMain(m *testing.M) {
	plugins.ServeBuiltinIfRequested(builtin.Handlers())
	os.Exit(m.Run())
}

// The quickstart must account for every seeded record (outputs + DLQ, counted
// on the broker) and leave the group committed to the end.
func TestQuickstartAccountsForEveryRecord(t *testing.T) {
	var out bytes.Buffer
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	err = quickstart(context.Background(), quickstartOpts{records: 5000, partitions: 4, json: true, out: &out, progress: devnull},
		zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out.String())
	}
	var s quickstartSummary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("summary is not one JSON object: %v\n%s", err, out.String())
	}
	if s.Outputs+s.DLQ != 5000 || !s.Committed || !s.Accounted {
		t.Fatalf("summary does not account for 5000 records: %+v", s)
	}
	if s.DLQ == 0 || s.Failed != s.DLQ {
		t.Fatalf("want the malformed readings (about 1%%) dead-lettered, got dlq=%d failed=%d", s.DLQ, s.Failed)
	}
}

func TestValidateReportsEveryProblemWithItsLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	bad := `version: 1
kafka: { brokers: [localhost:9092] }
pipelines:
  - name: iot
    source: { kafka: { topics: [in] } }
    batch: { max_wait: fast }
    handler: { plugin: ./missing }
    sinks: { out: { kafka: { topic: out } } }
    colour: blue
`
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	root := newRoot()
	root.SetArgs([]string{"validate", "-c", path})
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.Execute()
	if ee, ok := err.(exitError); !ok || ee.code != 2 {
		t.Fatalf("validate of a broken file: err = %v, want exit status 2", err)
	}
	for _, want := range []string{
		path + ":6: pipelines[0].batch.max_wait:",
		path + ":7: pipelines[0].handler.plugin:",
		path + ":9: pipelines[0].colour: unknown field",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr.String())
		}
	}

	good := strings.Replace(strings.Replace(bad, "fast", "5ms", 1), "    colour: blue\n", "", 1)
	good = strings.Replace(good, "./missing", "builtin:echo", 1)
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	root = newRoot()
	root.SetArgs([]string{"validate", "-c", path})
	stdout.Reset()
	root.SetOut(&stdout)
	if err := root.Execute(); err != nil {
		t.Fatalf("validate of a good file: %v", err)
	}
	if !strings.Contains(stdout.String(), "ok (1 pipeline: iot)") {
		t.Fatalf("validate output: %q", stdout.String())
	}
}
