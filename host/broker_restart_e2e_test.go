//go:build linux

package host_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/loadtest"
)

// EnvKafkaCtl names the script that starts and stops real Kafka brokers
// (testenv/kafka/kafka.sh); scripts/test sets it for its real-Kafka pass.
const envKafkaCtl = "WEIR_TEST_KAFKA_CTL"

// kafkaCluster starts a real Kafka cluster of its own for t with the
// script named by WEIR_TEST_KAFKA_CTL, so that stopping its brokers
// disturbs no other test, and stops it when t ends. Without the script the
// test is skipped: kfake cannot be stopped and restarted.
func kafkaCluster(t *testing.T, brokers int) (bootstrap string, ctl func(args ...string)) {
	t.Helper()
	script := os.Getenv(envKafkaCtl)
	if script == "" {
		t.Skipf("needs a real Kafka it can stop: set %s to testenv/kafka/kafka.sh (scripts/test does in its real-Kafka pass; the in-process kfake broker cannot be restarted)", envKafkaCtl)
	}
	dir := filepath.Join(t.TempDir(), "kafka")
	run := func(args ...string) string {
		t.Helper()
		args = append(args, "--dir", dir)
		cmd := exec.Command(script, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, stderr.Bytes())
		}
		t.Logf("%s %s (%.1fs)", filepath.Base(script), strings.Join(args[:len(args)-2], " "), time.Since(start).Seconds())
		return strings.TrimSpace(stdout.String())
	}
	bootstrap = run("start", "--brokers", strconv.Itoa(brokers))
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(script, "logs", "--dir", dir)
			out, _ := cmd.CombinedOutput()
			t.Logf("the end of the brokers' logs:\n%s", out)
		}
		run("stop")
	})
	return bootstrap, func(args ...string) { run(args...) }
}

// The broker goes away for 10 seconds in the middle of a run and comes back
// on the same address: weir rides it out on its own (writes, commits and the
// group are retried; the host never stops) and nothing is lost. Records in
// flight at the outage may be handled twice (the commit of their offsets
// may have failed), but per key the output is in input order once repeats
// are dropped, and the group ends committed to the end.
//
// Subtests: the only broker of a one-node cluster (a full outage), and one
// node of three (its partitions' leadership and perhaps the group
// coordinator move, and move back).
func TestBrokerRestart(t *testing.T) {
	if os.Getenv(envKafkaCtl) == "" {
		kafkaCluster(t, 1) // skips, with the reason
	}
	for _, tc := range []struct {
		name    string
		brokers int
	}{
		{"only-broker", 1},
		{"one-of-three", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.brokers > 1 {
				t.Skip("-short: the one-node outage covers the restart")
			}
			testBrokerRestart(t, tc.brokers)
		})
	}
}

func testBrokerRestart(t *testing.T, brokers int) {
	const n, keys, rate = 60_000, 600, 3_000 // ~20s of input
	bootstrap, ctl := kafkaCluster(t, brokers)
	t.Setenv("WEIR_TEST_KAFKA", bootstrap) // newEnv's broker
	e := newEnv(t, 6)
	out := readOutputs(t, e, n)

	produced := make(chan error, 1)
	go func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(5*time.Millisecond))
		if err != nil {
			produced <- err
			return
		}
		defer cl.Close()
		// Produce blocks through the outage: kgo retries until the broker
		// is back.
		for from := 0; from < n; from += rate / 10 {
			err := loadtest.Produce(context.Background(), cl, e.in, rate/10, func(i int) *kgo.Record {
				id := from + i
				return &kgo.Record{Key: []byte("k" + strconv.Itoa(id%keys)), Value: []byte(strconv.Itoa(id))}
			})
			if err != nil {
				produced <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		produced <- nil
	}()

	r := e.start(e.config(""), "h1", nil)
	waitFor(t, func() bool { return r.completed() > n/5 }, "a fifth of the input handled")
	ctl("stop-broker", "1")
	down := time.Now()
	time.Sleep(10 * time.Second)
	select {
	case err := <-r.done:
		t.Fatalf("the host stopped while the broker was down: %v", err)
	default:
	}
	atRestart := r.completed()
	ctl("start-broker", "1")
	t.Logf("broker 1 was down for %.1fs", time.Since(down).Seconds())
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for out.unique() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // let late duplicates arrive
	if r.completed() <= atRestart {
		t.Error("no record completed after the broker came back")
	}
	r.stop(t)
	dups := verifyAtLeastOnce(t, out.drain(t, e), n)
	t.Logf("%d duplicate outputs (records whose commit was lost to the outage)", dups)
	e.requireCommittedToEnd()
}

// verifyAtLeastOnce checks that each of the ids 0..n-1 is in recs and that,
// per key, the ids increase once repeated ids are dropped; it returns how
// many outputs were repeats.
func verifyAtLeastOnce(t *testing.T, recs []*kgo.Record, n int) int {
	t.Helper()
	seen := make([]bool, n)
	last := map[string]int{}
	dups, orderBreaks := 0, 0
	for _, r := range recs {
		id, err := strconv.Atoi(string(r.Value))
		if err != nil || id < 0 || id >= n {
			t.Fatalf("output value %q is not an input id", r.Value)
		}
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		if prev, ok := last[string(r.Key)]; ok && id <= prev && orderBreaks < 5 {
			orderBreaks++
			t.Errorf("key %s: id %d after %d (order broken)", r.Key, id, prev)
		}
		last[string(r.Key)] = id
	}
	var lost []int
	for id, ok := range seen {
		if !ok {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d ids lost, first: %v", len(lost), lost[:min(len(lost), 10)])
	}
	return dups
}
