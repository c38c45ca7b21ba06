package plugins

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"time"
)

// Mutual TLS between the host and a handler process.
//
// go-plugin's automatic mTLS has each side make a P-521 key and a
// certificate for it at every process start: the host passes its
// certificate in PLUGIN_CLIENT_CERT, the plugin answers with its own in the
// handshake line. P-521 is slow here (a key and a self-signature take 1.6
// ms, a handshake signature 1 ms and its verification 2.8 ms on each side),
// which made TLS about half of a handler process's start.
//
// So the host makes both key pairs, on P-256 (a tenth of a millisecond for
// the two), keeps the client's, and hands the handler its own through an
// inherited pipe (EnvTLSFD) that only the handler process holds: the key
// never appears in an environment, a file or a command line. A handler
// serving through this package reads it and serves TLS with it, requiring
// the host's certificate of the client; the host trusts exactly the
// certificate it made. The host still sets PLUGIN_CLIENT_CERT, as
// go-plugin's automatic mTLS does: a handler built with an older SDK, which
// ignores the pipe, makes its own P-521 certificate and sends it in the
// handshake line, and go-plugin then trusts that one instead, as before.

// EnvTLSFD names, in a handler process's environment, the inherited file
// descriptor from which it reads the PEM key and certificate it must serve
// TLS with (mutual TLS only).
const EnvTLSFD = "WEIR_TLS_FD"

// handlerTLS is the key material of one handler process's connection.
type handlerTLS struct {
	// client is the host's side: its certificate, and the handler's
	// certificate as its only root.
	client *tls.Config
	// clientPEM is the host's certificate, for PLUGIN_CLIENT_CERT.
	clientPEM string
	// serverPEM is the handler's certificate and key, for the pipe.
	serverPEM []byte
	// serverDER is the handler's certificate as it presents it.
	serverDER []byte
}

// newHandlerTLS makes the key pairs of one handler process's connection.
func newHandlerTLS() (*handlerTLS, error) {
	cCert, cKey, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("making the host's TLS certificate: %w", err)
	}
	sCert, sKey, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("making the handler's TLS certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(cCert, cKey)
	if err != nil {
		return nil, fmt.Errorf("loading the host's TLS certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sCert) {
		return nil, errors.New("loading the handler's TLS certificate")
	}
	blk, _ := pem.Decode(sCert)
	return &handlerTLS{
		client: &tls.Config{
			Certificates: []tls.Certificate{pair},
			RootCAs:      roots,
			ServerName:   "localhost",
			MinVersion:   tls.VersionTLS12, // what go-plugin's automatic mTLS asks of an older SDK's handler
		},
		clientPEM: string(cCert),
		serverPEM: append(sCert, sKey...),
		serverDER: blk.Bytes,
	}, nil
}

// pipe returns the read end of a pipe holding the handler's certificate and
// key, for the handler process to inherit. The caller closes it once the
// process has started.
func (t *handlerTLS) pipe() (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("passing the handler its TLS key: %w", err)
	}
	// A kilobyte: well within a pipe's buffer, so the write does not wait
	// for the reader.
	_, err = w.Write(t.serverPEM)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("passing the handler its TLS key: %w", err)
	}
	return r, nil
}

// selfSigned makes a P-256 key and a self-signed certificate for it, PEM
// encoded, valid as the server (localhost) and the client, and as its own
// root: the template go-plugin's automatic mTLS uses.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"weir"}},
		DNSNames:              []string{"localhost"},
		NotBefore:             now.Add(-30 * time.Second),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// serverTLS is, in a handler process, the TLS configuration the host passed
// it: the key and certificate read from EnvTLSFD, and the host's
// certificate (PLUGIN_CLIENT_CERT) as the one client it accepts. It returns
// nil, nil when the host passed none (mTLS off, or a host that lets
// go-plugin make the handler's certificate); with nil, go-plugin does what
// it always did.
func serverTLS() (*tls.Config, error) {
	fdStr, clientPEM := os.Getenv(EnvTLSFD), os.Getenv("PLUGIN_CLIENT_CERT")
	if fdStr == "" || clientPEM == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a file descriptor number", EnvTLSFD, fdStr)
	}
	f := os.NewFile(uintptr(fd), "weir-tls")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("reading the TLS key from %s=%d: %w", EnvTLSFD, fd, err)
	}
	pair, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS key from %s=%d: %w", EnvTLSFD, fd, err)
	}
	clients := x509.NewCertPool()
	if !clients.AppendCertsFromPEM([]byte(clientPEM)) {
		return nil, errors.New("PLUGIN_CLIENT_CERT holds no certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// clientConfig is the host's TLS configuration for go-plugin, nil (no TLS)
// for a nil t. go-plugin sets its roots to the handler's own certificate if
// the handler sends one in the handshake line.
func (t *handlerTLS) clientConfig() *tls.Config {
	if t == nil {
		return nil
	}
	return t.client
}
