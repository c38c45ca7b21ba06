package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// fakeStream is an in-memory Kinesis DLQ stream: shards with records,
// parents, and closed shards. Iterators are "shard|index".
type fakeStream struct {
	mu       sync.Mutex
	shards   []types.Shard
	records  map[string][]types.Record
	closed   map[string]bool
	throttle int // GetRecords calls to refuse first
	expire   int // GetRecords calls to answer ExpiredIterator, after throttle
	calls    int
}

func newFakeStream() *fakeStream {
	return &fakeStream{records: map[string][]types.Record{}, closed: map[string]bool{}}
}

func (f *fakeStream) addShard(id, parent string, closed bool) {
	s := types.Shard{ShardId: aws.String(id)}
	if parent != "" {
		s.ParentShardId = aws.String(parent)
	}
	f.shards = append(f.shards, s)
	f.closed[id] = closed
}

// put adds a dead letter of a Kinesis pipeline's record (value v, key k)
// to shard.
func (f *fakeStream) put(shard, k, v string) {
	m := Envelope(&record.Record{Key: []byte(k), Value: []byte(v), Partition: record.Partition{Stream: "src", ID: "shardId-000000000000"},
		Position: record.Position{Seq: "1" + v}}, Failure{Message: "m", Class: "c"}, Origin{Pipeline: "p"})
	seq := fmt.Sprintf("%s-%05d", shard, len(f.records[shard]))
	f.records[shard] = append(f.records[shard], types.Record{SequenceNumber: aws.String(seq), PartitionKey: aws.String(k),
		Data: EncodeKinesis(m), ApproximateArrivalTimestamp: aws.Time(time.Now().Add(-time.Minute))})
}

func (f *fakeStream) ListShards(_ context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{Shards: f.shards}, nil
}

func (f *fakeStream) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.ShardId)
	i := 0
	if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber {
		for j, r := range f.records[id] {
			if aws.ToString(r.SequenceNumber) == aws.ToString(in.StartingSequenceNumber) {
				i = j + 1
			}
		}
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(id + "|" + strconv.Itoa(i))}, nil
}

func (f *fakeStream) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.throttle > 0 {
		f.throttle--
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")}
	}
	if f.expire > 0 {
		f.expire--
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	}
	id, at, _ := strings.Cut(aws.ToString(in.ShardIterator), "|")
	i, _ := strconv.Atoi(at)
	recs := f.records[id]
	end := min(len(recs), i+int(aws.ToInt32(in.Limit)))
	out := &kinesis.GetRecordsOutput{Records: recs[i:end], MillisBehindLatest: aws.Int64(0),
		NextShardIterator: aws.String(id + "|" + strconv.Itoa(end))}
	if f.closed[id] && end == len(recs) && i == end {
		out.NextShardIterator = nil
	}
	return out, nil
}

// fakeWriter records what a replay writes to Kinesis, and fails the
// messages whose value is in fail.
type fakeWriter struct {
	mu      sync.Mutex
	written []string // values, in write order
	fail    map[string]bool
}

func (w *fakeWriter) Write(_ context.Context, stream string, msgs []record.Message) []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for i, m := range msgs {
		if w.fail[string(m.Value)] {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = errors.New("ProvisionedThroughputExceededException after 10 attempts")
			continue
		}
		w.written = append(w.written, string(m.Value))
	}
	return errs
}

func newTestCheckpoints(t *testing.T) *RedisCheckpoints {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return &RedisCheckpoints{Client: rdb, Prefix: "t:"}
}

func runReplay(t *testing.T, f *fakeStream, w *fakeWriter, ck ReplayCheckpoints) (*ReplaySummary, error) {
	t.Helper()
	rp, err := NewKinesisReplayer(KinesisReplayConfig{API: f, Stream: "dlq", Checkpoints: ck, Kinesis: w})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rp.Run(ctx)
}

// After the DLQ stream was resharded, a parent's dead letters are
// replayed before its children's (a key's records stay in order across
// the split), and the closed parent is checkpointed SHARD_END.
func TestKinesisReplayParentsBeforeChildren(t *testing.T) {
	f := newFakeStream()
	// Listed children first: the order must come from the parent links.
	f.addShard("child-a", "parent", false)
	f.addShard("child-b", "parent", false)
	f.addShard("parent", "", true)
	for i := range 5 {
		f.put("parent", "k", "p"+strconv.Itoa(i))
		f.put("child-a", "k", "a"+strconv.Itoa(i))
		f.put("child-b", "j", "b"+strconv.Itoa(i))
	}
	w := &fakeWriter{}
	ck := newTestCheckpoints(t)
	sum, err := runReplay(t, f, w, ck)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replayed != 15 || len(w.written) != 15 {
		t.Fatalf("replayed %d, wrote %v", sum.Replayed, w.written)
	}
	for i, v := range w.written[:5] {
		if v != "p"+strconv.Itoa(i) {
			t.Fatalf("write order %v: the parent's records must come first, in order", w.written)
		}
	}
	got, _ := ck.Load(context.Background(), DefaultGroup("dlq", "", Filter{}))
	if got["parent"] != ShardEnd || got["child-a"] != "child-a-00004" || got["child-b"] != "child-b-00004" {
		t.Fatalf("checkpoints %v", got)
	}
}

// A write that fails for good stops the replay with an error naming the
// record; the shard is checkpointed just before it, and the next run
// starts at it, replaying nothing that was already written before it.
func TestKinesisReplayWriteFailureCheckpointsBeforeIt(t *testing.T) {
	f := newFakeStream()
	f.addShard("s0", "", false)
	for i := range 6 {
		f.put("s0", "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	w := &fakeWriter{fail: map[string]bool{"v3": true}}
	ck := newTestCheckpoints(t)
	_, err := runReplay(t, f, w, ck)
	if err == nil || !strings.Contains(err.Error(), "replaying dlq/s0@s0-00003") {
		t.Fatalf("err = %v, want it to name s0@s0-00003", err)
	}
	got, _ := ck.Load(context.Background(), DefaultGroup("dlq", "", Filter{}))
	if got["s0"] != "s0-00002" {
		t.Fatalf("checkpoint %q, want s0-00002 (the last record before the failed one)", got["s0"])
	}
	w.fail = nil
	w.written = nil
	sum, err := runReplay(t, f, w, ck)
	if err != nil || sum.Read != 3 || strings.Join(w.written, ",") != "v3,v4,v5" {
		t.Fatalf("second run: read %d, wrote %v, err %v; want v3,v4,v5", sum.Read, w.written, err)
	}
}

// Throttled reads and an expired iterator are retried; nothing is lost or
// repeated.
func TestKinesisReplayRetriesThrottledAndExpiredReads(t *testing.T) {
	f := newFakeStream()
	f.addShard("s0", "", false)
	for i := range 4 {
		f.put("s0", "k", "v"+strconv.Itoa(i))
	}
	f.throttle, f.expire = 2, 1
	w := &fakeWriter{}
	sum, err := runReplay(t, f, w, newTestCheckpoints(t))
	if err != nil || sum.Replayed != 4 || strings.Join(w.written, ",") != "v0,v1,v2,v3" {
		t.Fatalf("replayed %d, wrote %v, err %v", sum.Replayed, w.written, err)
	}
}

// One replay of a group at a time: a second is refused while the first
// holds the lock, and a holder that lost its lock cannot checkpoint.
func TestKinesisReplayLockFencesCheckpoints(t *testing.T) {
	ck := newTestCheckpoints(t)
	ctx := context.Background()
	group := DefaultGroup("dlq", "", Filter{})
	tok, err := ck.Acquire(ctx, group, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeStream()
	f.addShard("s0", "", false)
	f.put("s0", "k", "v")
	if _, err := runReplay(t, f, &fakeWriter{}, ck); !errors.Is(err, ErrReplayRunning) {
		t.Fatalf("replay while the group is held: err = %v, want ErrReplayRunning", err)
	}
	if err := ck.Save(ctx, group, "not-the-token", "s0", "x"); !errors.Is(err, ErrReplayLockLost) {
		t.Fatalf("save with a stale token: err = %v, want ErrReplayLockLost", err)
	}
	if err := ck.Release(ctx, group, tok); err != nil {
		t.Fatal(err)
	}
	if sum, err := runReplay(t, f, &fakeWriter{}, ck); err != nil || sum.Replayed != 1 {
		t.Fatalf("after release: replayed %d, err %v", sum.Replayed, err)
	}
}

// From a Kinesis DLQ, --to sends the selected dead letters to a Kafka
// topic (with the replay headers, as from a Kafka DLQ), the filter skips
// the others and checkpoints past them, and a dry run writes nothing and
// moves no checkpoint.
func TestKinesisReplayFilterToKafka(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("staging", 1))
	f := newFakeStream()
	f.addShard("s0", "", false)
	for i := range 6 {
		m := Envelope(&record.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i)),
			Headers:   []record.Header{{Key: "trace", Value: []byte("t")}},
			Partition: record.Partition{Stream: "src", ID: "shardId-000000000000"}, Position: record.Position{Seq: "9" + strconv.Itoa(i)}},
			Failure{Message: "m", Class: []string{"a", "b"}[i%2]}, Origin{Pipeline: "p"})
		f.records["s0"] = append(f.records["s0"], types.Record{SequenceNumber: aws.String("s0-" + strconv.Itoa(i)),
			PartitionKey: aws.String("k"), Data: EncodeKinesis(m)})
	}
	ck := newTestCheckpoints(t)
	prod := newClient(t, e, ReplayProducerOpts("staging")...)
	cfg := KinesisReplayConfig{API: f, Stream: "dlq", Checkpoints: ck, Kafka: prod, To: "staging", Filter: Filter{ErrorClass: "b"}}
	run := func(dry bool) *ReplaySummary {
		c := cfg
		c.DryRun = dry
		rp, err := NewKinesisReplayer(c)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := rp.Run(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if dry := run(true); dry.Replayed != 3 || dry.SkippedByFilter != 3 || dry.ByDestination["staging"] != 3 {
		t.Fatalf("dry run: %+v", dry)
	}
	if got, _ := ck.Load(testCtx(t), DefaultGroup("dlq", "staging", cfg.Filter)); len(got) != 0 {
		t.Fatalf("a dry run checkpointed %v", got)
	}
	if sum := run(false); sum.Replayed != 3 || sum.SkippedByFilter != 3 {
		t.Fatalf("replay: %+v", sum)
	}
	if got, _ := ck.Load(testCtx(t), DefaultGroup("dlq", "staging", cfg.Filter)); got["s0"] != "s0-5" {
		t.Fatalf("checkpoint %v, want s0-5 (past the skipped records too)", got)
	}
	cl := newClient(t, e, kgo.ConsumeTopics("staging"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 3 {
		fs := cl.PollFetches(testCtx(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if h["trace"] != "t" || h[HeaderReplayCount] != "1" || h[HeaderReplaySourcePosition] == "" {
				t.Errorf("replayed %q with headers %v", r.Value, h)
			}
			got = append(got, string(r.Value))
		})
	}
	if strings.Join(got, ",") != "v1,v3,v5" {
		t.Fatalf("staging got %v, want v1,v3,v5", got)
	}
	if again := run(false); again.Read != 0 {
		t.Fatalf("second run read %d", again.Read)
	}
}

// A record replayed into a Kinesis stream loses its weir.replay-count (no
// headers): when it fails again, its new dead letter says 0. The replay
// ledger counts its replays instead, so --max-replays still stops the
// loop: with a maximum of 2 the third dead letter of the same record is
// refused.
func TestKinesisReplayLedgerStopsALoopThroughKinesis(t *testing.T) {
	f := newFakeStream()
	f.addShard("s0", "", false)
	ck := newTestCheckpoints(t)
	w := &fakeWriter{}
	for round := 1; round <= 3; round++ {
		f.put("s0", "k", "poison") // dead-lettered again, replay count 0 in its envelope
		rp, err := NewKinesisReplayer(KinesisReplayConfig{API: f, Stream: "dlq", Checkpoints: ck, Kinesis: w, MaxReplays: 2})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := rp.Run(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case round < 3 && (sum.Replayed != 1 || sum.Refused != 0):
			t.Fatalf("round %d: replayed %d, refused %d; want it replayed", round, sum.Replayed, sum.Refused)
		case round == 3 && (sum.Replayed != 0 || sum.Refused != 1 || !strings.Contains(sum.RefusedRecords[0].Reason, "replayed 2 times already")):
			t.Fatalf("round 3: replayed %d, refused %d (%v); want it refused", sum.Replayed, sum.Refused, sum.RefusedRecords)
		}
	}
	if len(w.written) != 2 {
		t.Fatalf("written %v, want the record twice", w.written)
	}
	// Another record of the same key is not affected.
	f.put("s0", "k", "fine")
	rp, _ := NewKinesisReplayer(KinesisReplayConfig{API: f, Stream: "dlq", Checkpoints: ck, Kinesis: w, MaxReplays: 2})
	if sum, err := rp.Run(testCtx(t)); err != nil || sum.Replayed != 1 {
		t.Fatalf("another record: replayed %d, err %v", sum.Replayed, err)
	}
}

// A Kafka pipeline's dead letters in a Kinesis DLQ go back to their
// original topic and partition (not a key hash's), with the replay headers.
func TestKinesisReplayKafkaRecordsToTheirPartition(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("in", 4))
	f := newFakeStream()
	f.addShard("s0", "", false)
	for i := range 4 {
		m := Envelope(&record.Record{Key: []byte("same-key"), Value: []byte("v" + strconv.Itoa(i)),
			Partition: record.KafkaPartition("in", int32(i)), Position: record.Position{Offset: int64(10 + i)}},
			Failure{Message: "m", Class: "c"}, Origin{Pipeline: "p"})
		f.records["s0"] = append(f.records["s0"], types.Record{SequenceNumber: aws.String("s0-" + strconv.Itoa(i)),
			PartitionKey: aws.String("same-key"), Data: EncodeKinesis(m)})
	}
	rp, err := NewKinesisReplayer(KinesisReplayConfig{API: f, Stream: "dlq", Checkpoints: newTestCheckpoints(t),
		Kafka: newClient(t, e, ReplayProducerOpts("")...)})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rp.Run(testCtx(t))
	if err != nil || sum.Replayed != 4 || sum.ByDestination["in"] != 4 {
		t.Fatalf("replay: %+v, err %v", sum, err)
	}
	cl := newClient(t, e, kgo.ConsumeTopics("in"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < 4 {
		fs := cl.PollFetches(testCtx(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			want := "v" + strconv.Itoa(int(r.Partition))
			if string(r.Value) != want {
				t.Errorf("partition %d got %q, want %q", r.Partition, r.Value, want)
			}
			for _, h := range r.Headers {
				if h.Key == HeaderReplaySourcePosition && string(h.Value) != "in/"+strconv.Itoa(int(r.Partition))+"/"+strconv.Itoa(10+int(r.Partition)) {
					t.Errorf("partition %d: %s = %s", r.Partition, h.Key, h.Value)
				}
			}
		})
	}
}
