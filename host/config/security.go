package config

import (
	"crypto/sha256"
	"crypto/x509"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// warnAt records a warning at the recorded position of path.
func (d *decoder) warnAt(path, format string, args ...any) {
	n := d.pos(path)
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	d.warnings = append(d.warnings, &FieldError{File: d.problems.file, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// checkKafkaSecurity checks kafka.tls and kafka.sasl and reads
// sasl.password_file.
func (d *decoder) checkKafkaSecurity(k *Kafka) {
	if t := k.TLS; t != nil {
		if k.Embedded() {
			d.errorAt("kafka.tls", "the embedded broker speaks plaintext only")
		}
		t.CAFile, t.CertFile, t.KeyFile = d.resolved(t.CAFile), d.resolved(t.CertFile), d.resolved(t.KeyFile)
		for _, f := range []struct{ path, file string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.file != "" {
				d.checkReadable("kafka.tls."+f.path, f.file)
			}
		}
		if t.CAFile != "" {
			d.checkCAFile("kafka.tls.ca_file", t.CAFile)
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			d.errorAt("kafka.tls.cert_file", "cert_file and key_file go together: set both for a client certificate, or neither")
		}
		if t.InsecureSkipVerify {
			d.warnAt("kafka.tls.insecure_skip_verify", "broker certificates are not verified: the connection is encrypted but anyone in the path can pose as the broker")
		}
	}
	s := k.SASL
	if s == nil {
		return
	}
	if k.Embedded() {
		d.errorAt("kafka.sasl", "the embedded broker does not authenticate")
	}
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			d.errorAt("kafka.sasl.username", "%s for %s", d.missing("kafka.sasl.username"), s.Mechanism)
		}
		d.passwordFile("kafka.sasl", &s.Password, &s.PasswordFile, true)
		if s.Mechanism == SASLPlain && k.TLS == nil {
			d.warnAt("kafka.sasl.mechanism", "PLAIN without kafka.tls sends the password in clear text")
		}
	case SASLAWSMSKIAM:
		for _, f := range []struct{ name, v string }{{"username", s.Username}, {"password", s.Password}, {"password_file", s.PasswordFile}} {
			if f.v != "" {
				d.errorAt("kafka.sasl."+f.name, "AWS_MSK_IAM takes no %s: it signs with the AWS credentials in the environment", f.name)
			}
		}
		if k.TLS == nil {
			d.errorAt("kafka.sasl.mechanism", "AWS_MSK_IAM needs kafka.tls (MSK's IAM listener is TLS only); write tls: {}")
		}
	case "":
		d.errorAt("kafka.sasl.mechanism", "%s; one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, AWS_MSK_IAM", d.missing("kafka.sasl.mechanism"))
	default:
		d.errorAt("kafka.sasl.mechanism", "%q is not a mechanism; one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, AWS_MSK_IAM", s.Mechanism)
	}
}

// resolved resolves a non-empty path against the config file's directory.
func (d *decoder) resolved(p string) string {
	if p == "" {
		return ""
	}
	return resolvePath(d.dir, p)
}

// checkReadable checks that file can be opened, unless file checks are
// skipped.
func (d *decoder) checkReadable(path, file string) {
	if d.opts.skipFileChecks {
		return
	}
	f, err := os.Open(file)
	if err != nil {
		d.errorAt(path, "cannot be read: %v", unwrapPathError(err))
		return
	}
	f.Close()
}

// checkCAFile checks that file holds PEM certificates, unless file checks
// are skipped.
func (d *decoder) checkCAFile(path, file string) {
	if d.opts.skipFileChecks {
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		d.errorAt(path, "cannot be read: %v", unwrapPathError(err))
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		d.errorAt(path, "%s holds no PEM certificate", file)
	}
}

// unwrapPathError drops the *PathError's op and path (the message names
// the file already): "no such file or directory".
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// passwordFile checks a password and its password_file (at most one; at
// least one when required) and reads the file into *password.
func (d *decoder) passwordFile(section string, password, file *string, required bool) {
	switch {
	case *password != "" && *file != "":
		d.errorAt(section+".password_file", "set password or password_file, not both")
		return
	case *file != "":
		*file = resolvePath(d.dir, *file)
		if d.opts.skipFileChecks {
			return
		}
		f, err := os.Open(*file)
		if err != nil {
			d.errorAt(section+".password_file", "cannot be read: %v", unwrapPathError(err))
			return
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			d.errorAt(section+".password_file", "cannot be read: %v", unwrapPathError(err))
			return
		}
		*password = strings.TrimRight(string(b), "\r\n")
		if *password == "" {
			d.errorAt(section+".password_file", "%s is empty", *file)
		}
		if fi, err := f.Stat(); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o004 != 0 {
			d.warnAt(section+".password_file", "%s is readable by every user of this machine; chmod o-r it", *file)
		}
	case required && *password == "":
		if d.has(section + ".password") {
			d.errorAt(section+".password", "is empty (is its environment variable set?)")
		} else {
			d.errorAt(section+".password", "is required; write password: ${VAR} or password_file: PATH")
		}
	}
}

// checkHandlerSecurity checks sha256, mtls and the limits of a handler, and
// warns about a plugin file others may replace.
func (d *decoder) checkHandlerSecurity(path string, h *Handler) {
	switch h.MTLS {
	case MTLSAuto, MTLSOn, MTLSOff:
	default:
		d.errorAt(path+".mtls", "%q is not one of auto, on, off", h.MTLS)
	}
	if h.MaxOutputsPerRecord < 1 {
		d.errorAt(path+".max_outputs_per_record", "must be at least 1, got %d", h.MaxOutputsPerRecord)
	}
	d.positiveSize(path+".max_output_bytes", h.MaxOutputBytes)
	switch {
	case h.MaxReplyBytes < 4<<10 || h.MaxReplyBytes > 1<<31-1:
		d.errorAt(path+".max_reply_bytes", "%s is not between 4KiB and 2GiB-1", formatSize(h.MaxReplyBytes))
	case h.MaxOutputBytes > h.MaxReplyBytes:
		d.errorAt(path+".max_output_bytes", "%s is more than max_reply_bytes (%s); an output must fit in a reply",
			formatSize(h.MaxOutputBytes), formatSize(h.MaxReplyBytes))
	}
	if h.SHA256 != "" {
		want := strings.ToLower(h.SHA256)
		b, err := hex.DecodeString(want)
		switch {
		case err != nil || len(b) != sha256.Size:
			d.errorAt(path+".sha256", "must be 64 hexadecimal digits (sha256sum prints them)")
			return
		case h.Builtin != "":
			d.errorAt(path+".sha256", "builtin handlers are part of the weir binary; sha256 pins plugin files")
			return
		}
		h.SHA256 = want
		if !d.opts.skipFileChecks && h.PluginPath != "" {
			if got, err := FileSHA256(h.PluginPath); err == nil && got != want {
				d.errorAt(path+".sha256", "%s has sha256 %s, not the pinned %s; the plugin file changed", h.PluginPath, got, want)
			}
		}
	}
	if h.PluginPath != "" && !d.opts.skipFileChecks && runtime.GOOS != "windows" {
		if fi, err := os.Stat(h.PluginPath); err == nil && fi.Mode().Perm()&0o002 != 0 {
			d.warnAt(path+".plugin", "%s is writable by every user of this machine, who could replace the handler; chmod o-w it (and pin it with sha256)", h.PluginPath)
		} else if err == nil {
			dir := filepath.Dir(h.PluginPath)
			if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
				d.warnAt(path+".plugin", "its directory %s is writable by every user of this machine, who could replace the handler; chmod o-w it (and pin it with sha256)", dir)
			}
		}
	}
}

// FileSHA256 returns the SHA-256 of the file at path, in lowercase hex.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// IsGoBinary reports whether the file at path is a Go executable (it has Go
// build information), whose go-plugin server supports automatic mTLS.
func IsGoBinary(path string) bool {
	_, err := buildinfo.ReadFile(path)
	return err == nil
}
