package host

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// fuzzReply builds a handler reply for a batch of n records from fuzz bytes,
// four bytes an entry: kind, record index (may be out of range), sink or
// failure flags, and a payload size in KiB. Every output's value starts
// with its record's offset, so the test can tell whose it is.
func fuzzReply(data []byte, recs []record.Record) *plugins.Result {
	res := &plugins.Result{}
	for ; len(data) >= 4; data = data[4:] {
		kind, idx, flags, size := data[0]%3, int(data[1]), data[2], int(data[3])
		if idx >= len(recs)+2 {
			idx = int(int8(data[1])) // negative indexes too
		}
		switch kind {
		case 0, 2:
			sink := [...]string{"out", "out", "", "nope"}[flags%4]
			val := []byte("?")
			if idx >= 0 && idx < len(recs) {
				val = []byte(strconv.FormatInt(recs[idx].Position.Offset, 10))
			}
			val = append(val, make([]byte, size<<10)...)
			o := plugins.Output{Index: idx, Sink: sink, Message: record.Message{Key: []byte("k"), Value: val}}
			if kind == 2 {
				o.Headers = []record.Header{{Key: "\xff\xfe", Value: []byte{0xc3}}}
			}
			res.Outputs = append(res.Outputs, o)
		case 1:
			res.Failures = append(res.Failures, plugins.Failure{Index: idx, Retryable: flags&1 == 1,
				Class: plugins.ErrorClass(flags >> 1 % 8), Message: "fuzzed"})
		}
	}
	return res
}

// FuzzHandlerReply drives a pipeline with a handler whose first reply to a
// batch is arbitrary: indexes out of range or negative, the same index
// twice, outputs to sinks the pipeline does not declare or to none, large
// payloads (over max_output_bytes), more outputs than max_outputs_per_record,
// headers that are not UTF-8, failures of any class. Whatever the
// reply, the host does not panic and loses nothing: every record completes
// once, either with its outputs written or dead-lettered (never both), and
// the partition's commit reaches its last record. Retries get a
// well-behaved reply, so that the run ends.
func FuzzHandlerReply(f *testing.F) {
	f.Add(uint8(3), []byte{0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 0, 0})
	f.Add(uint8(2), []byte{0, 9, 0, 0})                                                 // index out of range
	f.Add(uint8(2), []byte{0, 0xff, 0, 0})                                              // negative index
	f.Add(uint8(3), []byte{0, 1, 3, 0, 0, 1, 2, 0})                                     // unknown sink, no sink
	f.Add(uint8(4), []byte{1, 0, 0, 0, 1, 0, 1, 0})                                     // one record failed twice, differently
	f.Add(uint8(4), []byte{1, 2, 1, 0, 0, 2, 0, 0})                                     // failed retryably and output
	f.Add(uint8(2), []byte{2, 0, 0, 200, 0, 1, 0, 255})                                 // large outputs, non-UTF-8 header
	f.Add(uint8(5), []byte{1, 0, 1, 0, 1, 1, 1, 0, 1, 2, 1, 0, 1, 3, 1, 0, 1, 4, 1, 0}) // all retryable
	f.Fuzz(func(t *testing.T, nrec uint8, data []byte) {
		n := int(nrec%20) + 1
		cfg := testPipelineConfig()
		cfg.Batch.MaxRecords = n
		cfg.Batch.MaxWait = 1 << 62 // one batch of all n records
		cfg.Handler.MaxOutputBytes = 100 << 10
		cfg.Handler.MaxOutputsPerRecord = 3
		h := newHarness(t, cfg, handlerFunc(func(_ context.Context, b *plugins.Batch) (*plugins.Result, error) {
			if b.Attempt == 1 {
				return fuzzReply(data, b.Records), nil
			}
			return echo(b), nil
		}), true)
		p := record.KafkaPartition("in", 0)
		h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
		h.pl.Deliver(p, records(p, 0, n, 3))
		h.waitCompleted(int64(n))
		h.pl.Revoke(context.Background(), []record.Partition{p})
		if c, _ := h.src.lastCommit(p); c != int64(n-1) {
			t.Fatalf("final commit %d, want %d", c, n-1)
		}
		if got := h.pl.stats.Completed.Load(); got != int64(n) {
			t.Fatalf("%d records completed, want %d", got, n)
		}
		dead := map[string]bool{}
		for _, m := range h.dead.all() {
			e, err := dlq.Parse(m.Key, m.Value, m.Headers)
			if err != nil {
				t.Fatalf("dead letter does not parse: %v", err)
			}
			if dead[e.Position] {
				t.Fatalf("record %s dead-lettered twice", e.Position)
			}
			dead[e.Position] = true
		}
		for _, m := range h.out.all() {
			off := string(m.Value)
			for i, c := range off {
				if c < '0' || c > '9' {
					off = off[:i]
					break
				}
			}
			if off == "" {
				t.Fatalf("an output of a record that is not in the batch was written: %q", m.Value[:min(len(m.Value), 20)])
			}
			if dead[off] {
				t.Fatalf("record %s has outputs and was dead-lettered", off)
			}
		}
	})
}

// A record whose outputs break the handler's limits is dead-lettered at
// once, class bad_reply, with none of its outputs written; the others of
// the batch are not affected.
func TestReplyLimits(t *testing.T) {
	cfg := testPipelineConfig()
	cfg.Batch.MaxRecords = 3
	cfg.Batch.MaxWait = time.Hour
	cfg.Handler.MaxOutputBytes = 1000
	cfg.Handler.MaxOutputsPerRecord = 4
	h := newHarness(t, cfg, handlerFunc(func(_ context.Context, b *plugins.Batch) (*plugins.Result, error) {
		res := &plugins.Result{}
		out := func(i int, v []byte, hs ...record.Header) {
			res.Outputs = append(res.Outputs, plugins.Output{Index: i, Sink: "out", Message: record.Message{Value: v, Headers: hs}})
		}
		for range 5 {
			out(0, []byte("0")) // one too many
		}
		out(1, []byte("1"), record.Header{Key: "h", Value: make([]byte, 999)}) // 1+1+999 bytes
		out(2, []byte("2"))
		out(2, make([]byte, 1000))
		return res, nil
	}), true)
	p := record.KafkaPartition("in", 0)
	h.pl.Assign(context.Background(), []sources.Claim{{Partition: p}})
	h.pl.Deliver(p, records(p, 0, 3, 3))
	h.waitCompleted(3)
	dead := h.dead.all()
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for i, want := range []string{"more than handler.max_outputs_per_record (4)", "1001 bytes, over handler.max_output_bytes (1000)"} {
		e, err := dlq.Parse(dead[i].Key, dead[i].Value, dead[i].Headers)
		if err != nil {
			t.Fatal(err)
		}
		if e.Position != strconv.Itoa(i) || e.Failure.Class != "bad_reply" || e.Failure.Attempts != 1 || !strings.Contains(e.Failure.Message, want) {
			t.Errorf("dead letter %d: position %s, class %s after %d attempts: %s; want %q", i, e.Position, e.Failure.Class, e.Failure.Attempts, e.Failure.Message, want)
		}
	}
	if outs := h.out.all(); len(outs) != 2 || string(outs[0].Value) != "2" || len(outs[1].Value) != 1000 {
		t.Fatalf("outputs = %d, want record 2's two", len(outs))
	}
}
