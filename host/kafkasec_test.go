package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
)

func TestKafkaSecurityOpts(t *testing.T) {
	if opts, err := KafkaSecurityOpts(config.Kafka{}, zerolog.Nop()); err != nil || len(opts) != 0 {
		t.Fatalf("plaintext: %d options, %v", len(opts), err)
	}
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := KafkaSecurityOpts(config.Kafka{TLS: &config.KafkaTLS{CAFile: notPEM}}, zerolog.Nop()); err == nil ||
		!strings.Contains(err.Error(), "kafka.tls: ca_file "+notPEM+" holds no PEM certificate") {
		t.Fatalf("bad CA: %v", err)
	}
	if _, err := KafkaSecurityOpts(config.Kafka{TLS: &config.KafkaTLS{CertFile: notPEM, KeyFile: notPEM}}, zerolog.Nop()); err == nil ||
		!strings.Contains(err.Error(), "kafka.tls: loading cert_file") {
		t.Fatalf("bad client certificate: %v", err)
	}
	logs := &testenv.SyncBuffer{}
	opts, err := KafkaSecurityOpts(config.Kafka{TLS: &config.KafkaTLS{InsecureSkipVerify: true},
		SASL: &config.KafkaSASL{Mechanism: config.SASLScramSHA256, Username: "u", Password: "p4ss"}}, zerolog.New(logs))
	if err != nil || len(opts) != 2 {
		t.Fatalf("TLS and SASL: %d options, %v", len(opts), err)
	}
	if !strings.Contains(logs.String(), "insecure_skip_verify is set") || strings.Contains(logs.String(), "p4ss") {
		t.Fatalf("log: %s", logs)
	}
}

// AWS_MSK_IAM signs with the credentials of the environment, read at each
// authentication; without them it fails saying which are missing. The
// secret key is used to sign, never sent.
func TestMSKIAMReadsTheEnvironment(t *testing.T) {
	m, err := saslMechanism(&config.KafkaSASL{Mechanism: config.SASLAWSMSKIAM})
	if err != nil || m.Name() != "AWS_MSK_IAM" {
		t.Fatalf("mechanism %v, %v", m, err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, _, err := m.Authenticate(context.Background(), "b-1.msk.eu-west-1.amazonaws.com:9098"); err == nil ||
		!strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set") {
		t.Fatalf("without credentials: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	_, first, err := m.Authenticate(context.Background(), "b-1.msk.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(first), "AKIDEXAMPLE") || strings.Contains(string(first), "wJalrXUtnFEMI-secret") {
		t.Fatalf("first message: %s", first)
	}
}
