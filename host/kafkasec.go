package host

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
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

// checkKafkaAuth connects to the brokers once, with the connection options
// conn, when kafka.tls or kafka.sasl is set, and fails on an error that
// retrying cannot fix: SASL authentication refused, or a TLS handshake that
// fails verification. Without it a wrong password would only show as
// warnings while the clients retry for ever. Brokers that do not answer
// within timeout are not an error here (they may come up later; the clients
// wait for them).
func checkKafkaAuth(ctx context.Context, k config.Kafka, conn []kgo.Opt, timeout time.Duration) error {
	if k.TLS == nil && k.SASL == nil {
		return nil
	}
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = cl.Ping(ctx)
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var tlsRecord tls.RecordHeaderError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.UnsupportedSaslMechanism):
		who := ""
		if k.SASL != nil {
			who = fmt.Sprintf(" as %q (%s)", k.SASL.Username, k.SASL.Mechanism)
		}
		return fmt.Errorf("kafka: authenticating to %s%s: %w", strings.Join(k.Brokers, ","), who, err)
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &tlsRecord):
		return fmt.Errorf("kafka: TLS to %s: %w (check kafka.tls and that the brokers' listener speaks TLS)", strings.Join(k.Brokers, ","), err)
	}
	return nil
}

// redisTLS is the TLS configuration of the redis section: the system's
// roots, or redis.ca_file's CAs. A CA file that can no longer be read (the
// loader checked it) leaves an empty pool, so the connection fails
// verification rather than falling back to the system's roots.
func redisTLS(r config.Redis) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.CAFile != "" {
		cfg.RootCAs = x509.NewCertPool()
		if pem, err := os.ReadFile(r.CAFile); err == nil {
			cfg.RootCAs.AppendCertsFromPEM(pem)
		}
	}
	return cfg
}
