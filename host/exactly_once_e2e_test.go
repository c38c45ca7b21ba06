package host_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// readCommitted reads only records of committed transactions.
var readCommitted = kgo.FetchIsolationLevel(kgo.ReadCommitted())

// Under delivery: exactly_once, hosts join and leave while records flow.
// Each rebalance aborts the transactions in progress, so records are handled
// again and their outputs written again; a read_committed reader of the
// output must still see every id exactly once, in per-key order, and the
// dead letters once each. The read_uncommitted count shows that aborts did
// happen (otherwise the test proves nothing about them).
func TestExactlyOnceThroughRebalances(t *testing.T) {
	n, keys := 40_000, 400
	if testing.Short() {
		n = 15_000
	}
	e := newEnv(t, 8)
	dlqTopic := e.out + "-dlq"
	// Ids containing "97" fail for good: each must reach the DLQ once, not
	// the output.
	cfg := e.configWith(`{ plugin: "builtin:echo", instances: 2, timeout: 10s, env: { WEIR_ECHO_SINK: out, WEIR_FAIL_ON: "97" } }`,
		"    delivery: exactly_once\n    commit_interval: 200ms\n    dlq: { kafka: { topic: "+dlqTopic+" }, max_ratio: 1 }\n")
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < n; i += 1000 {
			e.produce(i, 1000, keys)
			time.Sleep(150 * time.Millisecond)
		}
	}()
	h1 := e.start(cfg, "h1", nil)
	waitFor(t, func() bool { return h1.completed() > int64(n/8) }, "first records handled")
	h2 := e.start(cfg, "h2", nil)
	waitFor(t, func() bool { return h2.completed() > 0 }, "the second host to take over partitions")
	h3 := e.start(cfg, "h3", nil)
	waitFor(t, func() bool { return h3.completed() > 0 }, "the third host to take over partitions")
	h1.stop(t)
	<-produced

	poison := func(id int) bool { return strings.Contains(strconv.Itoa(id), "97") }
	want, dead := 0, 0
	for id := 0; id < n; id++ {
		if poison(id) {
			dead++
		} else {
			want++
		}
	}
	recs := e.consume(want, 2*time.Minute, readCommitted)
	h2.stop(t)
	h3.stop(t)

	seen := make([]int, n)
	last := map[string]int{}
	for _, r := range recs {
		id, err := strconv.Atoi(string(r.Value))
		if err != nil || id < 0 || id >= n {
			t.Fatalf("output %q is not an input id", r.Value)
		}
		if poison(id) {
			t.Fatalf("id %d failed for good but reached the output", id)
		}
		if seen[id]++; seen[id] > 1 {
			t.Fatalf("id %d read twice with read_committed", id)
		}
		if prev, ok := last[string(r.Key)]; ok && prev > id {
			t.Fatalf("key %s: id %d after %d", r.Key, id, prev)
		}
		last[string(r.Key)] = id
	}
	for id := 0; id < n; id++ {
		if !poison(id) && seen[id] == 0 {
			for _, r := range e.consumeTopic(e.in, n, 5*time.Second) {
				if string(r.Value) == strconv.Itoa(id) {
					t.Logf("input %s at %d/%d", r.Value, r.Partition, r.Offset)
				}
			}
			t.Fatalf("id %d lost", id)
		}
	}
	e.requireCommittedToEnd()

	dl := e.consumeTopic(dlqTopic, dead, 30*time.Second, readCommitted)
	dlSeen := map[string]int{}
	for _, r := range dl {
		id := string(r.Value) // a dead letter keeps the record's value
		if dlSeen[id]++; dlSeen[id] > 1 {
			t.Fatalf("id %s dead-lettered twice", id)
		}
	}
	for id := 0; id < n; id++ {
		if poison(id) && dlSeen[strconv.Itoa(id)] == 0 {
			t.Errorf("id %d failed for good but is not in the DLQ", id)
			for _, r := range e.consumeTopic(dlqTopic, 1<<30, 3*time.Second) {
				if string(r.Value) == strconv.Itoa(id) {
					t.Logf("read_uncommitted: %s at %d/%d pid %d epoch %d ctrl %v", r.Value, r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch, r.Attrs.IsControl())
				}
			}
		}
	}
	all := e.consume(want, 10*time.Second)
	t.Logf("%d outputs read_committed; %d read_uncommitted (outputs of aborted transactions included)", len(recs), len(all))
}
