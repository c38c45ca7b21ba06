package host_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/plugins/builtin"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// kcatPath returns the kcat binary, or ends the test: under CI (CI set)
// a missing kcat fails it, since scripts/test installs kcat and a skip
// there would hide that the third-party client never ran; elsewhere it
// skips.
func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err == nil {
		return p
	}
	const msg = "kcat is not on PATH: install it (Debian package kcat; scripts/test does) to check weir against a Kafka client that none of us wrote"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// kcat runs the kcat binary with args and stdin, and returns its standard
// output; it fails the test on an error or after within.
func kcat(t *testing.T, within time.Duration, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcatPath(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// The input is produced by kcat (librdkafka: its own partitioner, batching
// and compression) and the output read back by kcat: every record is handled
// once, keys, values and headers come through unchanged, per-key order is
// kept, and the group is committed to the end. Runs against kfake and, in
// CI's second pass, against Apache Kafka.
func TestKcatEndToEnd(t *testing.T) {
	kcatPath(t)
	const n, keys = 20_000, 200
	e := newEnv(t, 6)
	brokers := strings.Join(e.brokers, ",")

	var in bytes.Buffer
	for id := 0; id < n; id++ {
		fmt.Fprintf(&in, "k%d\t%d\n", id%keys, id)
	}
	kcat(t, time.Minute, in.Bytes(), "-P", "-q", "-b", brokers, "-t", e.in, "-K", "\t",
		"-H", "origin=kcat", "-X", "compression.codec=lz4", "-X", "linger.ms=5")

	// kcat fails at once on a topic that does not exist yet.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, 3, e.out); err != nil {
		t.Fatal(err)
	}
	r := e.start(e.config(""), "h1", nil)
	// Read until n outputs arrived (kcat exits after -c messages), then stop
	// the host and read the whole topic once more to catch duplicates.
	kcat(t, 2*time.Minute, nil, "-C", "-q", "-b", brokers, "-t", e.out, "-o", "beginning", "-c", strconv.Itoa(n), "-f", "%k\n")
	r.stop(t)
	out := kcat(t, time.Minute, nil, "-C", "-q", "-b", brokers, "-t", e.out, "-o", "beginning", "-e",
		"-f", "%k\t%s\t%h\t%p\n")

	// kcat's producer does not keep the order of the lines it reads (records
	// that wait for the topic's metadata can be overtaken), so each key's
	// order is taken from the input topic as kcat reads it back.
	in2 := kcat(t, time.Minute, nil, "-C", "-q", "-b", brokers, "-t", e.in, "-o", "beginning", "-e", "-f", "%k\t%s\n")
	want := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(in2))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "\t")
		want[k] = append(want[k], v)
	}
	got := map[string][]string{}
	total, badHeaders := 0, 0
	sc = bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 {
			t.Fatalf("kcat printed %q; want key, value, headers and partition", sc.Text())
		}
		// The input's headers, then the version of the handler that made it.
		if want := "origin=kcat,weir.handler.version=" + builtin.Version; f[2] != want && badHeaders < 5 {
			badHeaders++
			t.Errorf("output %s/%s has headers %q, want %q", f[0], f[1], f[2], want)
		}
		got[f[0]] = append(got[f[0]], f[1])
		total++
	}
	if total != n {
		t.Errorf("kcat read %d outputs, want %d (one per input)", total, n)
	}
	if len(want) != keys {
		t.Errorf("the input holds %d keys, want %d", len(want), keys)
	}
	mismatches := 0
	for k, w := range want {
		if g := got[k]; !slices.Equal(g, w) && mismatches < 5 {
			mismatches++
			t.Errorf("key %s: outputs %v\nwant the input's order %v", k, firstStrings(g), firstStrings(w))
		}
	}
	e.requireCommittedToEnd()
}

func firstStrings(s []string) []string { return s[:min(len(s), 20)] }
