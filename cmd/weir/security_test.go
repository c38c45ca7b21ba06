package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/record"
)

// weir validate warns about a plugin file any user may replace and about
// unverified TLS, exits 0 (the file is valid), and prints no password.
func TestValidateWarnsAndPrintsNoSecret(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "handler")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(plugin, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	const secret = "pa55-validate-s3cret"
	t.Setenv("WEIR_TEST_KAFKA_PASSWORD", secret)
	path := filepath.Join(dir, "weir.yaml")
	cfg := `version: 1
kafka:
  brokers: [localhost:9092]
  tls: { insecure_skip_verify: true }
  sasl: { mechanism: SCRAM-SHA-512, username: weir, password: "${WEIR_TEST_KAFKA_PASSWORD}" }
pipelines:
  - name: p
    source: { kafka: { topics: [in] } }
    handler: { plugin: ./handler }
    sinks: { out: { kafka: { topic: out } } }
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	root := newRoot()
	root.SetArgs([]string{"validate", "-c", path})
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.Execute(); err != nil {
		t.Fatalf("validate: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"warning: " + path + ":4: kafka.tls.insecure_skip_verify: broker certificates are not verified",
		"warning: " + path + ":9: pipelines[0].handler.plugin: " + plugin + " is writable by every user",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), secret) {
		t.Fatal("validate printed the password")
	}
}

// weir dlq inspect reads a DLQ topic on a SASL_SSL cluster with the
// connection (TLS, SASL) of a weir config file given with -c.
func TestDLQInspectOverSASL(t *testing.T) {
	addr := os.Getenv("WEIR_TEST_KAFKA_SASL")
	if addr == "" {
		t.Skip("WEIR_TEST_KAFKA_SASL is not set: no SASL_SSL broker (testenv/kafka/kafka.sh start --security sasl_ssl)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	y := fmt.Sprintf(`version: 1
kafka:
  brokers: [%s]
  tls: { ca_file: %q }
  sasl: { mechanism: SCRAM-SHA-512, username: %s, password_file: %q }
pipelines:
  - name: p
    source: { kafka: { topics: [in] } }
    handler: { plugin: "builtin:echo" }
    sinks: { out: { kafka: { topic: out } } }
`, addr, os.Getenv("WEIR_TEST_KAFKA_SASL_CA"), os.Getenv("WEIR_TEST_KAFKA_SASL_USER"), os.Getenv("WEIR_TEST_KAFKA_SASL_PASSWORD_FILE"))
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := host.KafkaSecurityOpts(cfg.Kafka, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	topic := "sasl-dlq-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.AllowAutoTopicCreation())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m := dlq.Envelope(&record.Record{Key: []byte("k"), Value: []byte("v"), Partition: record.KafkaPartition("in", 0), Position: record.Position{Offset: 7}},
		dlq.Failure{Message: "bad", Class: "invalid_input", Attempts: 1}, dlq.Origin{Pipeline: "p"})
	r := &kgo.Record{Topic: topic, Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, err := weir(t, "dlq", "inspect", "-c", path, "--topic", topic, "--json")
	if err != nil {
		t.Fatalf("dlq inspect -c: %v", err)
	}
	var rep struct{ Envelopes int64 }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Envelopes != 1 {
		t.Fatalf("report %q (%v): want 1 envelope", out, err)
	}
}
