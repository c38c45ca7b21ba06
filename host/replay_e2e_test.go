package host_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/loadtest"
)

// buggy is the echo handler with a bug: it rejects every record whose value
// contains "77" as bad input.
const buggy = `{ plugin: "builtin:echo", env: { WEIR_FAIL_ON: "77" } }`

// waitCount waits until topic holds want records.
func (e *env) waitCount(topic string, want int64) {
	e.t.Helper()
	waitFor(e.t, func() bool {
		n, err := loadtest.Count(context.Background(), e.adm, topic)
		return err == nil && n >= want
	}, "records in "+topic)
}

func (e *env) replay(cfg dlq.ReplayConfig) *dlq.ReplaySummary {
	e.t.Helper()
	cfg.Brokers = e.brokers
	r, err := dlq.NewReplayer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := r.Run(ctx)
	if err != nil {
		e.t.Fatalf("replay: %v", err)
	}
	return sum
}

// The replay round trip: a buggy handler dead-letters some records; the
// handler is fixed; a dry run writes nothing; the replay brings every
// record to the output exactly once; a second replay replays nothing.
func TestReplayRoundTrip(t *testing.T) {
	const n, keys = 1000, 50
	e := newEnv(t, 2)
	e.produce(0, n, keys)
	bad := 0
	for i := 0; i < n; i++ {
		if strings.Contains(strconv.Itoa(i), "77") {
			bad++
		}
	}
	dlqTopic := e.out + "-dlq"
	withDLQ := "    dlq: { kafka: { topic: " + dlqTopic + " } }\n"

	h := e.start(e.configWith(buggy, withDLQ), "buggy", nil)
	e.waitCount(dlqTopic, int64(bad))
	e.waitCount(e.out, int64(n-bad))
	h.stop(t)

	dry := e.replay(dlq.ReplayConfig{Topic: dlqTopic, DryRun: true})
	if dry.Replayed != int64(bad) {
		t.Fatalf("dry run would replay %d, want %d", dry.Replayed, bad)
	}
	if c, _ := loadtest.Count(context.Background(), e.adm, e.in); c != n {
		t.Fatalf("the dry run wrote to the source topic: it holds %d records", c)
	}

	fixed := e.start(e.config(withDLQ), "fixed", nil)
	sum := e.replay(dlq.ReplayConfig{Topic: dlqTopic})
	if sum.Replayed != int64(bad) || sum.ByDestination[e.in] != int64(bad) {
		t.Fatalf("replay: %+v, want %d replayed to %s", sum, bad, e.in)
	}
	outs := e.consume(n, time.Minute)
	fixed.stop(t)
	seen := map[string]int{}
	for _, o := range outs {
		seen[string(o.Value)]++
	}
	for i := 0; i < n; i++ {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Fatalf("id %d output %d times after the replay", i, c)
		}
	}
	if again := e.replay(dlq.ReplayConfig{Topic: dlqTopic}); again.Replayed != 0 || again.Read != 0 {
		t.Fatalf("a second replay replayed %d (read %d), want nothing", again.Replayed, again.Read)
	}
}

// A record that keeps failing cannot loop: replayed into the still-buggy
// pipeline it is dead-lettered again, and the next replay refuses it.
func TestReplayRefusesALoopingRecord(t *testing.T) {
	const n = 200
	e := newEnv(t, 1)
	e.produce(0, n, 10)
	dlqTopic := e.out + "-dlq"
	h := e.start(e.configWith(buggy, "    dlq: { kafka: { topic: "+dlqTopic+" } }\n"), "buggy", nil)
	const bad = 2 // 77 and 177
	e.waitCount(dlqTopic, bad)
	first := e.replay(dlq.ReplayConfig{Topic: dlqTopic, MaxReplays: 1})
	if first.Replayed != bad {
		t.Fatalf("first replay: %+v", first)
	}
	e.waitCount(dlqTopic, 2*bad) // dead-lettered again, with weir.replay-count 1
	second := e.replay(dlq.ReplayConfig{Topic: dlqTopic, MaxReplays: 1})
	h.stop(t)
	if second.Replayed != 0 || second.Refused != bad {
		t.Fatalf("second replay replayed %d, refused %d; want 0 and %d", second.Replayed, second.Refused, bad)
	}
}
