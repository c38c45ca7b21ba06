package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
