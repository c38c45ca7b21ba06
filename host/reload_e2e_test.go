package host_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// reloadConfig is a config file with one echo pipeline per name, each
// reading NAME-in and writing NAME-out (names get the test's suffix).
func reloadConfig(brokers []string, suffix string, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nkafka: { brokers: [%s] }\nadmin: { addr: off }\npipelines:\n", strings.Join(brokers, ", "))
	for _, n := range names {
		fmt.Fprintf(&b, `  - name: %[1]s
    source: { kafka: { topics: [%[1]s-in-%[2]s], group: %[1]s-%[2]s } }
    batch: { max_wait: 5ms }
    handler: { plugin: "builtin:echo", instances: 1, env: { WEIR_ECHO_SINK: out } }
    sinks: { out: { kafka: { topic: %[1]s-out-%[2]s } } }
    shutdown_timeout: 10s
`, n, suffix)
	}
	return b.String()
}

// Reload: a running `weir run` is given a config without pipeline a and
// with a new pipeline b, and SIGHUP. b starts and handles its records; a
// drains, commits and leaves its group. A broken config sent the same way
// is rejected, and the running pipelines keep going; a changed pipeline
// restarts with its new config and loses nothing.
func TestReloadAddsAndRemovesPipelines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the weir binary; the non-short pass runs it")
	}
	bin := buildWeir(t)
	brokers := broker(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := func(p, dir string) string { return p + "-" + dir + "-" + suffix }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, 2, topic("a", "in"), topic("b", "in")); err != nil {
		t.Fatal(err)
	}
	produce := func(p string, from, n int) {
		t.Helper()
		err := loadtest.Produce(context.Background(), cl, topic(p, "in"), n, func(i int) *kgo.Record {
			return &kgo.Record{Key: []byte(fmt.Sprint(from + i)), Value: []byte(fmt.Sprint(from + i))}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	outputs := func(p string, want int) int {
		t.Helper()
		return len(readTopic(t, brokers, topic(p, "out"), want, time.Minute))
	}

	dir := keepOnFailure(t, "weir-reload-")
	cfgPath := filepath.Join(dir, "weir.yaml")
	write := func(s string) {
		t.Helper()
		// Replace the file in one step, as an editor or a deploy does.
		if err := os.WriteFile(cfgPath+".new", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".new", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(brokers, suffix, "a"))
	w := startWeir(t, bin, cfgPath, dir, "w1")
	produce("a", 0, 1000)
	if got := outputs("a", 1000); got != 1000 {
		t.Fatalf("pipeline a output %d records before the reload, want 1000", got)
	}

	// Remove a, add b.
	write(reloadConfig(brokers, suffix, "b"))
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	produce("b", 0, 1000)
	if got := outputs("b", 1000); got != 1000 {
		t.Fatalf("pipeline b output %d records after the reload added it, want 1000", got)
	}
	// a drained: its group is empty and committed to the end.
	waitFor(t, func() bool {
		groups, err := adm.DescribeGroups(context.Background(), "a-"+suffix)
		return err == nil && groups["a-"+suffix].State == "Empty"
	}, "pipeline a's consumer group to be left empty")
	lags, err := loadtest.Uncommitted(context.Background(), adm, "a-"+suffix, topic("a", "in"))
	if err != nil || len(lags) > 0 {
		t.Fatalf("pipeline a did not commit to the end before stopping: %+v, %v", lags, err)
	}

	// A broken config is rejected; b keeps going.
	write("version: 1\npipelines: [ {name: b, colour: blue} ]\n")
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	produce("b", 1000, 500)
	if got := outputs("b", 1500); got != 1500 {
		t.Fatalf("pipeline b output %d records after a rejected reload, want 1500", got)
	}
	select {
	case <-w.exited:
		t.Fatalf("weir exited after a broken config was sent; the end of its log:\n%s", strings.Join(w.tail, "\n"))
	default:
	}

	// A changed pipeline restarts with its new config, losing nothing.
	write(strings.Replace(reloadConfig(brokers, suffix, "b"), "max_wait: 5ms", "max_wait: 20ms", 1))
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	produce("b", 1500, 500)
	if got := outputs("b", 2000); got != 2000 {
		t.Fatalf("pipeline b output %d records after its config changed, want 2000", got)
	}
	w.stop(t)
	log, err := os.ReadFile(filepath.Join(dir, "w1.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"message":"reload applied"`, `"removed":["a"]`, `"added":["b"]`,
		"reload: the new config is rejected; the running one continues", `colour`, `"restarted":["b"]`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the log lacks %s", want)
		}
	}
}
