package host_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// saslBroker is a real Kafka's SASL_SSL listener, as testenv/kafka/kafka.sh
// start --security sasl_ssl describes it in its sasl.env (scripts/test
// exports it in its real-Kafka phase). Tests that need it skip without it.
type saslBroker struct {
	addr, ca, user, passwordFile string
}

func saslEnv(t *testing.T) saslBroker {
	t.Helper()
	b := saslBroker{addr: os.Getenv("WEIR_TEST_KAFKA_SASL"), ca: os.Getenv("WEIR_TEST_KAFKA_SASL_CA"),
		user: os.Getenv("WEIR_TEST_KAFKA_SASL_USER"), passwordFile: os.Getenv("WEIR_TEST_KAFKA_SASL_PASSWORD_FILE")}
	if b.addr == "" {
		t.Skip("WEIR_TEST_KAFKA_SASL is not set: no SASL_SSL broker (testenv/kafka/kafka.sh start --security sasl_ssl; . DIR/sasl.env)")
	}
	return b
}

// kafkaSection is the YAML kafka section for b with mechanism; password is
// either "file" (password_file) or the name of an environment variable.
func (b saslBroker) kafkaSection(mechanism, password string) string {
	pw := "password_file: " + strconv.Quote(b.passwordFile)
	if password != "file" {
		pw = "password: \"${" + password + "}\""
	}
	return fmt.Sprintf(`kafka:
  brokers: [%s]
  tls: { ca_file: %q }
  sasl: { mechanism: %s, username: %s, %s }
`, b.addr, b.ca, mechanism, b.user, pw)
}

// clientOpts are the options of a test client of b, built the way weir
// builds its own.
func (b saslBroker) clientOpts(t *testing.T, mechanism string) []kgo.Opt {
	t.Helper()
	f, err := config.Parse("client.yaml", []byte("version: 1\n"+b.kafkaSection(mechanism, "file")+
		"pipelines: [{name: p, source: {kafka: {topics: [x]}}, handler: {plugin: \"builtin:noop\"}, sinks: {o: {stdout: {}}}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := host.KafkaSecurityOpts(f.Kafka, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return append([]kgo.Opt{kgo.SeedBrokers(strings.Split(b.addr, ",")...)}, sec...)
}

// A pipeline runs end to end over SASL_SSL (SCRAM-SHA-512, the CA from the
// test environment, the password from a file): the source, the Kafka sink
// and the DLQ producer all authenticate. Every record reaches the output or
// the DLQ, and nothing shows the password.
func TestSASLSSLEndToEnd(t *testing.T) {
	b := saslEnv(t)
	password, err := os.ReadFile(b.passwordFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := b.clientOpts(t, config.SASLScramSHA512)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	in, out, dead := "sasl-in-"+suffix, "sasl-out-"+suffix, "sasl-dlq-"+suffix
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkasrc.EnsureTopics(ctx, opts, 4, in); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.ProducerLinger(2*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 2000
	err = loadtest.Produce(context.Background(), cl, in, n, func(i int) *kgo.Record {
		v := strconv.Itoa(i)
		if i%500 == 7 {
			v += "-POISON"
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%50)), Value: []byte(v)}
	})
	if err != nil {
		t.Fatal(err)
	}

	y := "version: 1\n" + b.kafkaSection(config.SASLScramSHA512, "file") + fmt.Sprintf(`pipelines:
  - name: sasl
    source: { kafka: { topics: [%s], group: sasl-%s } }
    batch: { max_records: 200, max_wait: 5ms }
    handler: { plugin: "builtin:echo", env: { WEIR_FAIL_ON: POISON } }
    sinks: { out: { kafka: { topic: %s } } }
    dlq: { kafka: { topic: %s } }
`, in, suffix, out, dead)
	cfg, err := config.Parse("sasl.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	// Debug level: franz-go narrates its SASL handshakes there.
	logs := &testenv.SyncBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	defer func() {
		if t.Failed() {
			out := logs.String()
			t.Logf("the end of the host's log:\n%s", out[max(0, len(out)-20000):])
		}
	}()
	h := host.New(cfg, host.Options{Logger: log, HostID: "sasl-host", AdminAddr: "127.0.0.1:0"})
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(rctx) }()
	outs := consumeSecured(t, opts, out, n-4, 90*time.Second)
	deads := consumeSecured(t, opts, dead, 4, 30*time.Second)
	admin := ""
	for _, path := range []string{"/status", "/metrics", "/"} {
		resp, err := http.Get("http://" + h.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		admin += string(body)
	}
	if strings.Contains(admin, strings.TrimSpace(string(password))) {
		t.Fatal("the admin server shows the SASL password")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("host run: %v", err)
	}
	if len(outs) != n-4 || len(deads) != 4 {
		t.Fatalf("%d outputs and %d dead letters, want %d and 4", len(outs), len(deads), n-4)
	}
	for _, d := range deads {
		e, err := dlq.Parse(d.Key, d.Value, recordHeaders(d))
		if err != nil || !strings.HasSuffix(string(e.Value), "-POISON") || e.Source.Stream != in {
			t.Fatalf("dead letter %q: %+v, %v", d.Value, e, err)
		}
	}
	adm := kadm.NewClient(cl)
	offs, err := adm.FetchOffsetsForTopics(context.Background(), "sasl-"+suffix, in)
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != n {
		t.Fatalf("group committed %d records of %d", committed, n)
	}
	if strings.Contains(logs.String(), strings.TrimSpace(string(password))) {
		t.Fatal("the log shows the SASL password")
	}
}

// The other mechanisms weir offers work against the same listener.
func TestSASLMechanisms(t *testing.T) {
	b := saslEnv(t)
	for _, m := range []string{config.SASLScramSHA256, config.SASLPlain} {
		t.Run(m, func(t *testing.T) {
			cl, err := kgo.NewClient(b.clientOpts(t, m)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := kadm.NewClient(cl).BrokerMetadata(ctx); err != nil {
				t.Fatalf("metadata over SASL_SSL with %s: %v", m, err)
			}
		})
	}
}

// A wrong password stops weir run with an error that says authentication
// failed, and shows no password; it does not retry forever.
func TestSASLWrongPasswordFailsClearly(t *testing.T) {
	b := saslEnv(t)
	const wrong = "not-the-password-8d1f"
	t.Setenv("WEIR_TEST_WRONG_PASSWORD", wrong)
	y := "version: 1\n" + b.kafkaSection(config.SASLScramSHA512, "WEIR_TEST_WRONG_PASSWORD") + `pipelines:
  - name: wrong
    source: { kafka: { topics: [sasl-wrong] } }
    handler: { plugin: "builtin:echo", instances: 1 }
    sinks: { out: { kafka: { topic: sasl-wrong-out } } }
`
	cfg, err := config.Parse("wrong.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	h := host.New(cfg, host.Options{Logger: zerolog.New(logs), AdminAddr: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	err = h.Run(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run = %v after %s; want an authentication error before the deadline", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") {
		t.Fatalf("Run error does not say authentication failed: %v", err)
	}
	if strings.Contains(err.Error()+logs.String(), wrong) {
		t.Fatal("the error or the log shows the password")
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// A CA that did not sign the brokers' certificates (here: the system's
// roots) stops weir run at once with an error naming the TLS problem.
func TestSASLUnknownCAFailsClearly(t *testing.T) {
	b := saslEnv(t)
	t.Setenv("WEIR_TEST_PASSWORD", "unused")
	y := strings.Replace(b.kafkaSection(config.SASLScramSHA512, "WEIR_TEST_PASSWORD"), fmt.Sprintf("{ ca_file: %q }", b.ca), "{}", 1)
	cfg, err := config.Parse("ca.yaml", []byte("version: 1\n"+y+`pipelines:
  - name: ca
    source: { kafka: { topics: [sasl-ca] } }
    handler: { plugin: "builtin:echo", instances: 1 }
    sinks: { out: { kafka: { topic: sasl-ca-out } } }
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = host.New(cfg, host.Options{Logger: zerolog.Nop(), AdminAddr: "off"}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "kafka: TLS to ") || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Run = %v; want a TLS verification error", err)
	}
	t.Log(err)
}

// consumeSecured reads topic from the start with opts until want records
// arrived (then briefly longer, to catch extras) or within passed.
func consumeSecured(t *testing.T, opts []kgo.Opt, topic string, want int, within time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	deadline := time.Now().Add(within)
	extra := time.Time{}
	for time.Now().Before(deadline) {
		if len(got) >= want {
			if extra.IsZero() {
				extra = time.Now().Add(time.Second)
			} else if time.Now().After(extra) {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	return got
}
