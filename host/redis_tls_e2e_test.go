package host_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
)

// testCA writes a throwaway CA and a server certificate for 127.0.0.1 signed
// by it into dir: ca.pem, server.pem, server.key.
func testCA(t *testing.T, dir string) {
	t.Helper()
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", "CERTIFICATE", caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write("server.pem", "CERTIFICATE", srvDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write("server.key", "PRIVATE KEY", keyDER)
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Redis over TLS, verified with redis.ca_file, as an ACL user whose
// password comes from redis.password_file: a pipeline with idempotency on
// completes, its marks land in Redis, and without the CA (the system's
// roots) weir run fails at once naming the certificate problem.
func TestRedisTLSWithACLUser(t *testing.T) {
	dir := t.TempDir()
	testCA(t, dir)
	port := freeLoopbackPort(t)
	srv := testenv.StartRedis(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", filepath.Join(dir, "server.pem"),
		"--tls-key-file", filepath.Join(dir, "server.key"), "--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no")
	password := "acl-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if reply := testenv.RedisCommand(t, srv.Addr(), "ACL", "SETUSER", "weir", "on", ">"+password, "~*", "&*", "+@all"); reply != "+OK" {
		t.Fatalf("ACL SETUSER: %s", reply)
	}
	if err := os.WriteFile(filepath.Join(dir, "redis-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 100
	e := newEnv(t, 2)
	e.produce(0, n, 10)
	file := func(caFile string) *config.File {
		y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s] }
redis: { addr: "127.0.0.1:%d", tls: true, %s username: weir, password_file: redis-password, key_prefix: "weir-tls:%s:" }
admin: { addr: off }
pipelines:
  - name: e2e
    source: { kafka: { topics: [%s], group: %s } }
    batch: { max_records: 20, max_wait: 5ms }
    handler: { plugin: "builtin:echo", env: { WEIR_ECHO_SINK: out } }
    sinks: { out: { kafka: { topic: %s } } }
    shutdown_timeout: 10s
`, strings.Join(e.brokers, ", "), port, caFile, e.group, e.in, e.group, e.out)
		cfg, err := config.Parse(filepath.Join(dir, "weir.yaml"), []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := host.New(file(""), host.Options{Logger: zerolog.Nop()}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: Run = %v; want a certificate error", err)
	}

	var logs testenv.SyncBuffer
	runLogged(t, file("ca_file: ca.pem,"), &logs, n)
	if got := len(e.consume(n, 30*time.Second)); got != n {
		t.Fatalf("%d outputs, want %d", got, n)
	}
	keys := testenv.RedisCommand(t, srv.Addr(), "EVAL", "return #redis.call('KEYS', ARGV[1])", "0", "weir-tls:"+e.group+":*")
	if keys == ":0" || !strings.HasPrefix(keys, ":") {
		t.Fatalf("idempotency keys in redis: %s", keys)
	}
	if strings.Contains(logs.String(), password) {
		t.Fatal("the log shows the redis password")
	}
}
