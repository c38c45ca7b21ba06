package plugins

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"
)

// serverConfigFor is a handler process's TLS configuration when the host
// passes it keys's handler key, trusting clientPEM.
func serverConfigFor(t *testing.T, keys *handlerTLS, clientPEM string) *tls.Config {
	t.Helper()
	r, err := keys.pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Setenv(EnvTLSFD, strconv.Itoa(int(r.Fd())))
	t.Setenv("PLUGIN_CLIENT_CERT", clientPEM)
	cfg, err := serverTLS()
	if err != nil || cfg == nil {
		t.Fatalf("serverTLS() = %v, %v", cfg, err)
	}
	return cfg
}

// handshake runs a TLS handshake between client and server over loopback
// TCP and returns each side's error.
func handshake(t *testing.T, client, server *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(s, server)
		err = srv.Handshake()
		if err == nil {
			// TLS 1.3 checks the client's certificate after the client's
			// handshake is done: read, so the server's verdict arrives.
			_, err = srv.Read(make([]byte, 1))
		}
		if err == nil {
			_, err = srv.Write([]byte{1})
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, client)
	clientErr = cl.Handshake()
	if clientErr == nil {
		_, clientErr = cl.Write([]byte{1})
	}
	if clientErr == nil {
		_, clientErr = cl.Read(make([]byte, 1))
	}
	c.Close()
	return clientErr, <-done
}

// The host and its handler process accept each other, and each refuses a
// peer with keys made for another process.
func TestHostAndHandlerTLSKeys(t *testing.T) {
	keys, err := newHandlerTLS()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newHandlerTLS()
	if err != nil {
		t.Fatal(err)
	}
	if _, serr := handshake(t, keys.client, serverConfigFor(t, keys, keys.clientPEM)); serr != nil {
		t.Fatalf("the host's keys: handler side: %v", serr)
	}
	// A handler serving another process's key: the host refuses it.
	if cerr, _ := handshake(t, keys.client, serverConfigFor(t, other, keys.clientPEM)); cerr == nil {
		t.Error("the host accepted a handler with a key it did not make for it")
	}
	// A client with another host's certificate (trusting this handler's):
	// the handler refuses it.
	stranger := other.client.Clone()
	stranger.RootCAs = keys.client.RootCAs
	if _, serr := handshake(t, stranger, serverConfigFor(t, keys, keys.clientPEM)); serr == nil {
		t.Error("the handler accepted a client that is not its host")
	}
}

// Without the host's key and certificate, a handler leaves TLS to
// go-plugin; a broken descriptor is an error, not a silent plain start.
func TestServerTLSWithoutTheHostsKey(t *testing.T) {
	t.Setenv(EnvTLSFD, "")
	t.Setenv("PLUGIN_CLIENT_CERT", "")
	if cfg, err := serverTLS(); cfg != nil || err != nil {
		t.Fatalf("no variables: serverTLS() = %v, %v; want nil, nil", cfg, err)
	}
	t.Setenv(EnvTLSFD, "x")
	t.Setenv("PLUGIN_CLIENT_CERT", "cert")
	if _, err := serverTLS(); err == nil {
		t.Fatal("a descriptor that is not a number was accepted")
	}
}
