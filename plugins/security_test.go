package plugins_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/conformance"
)

// environOf starts an "environ" pool with cfg and returns the plugin
// process's environment.
func environOf(t *testing.T, cfg plugins.PoolConfig) map[string]string {
	t.Helper()
	p, _ := newPool(t, cfg)
	res, err := p.Handle(context.Background(), batchOf("x"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(res.Outputs[0].Value), "\n") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

// A plugin gets a clean environment: what handler.env lists, PATH and
// TMPDIR, and the protocol's own variables; never the host's other
// variables, where its secrets live.
func TestPluginGetsACleanEnvironment(t *testing.T) {
	t.Setenv("WEIR_TEST_HOST_SECRET", "hunter2")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
	tmp := t.TempDir()
	env := environOf(t, plugins.PoolConfig{Builtin: "environ", Instances: 1, MaxReplyBytes: 1 << 20,
		Env: map[string]string{"GIVEN": "yes", "TMPDIR": tmp}})
	for k, v := range env {
		if strings.Contains(v, "hunter2") || strings.Contains(v, "also-secret") {
			t.Errorf("the plugin inherited a host secret in %s", k)
		}
	}
	if env["GIVEN"] != "yes" || env["PATH"] != os.Getenv("PATH") || env["TMPDIR"] != tmp {
		t.Errorf("GIVEN=%q PATH=%q TMPDIR=%q", env["GIVEN"], env["PATH"], env["TMPDIR"])
	}
	if env[plugins.EnvMaxReplyBytes] != strconv.Itoa(1<<20) || env[plugins.EnvBuiltinHandler] != "environ" {
		t.Errorf("protocol variables: %s=%q %s=%q", plugins.EnvMaxReplyBytes, env[plugins.EnvMaxReplyBytes],
			plugins.EnvBuiltinHandler, env[plugins.EnvBuiltinHandler])
	}
	allowed := map[string]bool{"GIVEN": true, "PATH": true, "TMPDIR": true, plugins.EnvMaxReplyBytes: true, plugins.EnvBuiltinHandler: true,
		plugins.Handshake.MagicCookieKey: true, plugins.EnvBatchFD: true, plugins.EnvCallFD: true}
	for k := range env {
		if !allowed[k] && !strings.HasPrefix(k, "PLUGIN_") {
			t.Errorf("the plugin got %s, which nothing gave it", k)
		}
	}
}

// With AutoMTLS the plugin is handed a client certificate to trust and the
// connection (which the host then dials with TLS) works.
func TestAutoMTLS(t *testing.T) {
	env := environOf(t, plugins.PoolConfig{Builtin: "environ", Instances: 1, AutoMTLS: true})
	if !strings.Contains(env["PLUGIN_CLIENT_CERT"], "BEGIN CERTIFICATE") {
		t.Fatal("no PLUGIN_CLIENT_CERT: the connection is not mutual TLS")
	}
	if env[plugins.EnvTLSFD] == "" {
		t.Fatalf("no %s: the handler was not passed the key the host made for it", plugins.EnvTLSFD)
	}
	env = environOf(t, plugins.PoolConfig{Builtin: "environ", Instances: 1})
	if _, ok := env["PLUGIN_CLIENT_CERT"]; ok {
		t.Fatal("PLUGIN_CLIENT_CERT without AutoMTLS")
	}
	if _, ok := env[plugins.EnvTLSFD]; ok {
		t.Fatalf("%s without AutoMTLS", plugins.EnvTLSFD)
	}
}

// With AutoMTLS a Go handler serves TLS with the key the host made for it
// (fast: no P-521 keys at start); one built with an SDK that does not read
// that key makes its own, as go-plugin does, and the host trusts that one.
func TestAutoMTLSKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"the host's key", nil, true},
		{"its own key", map[string]string{"WEIR_TEST_OWN_TLS_KEY": "1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newPool(t, plugins.PoolConfig{Builtin: "echo", Instances: 2, AutoMTLS: true, Env: tc.env})
			if _, err := p.Handle(context.Background(), batchOf("x")); err != nil {
				t.Fatal(err)
			}
			for i, host := range p.HostMadeTLSKeys() {
				if host != tc.want {
					t.Errorf("instance %d serves the host's key: %v, want %v", i, host, tc.want)
				}
			}
		})
	}
}

func sha256Of(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// handler.sha256 pins the executable: the right digest starts, another is
// refused with both digests in the error.
func TestPinnedExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256Of(t, exe)
	cfg := plugins.PoolConfig{Path: exe, Instances: 1, Env: map[string]string{plugins.EnvBuiltinHandler: "echo"}}
	cfg.SHA256 = strings.ToUpper(sum)
	p, _ := newPool(t, cfg)
	if _, err := p.Handle(context.Background(), batchOf("x")); err != nil {
		t.Fatal(err)
	}

	cfg.SHA256 = strings.Repeat("ab", 32)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Logger = zerolog.Nop()
	_, err = plugins.NewPool(ctx, cfg)
	if !errors.Is(err, plugins.ErrDigestMismatch) || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), cfg.SHA256) {
		t.Fatalf("err = %v; want ErrDigestMismatch naming %s and %s", err, sum, cfg.SHA256)
	}
}

// A reply over MaxReplyBytes fails the call as a bad reply, not retryable
// (so the host bisects it), and the pool goes on.
func TestReplyOverTheLimit(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "echo", Instances: 1, MaxReplyBytes: 64 << 10})
	_, err := p.Handle(context.Background(), batchOf(strings.Repeat("x", 100<<10)))
	if plugins.ClassOf(err) != plugins.ClassBadReply || plugins.IsRetryable(err) || !strings.Contains(err.Error(), "max_reply_bytes") {
		t.Fatalf("err = %v (class %s, retryable %v); want a non-retryable bad_reply naming max_reply_bytes",
			err, plugins.ClassOf(err), plugins.IsRetryable(err))
	}
	if _, err := p.Handle(context.Background(), batchOf(strings.Repeat("x", 10<<10))); err != nil {
		t.Fatalf("a small batch after the large one: %v", err)
	}
}

// A reply holding a string that is not UTF-8 (protobuf refuses it) is a bad
// reply, not retryable, so the host bisects rather than retries the batch.
func TestReplyWithInvalidUTF8(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "badutf8", Instances: 1})
	_, err := p.Handle(context.Background(), batchOf("x"))
	if plugins.ClassOf(err) != plugins.ClassBadReply || plugins.IsRetryable(err) || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Fatalf("err = %v (class %s, retryable %v); want a non-retryable bad_reply", err, plugins.ClassOf(err), plugins.IsRetryable(err))
	}
}

// Automatic mTLS with a plugin that does not support it (the Python SDK)
// fails the start with an error that says what to change.
func TestAutoMTLSWithAPluginWithoutIt(t *testing.T) {
	tgt, err := conformance.PythonTarget()
	if err != nil {
		t.Skip(err)
	}
	cfg := tgt.Config
	cfg.Instances, cfg.AutoMTLS, cfg.StartTimeout, cfg.Logger = 1, true, 20*time.Second, zerolog.Nop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := plugins.NewPool(ctx, cfg)
	if err == nil {
		_ = p.Close(ctx)
		t.Fatal("a Python plugin started with automatic mTLS")
	}
	if !strings.Contains(err.Error(), "needs mtls: off") {
		t.Fatalf("err = %v; want a hint at handler.mtls", err)
	}
}
