package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// weir runs the CLI with args and returns its standard output.
func weir(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	return out.String(), err
}

func TestDLQFlagsAreCheckedAndNamed(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	ok := []string{"dlq", "replay", "--brokers", "127.0.0.1:1", "--topic", "t"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad key", append(ok, "--key", "d-(1"), `--key: "d-(1" is not a regular expression`},
		{"bad since", append(ok, "--since", "yesterday"), `--since: "yesterday" is not a time`},
		{"bad until", append(ok, "--until", "2026-13-01"), `--until: "2026-13-01" is not a time`},
		{"since after until", append(ok, "--since", "2026-11-27", "--until", "2026-11-26"), "--since 2026-11-27 is not before --until"},
		{"bad rate", append(ok, "--rate", "fast"), `--rate: "fast" is not a rate`},
		{"bad rate unit", append(ok, "--rate", "10/week"), `--rate: "10/week"`},
		{"max replays", append(ok, "--max-replays", "0"), "--max-replays: 0 must be at least 1"},
		{"no topic", []string{"dlq", "replay", "--brokers", "b:1"}, "--topic (a Kafka DLQ) or --stream (a Kinesis DLQ): one is required"},
		{"topic and stream", []string{"dlq", "inspect", "--topic", "t", "--stream", "s"}, "--topic and --stream: give one DLQ, not both"},
		{"kinesis replay without redis", []string{"dlq", "replay", "--stream", "s", "--kinesis-region", "us-east-1", "--kinesis-endpoint", "http://127.0.0.1:1"}, "--redis: required to replay a Kinesis DLQ"},
		{"no brokers", []string{"dlq", "inspect", "--topic", "t"}, "--brokers: required (or set KAFKA_BROKERS)"},
		{"negative samples", []string{"dlq", "inspect", "--brokers", "b:1", "--topic", "t", "--samples", "-1"}, "--samples"},
		{"no subcommand args", []string{"dlq", "inspect", "--brokers", "b:1", "--topic", "t", "extra"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := weir(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseRateAndTime(t *testing.T) {
	for in, want := range map[string]float64{"0": 0, "50": 50, "50/s": 50, "120/m": 2, "120/min": 2, "7200/h": 2, "0.5": 0.5} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "NaN", "Inf", "1/d"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("parseRate(%q) accepted", bad)
		}
	}
	if got, err := parseTimeFlag("--since", "2026-11-26"); err != nil || !got.Equal(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date: %v, %v", got, err)
	}
	if got, err := parseTimeFlag("--since", "2026-11-26T07:00:00+01:00"); err != nil || !got.Equal(time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v, %v", got, err)
	}
}

// The commands end to end on an in-process broker: inspect, a dry run, a
// replay, and a second replay that finds nothing new.
func TestDLQInspectAndReplayCommands(t *testing.T) {
	e, err := kafkasrc.StartEmbedded(kafkasrc.WithTopic("in", 2), kafkasrc.WithTopic("in.dlq", 2))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().UTC()
	err = loadtest.Produce(ctx, cl, "in.dlq", 10, func(i int) *kgo.Record {
		class := "invalid_input"
		if i%2 == 1 {
			class = "timeout"
		}
		m := dlq.Envelope(&record.Record{Key: []byte{'k', byte('0' + i)}, Value: []byte(`{"bad":`),
			Partition: record.KafkaPartition("in", int32(i%2)), Position: record.Position{Offset: int64(i)}, Timestamp: now},
			dlq.Failure{Message: "boom", Class: class, Attempts: 1, FirstFailure: now, LastFailure: now},
			dlq.Origin{Pipeline: "p"})
		r := &kgo.Record{Key: m.Key, Value: m.Value, Timestamp: m.Timestamp}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		return r
	})
	if err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(e.Addrs(), ",")

	out, err := weir(t, "dlq", "inspect", "--brokers", brokers, "--topic", "in.dlq", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep dlq.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect --json is not one JSON object: %v\n%s", err, out)
	}
	if rep.Envelopes != 10 || rep.ByErrorClass["timeout"] != 5 || rep.ByPipeline["p"] != 10 || len(rep.Samples) != 5 {
		t.Fatalf("inspect: %+v", rep)
	}
	out, err = weir(t, "dlq", "inspect", "--brokers", brokers, "--topic", "in.dlq", "--samples", "0")
	if err != nil || !strings.Contains(out, "10 records (10 envelopes, 0 not envelopes)") || strings.Contains(out, "sample ") {
		t.Fatalf("inspect as text: %v\n%s", err, out)
	}

	replay := []string{"dlq", "replay", "--brokers", brokers, "--topic", "in.dlq", "--error-class", "timeout", "--rate", "1000/s"}
	out, err = weir(t, append(replay, "--dry-run")...)
	if err != nil || !strings.Contains(out, "dry run: nothing produced, nothing committed") || !regexp.MustCompile(`would replay +5\n`).MatchString(out) {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	var sum dlq.ReplaySummary
	for i, want := range []int64{5, 0} {
		out, err = weir(t, append(replay, "--json")...)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("replay --json is not one JSON object: %v\n%s", err, out)
		}
		if sum.Replayed != want || (i == 0 && sum.SkippedByFilter != 5) {
			t.Fatalf("replay run %d: %+v, want %d replayed", i+1, sum, want)
		}
	}
	n, err := loadtest.Count(ctx, kadm.NewClient(cl), "in")
	if err != nil || n != 5 {
		t.Fatalf("topic in holds %d records (%v), want the 5 timeouts", n, err)
	}
}
