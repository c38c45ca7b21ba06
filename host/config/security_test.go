package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kafkaFile is a valid file on a real (not embedded) cluster; extra is put
// under its kafka section.
func kafkaFile(kafkaExtra, handlerExtra string) string {
	return `version: 1
kafka:
  brokers: ["b:9092"]
` + kafkaExtra + `pipelines:
  - name: p
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop"` + handlerExtra + `}
    sinks: {out: {kafka: {topic: out}}}
`
}

func TestSecurityFieldProblems(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		kafka, handler string
		want           string // "" = valid
	}{
		"literal sasl password": {kafka: "  sasl: {mechanism: PLAIN, username: u, password: hunter2}\n  tls: {}\n",
			want: "weir.yaml:4: kafka.sasl.password: a password must not be written in the config file; write ${VAR}"},
		"password from env": {kafka: "  sasl: {mechanism: SCRAM-SHA-256, username: u, password: \"${PW}\"}\n"},
		"password unset":    {kafka: "  sasl: {mechanism: SCRAM-SHA-256, username: u, password: \"${NOPE:-}\"}\n", want: "kafka.sasl.password: is empty"},
		"no password":       {kafka: "  sasl: {mechanism: SCRAM-SHA-512, username: u}\n", want: "kafka.sasl.password: is required; write password: ${VAR} or password_file: PATH"},
		"both passwords":    {kafka: "  sasl: {mechanism: SCRAM-SHA-512, username: u, password: \"${PW}\", password_file: " + pw + "}\n", want: "kafka.sasl.password_file: set password or password_file, not both"},
		"missing file":      {kafka: "  sasl: {mechanism: SCRAM-SHA-512, username: u, password_file: nope}\n", want: "kafka.sasl.password_file: cannot be read: "},
		"no username":       {kafka: "  sasl: {mechanism: PLAIN, password: \"${PW}\"}\n  tls: {}\n", want: "kafka.sasl.username: is required for PLAIN"},
		"bad mechanism":     {kafka: "  sasl: {mechanism: GSSAPI}\n", want: `kafka.sasl.mechanism: "GSSAPI" is not a mechanism`},
		"iam with password": {kafka: "  sasl: {mechanism: AWS_MSK_IAM, password: \"${PW}\"}\n  tls: {}\n", want: "kafka.sasl.password: AWS_MSK_IAM takes no password"},
		"iam without tls":   {kafka: "  sasl: {mechanism: AWS_MSK_IAM}\n", want: "AWS_MSK_IAM needs kafka.tls"},
		"cert without key":  {kafka: "  tls: {cert_file: " + pw + "}\n", want: "kafka.tls.cert_file: cert_file and key_file go together"},
		"missing ca":        {kafka: "  tls: {ca_file: nope.pem}\n", want: "kafka.tls.ca_file: cannot be read: "},
		"bad sha256":        {handler: ", sha256: abc", want: "handler.sha256: must be 64 hexadecimal digits"},
		"sha256 on builtin": {handler: ", sha256: " + strings.Repeat("ab", 32), want: "sha256 pins plugin files"},
		"bad mtls":          {handler: ", mtls: maybe", want: `handler.mtls: "maybe" is not one of auto, on, off`},
		"outputs zero":      {handler: ", max_outputs_per_record: 0", want: "handler.max_outputs_per_record: must be at least 1"},
		"tiny reply":        {handler: ", max_reply_bytes: 100", want: "handler.max_reply_bytes: 100B is not between 4KiB and 2GiB-1"},
		"output over reply": {handler: ", max_reply_bytes: 1MiB, max_output_bytes: 2MiB", want: "handler.max_output_bytes: 2MiB is more than max_reply_bytes (1MiB)"},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Parse(filepath.Join(dir, "weir.yaml"), []byte(kafkaFile(tc.kafka, tc.handler)), env(map[string]string{"PW": "s3cret"}))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if f.Kafka.SASL.Password != "s3cret" {
					t.Fatalf("password = %q", f.Kafka.SASL.Password)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "from-file") {
				t.Fatalf("the error shows a password: %v", err)
			}
		})
	}
}

func TestPasswordFileAndWarnings(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := kafkaFile("  sasl: {mechanism: PLAIN, username: u, password_file: pw}\n  tls: {insecure_skip_verify: true}\n", "") +
		"redis: {addr: \"r:6379\", password_file: pw}\n"
	f, err := Parse(filepath.Join(dir, "weir.yaml"), []byte(src), WithLookupEnv(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if f.Kafka.SASL.Password != "from-file" || f.Redis.Password != "from-file" {
		t.Fatalf("passwords from the file = %q, %q", f.Kafka.SASL.Password, f.Redis.Password)
	}
	var ws []string
	for _, w := range f.Warnings {
		ws = append(ws, w.Error())
	}
	all := strings.Join(ws, "\n")
	for _, want := range []string{
		"weir.yaml:5: kafka.tls.insecure_skip_verify: broker certificates are not verified",
		"weir.yaml:4: kafka.sasl.password_file: " + pw + " is readable by every user",
		"redis.password_file: " + pw + " is readable by every user",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings:\n%s\nwant one containing %q", all, want)
		}
	}
	// PLAIN over plaintext
	f, err = Parse("weir.yaml", []byte(kafkaFile("  sasl: {mechanism: PLAIN, username: u, password: \"${PW}\"}\n", "")), env(map[string]string{"PW": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0].Error(), "PLAIN without kafka.tls sends the password in clear text") {
		t.Fatalf("warnings = %v", f.Warnings)
	}
}

func TestPluginPinAndPermissions(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "handler")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := FileSHA256(plugin)
	if err != nil {
		t.Fatal(err)
	}
	src := func(extra string) []byte {
		return []byte(strings.Replace(kafkaFile("", extra), `"builtin:noop"`, "./handler", 1))
	}
	f, err := Parse(filepath.Join(dir, "weir.yaml"), src(", sha256: "+strings.ToUpper(sum)), WithLookupEnv(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if f.Pipelines[0].Handler.SHA256 != sum || len(f.Warnings) != 0 {
		t.Fatalf("sha256 = %q, warnings %v", f.Pipelines[0].Handler.SHA256, f.Warnings)
	}
	other := strings.Repeat("0", 64)
	_, err = Parse(filepath.Join(dir, "weir.yaml"), src(", sha256: "+other), WithLookupEnv(noEnv))
	if err == nil || !strings.Contains(err.Error(), plugin+" has sha256 "+sum+", not the pinned "+other) {
		t.Fatalf("err = %v, want both digests", err)
	}
	if err := os.Chmod(plugin, 0o757); err != nil {
		t.Fatal(err)
	}
	f, err = Parse(filepath.Join(dir, "weir.yaml"), src(""), WithLookupEnv(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0].Error(), "handler.plugin: "+plugin+" is writable by every user") {
		t.Fatalf("warnings = %v", f.Warnings)
	}
}

func TestRedisCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Parse(filepath.Join(dir, "weir.yaml"), []byte(kafkaFile("", "")+"redis: {addr: \"r:6379\", ca_file: ca.pem}\n"), WithLookupEnv(noEnv))
	if err == nil || !strings.Contains(err.Error(), "redis.ca_file: "+bad+" holds no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
	_, err = Parse(filepath.Join(dir, "weir.yaml"), []byte(kafkaFile("  tls: {ca_file: ca.pem}\n", "")), WithLookupEnv(noEnv))
	if err == nil || !strings.Contains(err.Error(), "kafka.tls.ca_file: "+bad+" holds no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchMaxWait(t *testing.T) {
	for name, tc := range map[string]struct {
		kafka string
		want  string // "" = valid
	}{
		"default":   {},
		"set":       {kafka: "  fetch_max_wait: 250ms\n"},
		"too short": {kafka: "  fetch_max_wait: 5ms\n", want: "weir.yaml:4: kafka.fetch_max_wait: 5ms is not between 10ms (the least franz-go allows) and 5s"},
		"too long":  {kafka: "  fetch_max_wait: 1m\n", want: "weir.yaml:4: kafka.fetch_max_wait: 1m0s is not between 10ms"},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Parse("weir.yaml", []byte(kafkaFile(tc.kafka, "")), env(nil))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := 10 * time.Millisecond
			if tc.kafka != "" {
				want = 250 * time.Millisecond
			}
			if f.Kafka.FetchMaxWait != want {
				t.Fatalf("fetch_max_wait %v, want %v", f.Kafka.FetchMaxWait, want)
			}
		})
	}
}
