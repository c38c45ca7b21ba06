package dlq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

func newReplayer(t *testing.T, e *kafkasrc.Embedded, cfg ReplayConfig) *Replayer {
	t.Helper()
	cfg.Brokers = e.Addrs()
	cfg.Logger = testLogger(t)
	rp, err := NewReplayer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func run(t *testing.T, e *kafkasrc.Embedded, cfg ReplayConfig) *ReplaySummary {
	t.Helper()
	sum, err := newReplayer(t, e, cfg).Run(testCtx(t))
	if err != nil {
		t.Fatalf("replay: %v (summary so far %+v)", err, sum)
	}
	return sum
}

// manyFailed is n failed records of pipeline iot from readings/0 and /1.
func manyFailed(n int) []failed {
	fs := make([]failed, n)
	for i := range fs {
		fs[i] = failed{pipeline: "iot", class: "invalid_input", stream: "readings", partition: int32(i % 2), offset: int64(100 + i),
			key: "d-" + itoa(i), value: "v" + itoa(i), minute: i,
			headers: []record.Header{{Key: "trace", Value: []byte("t-" + itoa(i))}}}
	}
	return fs
}

func TestReplayRoundTripRestoresTheOriginalAndResumes(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 3), kafkasrc.WithTopic("readings", 2))
	fs := manyFailed(30)
	produceFailed(t, e, "dlq", 3, fs...)

	var progress []ReplayProgress
	sum := run(t, e, ReplayConfig{Topic: "dlq", Progress: func(p ReplayProgress) { progress = append(progress, p) }})
	if sum.Read != 30 || sum.Replayed != 30 || sum.SkippedByFilter != 0 || sum.Refused != 0 || sum.Invalid != 0 ||
		sum.ByDestination["readings"] != 30 || sum.Group != "weir-replay.dlq" || len(sum.Unfinished) != 0 {
		t.Fatalf("summary = %+v", sum)
	}
	if last := progress[len(progress)-1]; last.Read != 30 || last.Total != 30 || last.Replayed != 30 {
		t.Errorf("last progress = %+v, want 30 of 30 read and replayed", last)
	}

	got := readTopic(t, e, "readings")
	if len(got) != 30 {
		t.Fatalf("readings holds %d records, want 30", len(got))
	}
	byKey := map[string]failed{}
	for _, f := range fs {
		byKey[f.key] = f
	}
	for _, r := range got {
		f, ok := byKey[string(r.Key)]
		if !ok {
			t.Fatalf("unexpected record %q", r.Key)
		}
		delete(byKey, f.key)
		if string(r.Value) != f.value || r.Partition != f.partition {
			t.Errorf("%s: value %q in partition %d, want %q in the original partition %d", f.key, r.Value, r.Partition, f.value, f.partition)
		}
		if !r.Timestamp.Equal(f.envelope("x").Timestamp) {
			t.Errorf("%s: timestamp %v, want the original %v", f.key, r.Timestamp, f.envelope("x").Timestamp)
		}
		// Exactly: the original headers, then the two replay headers.
		want := []string{"trace=" + "t-" + strings.TrimPrefix(f.key, "d-"), HeaderReplayCount + "=1",
			HeaderReplaySourcePosition + "=" + fmt.Sprintf("readings/%d/%d", f.partition, f.offset)}
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		if !slices.Equal(hs, want) {
			t.Errorf("%s: headers %v, want %v", f.key, hs, want)
		}
	}
	for p, o := range committed(t, e, "weir-replay.dlq", "dlq") {
		if o != 10 {
			t.Errorf("group committed dlq/%d at %d, want 10 (the end)", p, o)
		}
	}

	// Resumable: a second run finds nothing new and produces nothing.
	sum = run(t, e, ReplayConfig{Topic: "dlq"})
	if sum.Read != 0 || sum.Replayed != 0 {
		t.Fatalf("second run: %+v, want nothing read or replayed", sum)
	}
	// New dead letters after that are replayed by the next run, alone.
	produceFailed(t, e, "dlq", 3, manyFailed(32)[30:]...)
	sum = run(t, e, ReplayConfig{Topic: "dlq"})
	if sum.Read != 2 || sum.Replayed != 2 {
		t.Fatalf("third run: %+v, want the 2 new records", sum)
	}
	if n := len(readTopic(t, e, "readings")); n != 32 {
		t.Fatalf("readings holds %d records, want 32", n)
	}
}

func TestReplayDryRunWritesAndCommitsNothing(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 2), kafkasrc.WithTopic("readings", 2))
	produceFailed(t, e, "dlq", 2, manyFailed(10)...)

	sum := run(t, e, ReplayConfig{Topic: "dlq", DryRun: true, Filter: Filter{Key: regexp.MustCompile(`^d-[0-4]$`)}})
	if !sum.DryRun || sum.Read != 10 || sum.Replayed != 5 || sum.SkippedByFilter != 5 || len(sum.ReplayedRecords) != 5 ||
		sum.ReplayedRecords[0].Destination != "readings" {
		t.Fatalf("dry run summary = %+v", sum)
	}
	if got := readTopic(t, e, "readings"); len(got) != 0 {
		t.Fatalf("dry run produced %d records", len(got))
	}
	if c := committed(t, e, sum.Group, "dlq"); len(c) != 0 {
		t.Fatalf("dry run committed %v", c)
	}
	// So the real run still replays them.
	if sum := run(t, e, ReplayConfig{Topic: "dlq", Filter: Filter{Key: regexp.MustCompile(`^d-[0-4]$`)}}); sum.Replayed != 5 {
		t.Fatalf("replay after the dry run: %+v, want 5 replayed", sum)
	}
	// A dry run of the same replay now reports nothing to do.
	if sum := run(t, e, ReplayConfig{Topic: "dlq", DryRun: true, Filter: Filter{Key: regexp.MustCompile(`^d-[0-4]$`)}}); sum.Read != 0 {
		t.Fatalf("dry run after the replay: %+v, want nothing to read", sum)
	}
}

// A record that keeps failing comes back with its replay count; at
// --max-replays it is refused, and committed so that it is not seen again.
func TestReplayRefusesRecordsReplayedMaxTimes(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1), kafkasrc.WithTopic("readings", 1))
	fs := manyFailed(3)
	for i := range fs {
		fs[i].headers = append(fs[i].headers, record.Header{Key: HeaderReplayCount, Value: []byte(itoa(i + 1))})
	}
	produceFailed(t, e, "dlq", 1, fs...) // replay counts 1, 2, 3

	sum := run(t, e, ReplayConfig{Topic: "dlq", MaxReplays: 2})
	if sum.Replayed != 1 || sum.Refused != 2 || len(sum.RefusedRecords) != 2 || sum.RefusedRecords[0].Offset != 1 ||
		!strings.Contains(sum.RefusedRecords[0].Reason, "replayed 2 times") {
		t.Fatalf("summary = %+v, want d-0 replayed, d-1 and d-2 refused", sum)
	}
	got := readTopic(t, e, "readings")
	if len(got) != 1 || string(got[0].Key) != "d-0" {
		t.Fatalf("replayed %v, want d-0 only", keys(got))
	}
	if n, _ := header(got[0], HeaderReplayCount); n != "2" {
		t.Fatalf("replay count = %q, want 2 (one more than before)", n)
	}
	if c := committed(t, e, "weir-replay.dlq", "dlq"); c[0] != 3 {
		t.Fatalf("committed %v, want dlq/0 at 3: refused records are committed too", c)
	}
	if sum := run(t, e, ReplayConfig{Topic: "dlq", MaxReplays: 5}); sum.Read != 0 {
		t.Fatalf("the refused records were seen again: %+v", sum)
	}
}

func TestReplayFilters(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 2))
	produceFailed(t, e, "dlq", 2, twoPipelines...)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for i, tc := range []struct {
		name   string
		filter Filter
		want   []string // keys replayed ("" is the null key)
	}{
		{"none", Filter{}, []string{"", "d-1", "d-2", "d-3", "d-4", "d-5"}},
		{"pipeline", Filter{Pipeline: "billing"}, []string{""}},
		{"class", Filter{ErrorClass: "timeout"}, []string{"d-3", "d-4"}},
		{"pipeline and class", Filter{Pipeline: "iot", ErrorClass: "invalid_input"}, []string{"d-1", "d-2", "d-5"}},
		{"key", Filter{Key: regexp.MustCompile(`^d-[12]$`)}, []string{"d-1", "d-2"}},
		{"since", Filter{Since: at(3)}, []string{"d-1", "d-3", "d-5"}},
		{"until (exclusive)", Filter{Until: at(2)}, []string{"", "d-2"}},
		{"since and until", Filter{Since: at(2), Until: at(4)}, []string{"d-1", "d-4"}},
		{"nothing", Filter{Pipeline: "nope"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case has its own filter, so its own default group: it
			// sees every record whatever the cases before it committed.
			to := "out-" + itoa(i)
			produce(t, newClient(t, e, kgo.AllowAutoTopicCreation()), &kgo.Record{Topic: to, Key: []byte("seed")})
			sum := run(t, e, ReplayConfig{Topic: "dlq", To: to, Filter: tc.filter})
			if sum.Read != 6 || sum.Replayed != int64(len(tc.want)) || sum.SkippedByFilter != int64(6-len(tc.want)) {
				t.Fatalf("summary = %+v, want %d replayed", sum, len(tc.want))
			}
			got := keys(readTopic(t, e, to))
			delete(got, "seed")
			var ks []string
			for k := range got {
				ks = append(ks, k)
			}
			slices.Sort(ks)
			if !slices.Equal(ks, tc.want) {
				t.Fatalf("replayed keys %q, want %q", ks, tc.want)
			}
		})
	}
}

// Records a filtered replay skipped are committed in its own group only: a
// replay with another filter still sees them.
func TestReplayWithAnotherFilterSeesWhatAnEarlierOneSkipped(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 2), kafkasrc.WithTopic("readings", 2), kafkasrc.WithTopic("invoices", 3))
	produceFailed(t, e, "dlq", 2, twoPipelines...)
	first := run(t, e, ReplayConfig{Topic: "dlq", Filter: Filter{ErrorClass: "timeout"}})
	second := run(t, e, ReplayConfig{Topic: "dlq", Filter: Filter{ErrorClass: "invalid_input"}})
	if first.Group == second.Group || first.Replayed != 2 || second.Replayed != 4 || second.SkippedByFilter != 2 {
		t.Fatalf("first %+v\nsecond %+v", first, second)
	}
	if sum := run(t, e, ReplayConfig{Topic: "dlq", Filter: Filter{ErrorClass: "timeout"}}); sum.Read != 0 {
		t.Fatalf("the first filter again: %+v, want nothing new", sum)
	}
	if n := len(readTopic(t, e, "invoices")); n != 1 {
		t.Fatalf("invoices holds %d, want the billing record", n)
	}
}

func TestReplayCountsRecordsThatAreNotEnvelopes(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1), kafkasrc.WithTopic("readings", 2))
	cl := newClient(t, e)
	produce(t, cl, manyFailed(1)[0].envelope("dlq"), &kgo.Record{Topic: "dlq", Value: []byte("junk")}, manyFailed(2)[1].envelope("dlq"))
	sum := run(t, e, ReplayConfig{Topic: "dlq"})
	if sum.Replayed != 2 || sum.Invalid != 1 || len(sum.InvalidRecords) != 1 || sum.InvalidRecords[0].Offset != 1 {
		t.Fatalf("summary = %+v, want 2 replayed and dlq/0@1 invalid", sum)
	}
	if c := committed(t, e, sum.Group, "dlq"); c[0] != 3 {
		t.Fatalf("committed %v, want dlq/0 at 3", c)
	}
}

func TestReplayToAMissingTopicFailsBeforeReading(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1), kafkasrc.WithoutAutoCreateTopics())
	produceFailed(t, e, "dlq", 1, manyFailed(2)...)
	rp := newReplayer(t, e, ReplayConfig{Topic: "dlq", To: "nope"})
	sum, err := rp.Run(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "To: topic nope does not exist") || sum.Read != 0 {
		t.Fatalf("err = %v, summary %+v", err, sum)
	}
	if c := committed(t, e, rp.Group(), "dlq"); len(c) != 0 {
		t.Fatalf("committed %v", c)
	}
}

// Stopping a replay (Ctrl-C) commits what was acknowledged; the next run
// replays the rest, and nothing twice.
func TestReplayStoppedCommitsWhatWasReplayed(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1), kafkasrc.WithTopic("readings", 2))
	produceFailed(t, e, "dlq", 1, manyFailed(10)...)
	ctx, cancel := context.WithCancel(testCtx(t))
	rp := newReplayer(t, e, ReplayConfig{Topic: "dlq", Progress: func(p ReplayProgress) {
		if p.Replayed > 0 {
			cancel()
		}
	}})
	rp.batch = 3
	sum, err := rp.Run(ctx)
	n := sum.Replayed
	if !errors.Is(err, context.Canceled) || n < 1 || n > 3 {
		t.Fatalf("err = %v, summary %+v; want canceled after the first batch (3 records at most)", err, sum)
	}
	if c := committed(t, e, "weir-replay.dlq", "dlq"); c[0] != n {
		t.Fatalf("committed %v, want dlq/0 at %d", c, n)
	}
	if sum := run(t, e, ReplayConfig{Topic: "dlq"}); sum.Replayed != 10-n {
		t.Fatalf("second run: %+v, want the other %d", sum, 10-n)
	}
	got := readTopic(t, e, "readings")
	if len(got) != 10 || len(keys(got)) != 10 {
		t.Fatalf("readings holds %d records, %d keys; want 10 once each", len(got), len(keys(got)))
	}
}

func TestNewReplayerNamesTheBadOption(t *testing.T) {
	ok := ReplayConfig{Brokers: []string{"b:9092"}, Topic: "dlq"}
	for _, tc := range []struct {
		name string
		edit func(*ReplayConfig)
		want string
	}{
		{"no brokers", func(c *ReplayConfig) { c.Brokers = nil }, "Brokers"},
		{"no topic", func(c *ReplayConfig) { c.Topic = "" }, "Topic"},
		{"negative rate", func(c *ReplayConfig) { c.Rate = -1 }, "Rate"},
		{"negative max replays", func(c *ReplayConfig) { c.MaxReplays = -1 }, "MaxReplays"},
		{"since after until", func(c *ReplayConfig) { c.Filter.Since, c.Filter.Until = t0, t0 }, "Filter.Since"},
		{"to the dlq", func(c *ReplayConfig) { c.To = "dlq" }, "To"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := NewReplayer(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
	rp, err := NewReplayer(ok)
	if err != nil || rp.cfg.MaxReplays != DefaultMaxReplays || rp.Group() != "weir-replay.dlq" {
		t.Fatalf("defaults: %+v, %v", rp, err)
	}
}

func TestDefaultGroupFollowsTheFilterAndDestination(t *testing.T) {
	base := DefaultGroup("dlq", "", Filter{})
	if base != "weir-replay.dlq" {
		t.Fatalf("unfiltered group = %q", base)
	}
	f := Filter{Pipeline: "iot", Key: regexp.MustCompile("^d-")}
	same := Filter{Pipeline: "iot", Key: regexp.MustCompile("^d-")}
	g := DefaultGroup("dlq", "", f)
	if !strings.HasPrefix(g, base+".") || g != DefaultGroup("dlq", "", same) {
		t.Fatalf("filtered groups %q and %q: want one name with a suffix", g, DefaultGroup("dlq", "", same))
	}
	others := []string{
		DefaultGroup("dlq", "", Filter{Pipeline: "iot2", Key: regexp.MustCompile("^d-")}),
		DefaultGroup("dlq", "staging", f),
		DefaultGroup("dlq", "staging", Filter{}),
		DefaultGroup("dlq", "", Filter{Since: t0}),
	}
	for _, o := range others {
		if o == g || o == base {
			t.Errorf("group %q is not distinct from %q and %q", o, g, base)
		}
	}
}

// A DLQ on another cluster than the pipeline's source (dlq.kafka.brokers):
// records go back to the source cluster.
func TestReplayToAnotherCluster(t *testing.T) {
	dlqCluster := startBroker(t, kafkasrc.WithTopic("dlq", 1))
	source := startBroker(t, kafkasrc.WithTopic("readings", 2))
	produceFailed(t, dlqCluster, "dlq", 1, manyFailed(4)...)
	sum := run(t, dlqCluster, ReplayConfig{Topic: "dlq", ToBrokers: source.Addrs()})
	if sum.Replayed != 4 {
		t.Fatalf("summary = %+v", sum)
	}
	if n := len(readTopic(t, source, "readings")); n != 4 {
		t.Fatalf("the source cluster's readings holds %d records, want 4", n)
	}
	if c := committed(t, dlqCluster, sum.Group, "dlq"); c[0] != 4 {
		t.Fatalf("committed %v on the DLQ cluster, want dlq/0 at 4", c)
	}
}

// A record that cannot be produced stops the run: what was acknowledged
// before it is committed, nothing from it on, so the next run retries it.
func TestReplayFailureCommitsNothingPastIt(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1), kafkasrc.WithTopic("readings", 2))
	fs := manyFailed(3)
	fs[1].partition = 5 // readings has 2 partitions
	produceFailed(t, e, "dlq", 1, fs...)
	sum, err := newReplayer(t, e, ReplayConfig{Topic: "dlq"}).Run(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "replaying dlq/0@1 to readings") {
		t.Fatalf("err = %v, want it to name dlq/0@1", err)
	}
	if sum.Replayed != 2 {
		t.Fatalf("summary = %+v, want the 2 others acknowledged", sum)
	}
	if c := committed(t, e, "weir-replay.dlq", "dlq"); c[0] != 1 {
		t.Fatalf("committed %v, want dlq/0 at 1: not past the failed record", c)
	}
}

// Records from a source that is not Kafka (a Kinesis shard) have no Kafka
// partition to go back to: they are counted invalid unless sent --to a topic.
func TestReplayOfANonKafkaSourceNeedsTo(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("dlq", 1), kafkasrc.WithTopic("out", 1))
	cl := newClient(t, e)
	m := Envelope(&record.Record{Key: []byte("k"), Value: []byte("v"), Partition: record.Partition{Stream: "clicks", ID: "shardId-000000000001"},
		Position: record.Position{Seq: "4963"}}, Failure{Class: "invalid_input"}, Origin{Pipeline: "p"})
	r := &kgo.Record{Topic: "dlq", Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	produce(t, cl, r)
	if sum := run(t, e, ReplayConfig{Topic: "dlq", DryRun: true}); sum.Invalid != 1 || !strings.Contains(sum.InvalidRecords[0].Reason, "--to") {
		t.Fatalf("summary = %+v, want it invalid, pointing at --to", sum)
	}
	sum := run(t, e, ReplayConfig{Topic: "dlq", To: "out"})
	got := readTopic(t, e, "out")
	if sum.Replayed != 1 || len(got) != 1 {
		t.Fatalf("summary = %+v, out holds %d", sum, len(got))
	}
	if pos, _ := header(got[0], HeaderReplaySourcePosition); pos != "clicks/shardId-000000000001/4963" {
		t.Fatalf("source position = %q", pos)
	}
}
