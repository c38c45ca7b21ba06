package host

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhq/weir/host/config"
)

// KafkaSecurityOpts returns the client options that make a Kafka client
// speak TLS and SASL as k says: nil for a plaintext, unauthenticated
// connection. Every client weir makes for a config file gets them (the
// source, Kafka sinks, DLQ producers, on every cluster), and so can the
// CLI's. It logs a warning on log when TLS does not verify the brokers. The
// password stays inside the SASL mechanism; no error or log line shows it.
func KafkaSecurityOpts(k config.Kafka, log zerolog.Logger) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if k.TLS != nil {
		cfg, err := kafkaTLSConfig(k.TLS)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: %w", err)
		}
		if k.TLS.InsecureSkipVerify {
			log.Warn().Msg("kafka.tls.insecure_skip_verify is set: broker certificates are not verified, so anyone in the path can pose as the broker")
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s := k.SASL; s != nil {
		m, err := saslMechanism(s)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl: %w", err)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// kafkaTLSConfig builds the TLS configuration of kafka.tls. With no
// server_name, franz-go sets each connection's to its broker's host.
func kafkaTLSConfig(t *config.KafkaTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user asked, and is warned
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading cert_file %s and key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func saslMechanism(s *config.KafkaSASL) (sasl.Mechanism, error) {
	switch s.Mechanism {
	case config.SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case config.SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case config.SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	case config.SASLAWSMSKIAM:
		// Credentials are read at each authentication, so rotated ones
		// (a refreshed session token in the environment) are used.
		return aws.ManagedStreamingIAM(func(context.Context) (aws.Auth, error) {
			a := aws.Auth{AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
				SessionToken: os.Getenv("AWS_SESSION_TOKEN")}
			if a.AccessKey == "" || a.SecretKey == "" {
				return a, errors.New("AWS_MSK_IAM: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
			}
			return a, nil
		}), nil
	}
	return nil, fmt.Errorf("mechanism %q is not supported", s.Mechanism)
}
