package kinesis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
	"github.com/weirhq/weir/sources/kinesis/lease"
)

// checkOrder fails t unless every key's values arrive as k:0, k:1, ...
// with none missing or repeated, and returns how many records were seen.
func checkOrder(t *testing.T, got map[record.Partition][]record.Record, perKey int) int {
	t.Helper()
	next := map[string]int{}
	n := 0
	for _, rs := range got {
		for _, r := range rs {
			k, idx, _ := strings.Cut(string(r.Value), ":")
			i, _ := strconv.Atoi(idx)
			if string(r.Key) != k {
				t.Fatalf("record %q has key %q", r.Value, r.Key)
			}
			if i != next[k] {
				t.Fatalf("key %s: got index %d, want %d (lost, repeated or out of order)", k, i, next[k])
			}
			next[k]++
			n++
		}
	}
	for k, c := range next {
		if perKey > 0 && c != perKey {
			t.Errorf("key %s: %d records, want %d", k, c, perKey)
		}
	}
	return n
}

func TestOneWorkerReadsEveryShardAndCheckpointsItsEnd(t *testing.T) {
	cl := testClient(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := "one-worker"
	createStream(t, cl, stream, 4)
	// 4000 records of 100 keys, then a KPL aggregate of 10 more records of
	// key k000 in one Kinesis record (they must come out as 10 records, in
	// order), then 1000 more of k000.
	putAll(t, cl, stream, keyed(4000, 100))
	var agg []KPLRecord
	for i := 40; i < 50; i++ {
		agg = append(agg, KPLRecord{PartitionKey: "k000", Data: []byte(fmt.Sprintf("k000:%d", i))})
	}
	if _, err := cl.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k000"), Data: AggregateKPL(agg)}); err != nil {
		t.Fatal(err)
	}
	var more [][2]string
	for i := 50; i < 60; i++ {
		more = append(more, [2]string{"k000", fmt.Sprintf("k000:%d", i)})
	}
	putAll(t, cl, stream, more)
	const total = 4020

	ls := newLeases(t, rdb, "t1:{p}/", stream, "w1", 2*time.Second)
	src, err := New(Config{API: cl, Leases: ls, Stream: stream, PollInterval: 200 * time.Millisecond, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	lanes := newFakeLanes(t)
	lanes.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lanes) }()
	waitFor(t, "every record", 60*time.Second, func() bool { return lanes.count() >= total })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := lanes.records()
	if n := checkOrder(t, got, 0); n != total {
		t.Fatalf("%d records, want %d", n, total)
	}
	subs := 0
	for _, rs := range got {
		for _, r := range rs {
			if r.Position.Offset > 0 {
				subs++
			}
		}
	}
	if subs != 9 {
		t.Errorf("%d records with a sub-sequence number, want 9 (the aggregate's 2nd to 10th)", subs)
	}
	if len(got) != 4 {
		t.Fatalf("records from %d shards, want 4", len(got))
	}
	for p, rs := range got {
		cp, ended, err := ls.Load(context.Background(), p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := rs[len(rs)-1].Position
		if cp.Seq != last.Seq || cp.Sub != last.Offset || ended {
			t.Errorf("%s: checkpoint %+v ended=%v, want the last record %s, not ended", p, cp, ended, last)
		}
	}
	st, err := ls.States(context.Background(), []string{"shardId-000000000000"})
	if err != nil || st[0].Owner != "" {
		t.Errorf("lease still owned after shutdown: %+v %v", st, err)
	}
}

// throttlingAPI serves one shard of a few records, refusing the first
// GetRecords calls with ProvisionedThroughputExceededException.
type throttlingAPI struct {
	behind int64 // MillisBehindLatest of every read
	refuse atomic.Int32
	calls  atomic.Int32
	mu     sync.Mutex
	times  []time.Time
}

func (f *throttlingAPI) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{Shards: []types.Shard{{ShardId: aws.String("shardId-0")}}}, nil
}

func (f *throttlingAPI) GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String("it-0")}, nil
}

func (f *throttlingAPI) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	if f.refuse.Add(-1) >= 0 {
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")}
	}
	if aws.ToString(in.ShardIterator) != "it-0" {
		return &kinesis.GetRecordsOutput{NextShardIterator: in.ShardIterator, MillisBehindLatest: aws.Int64(f.behind)}, nil
	}
	var recs []types.Record
	for i := range 5 {
		recs = append(recs, types.Record{SequenceNumber: aws.String(fmt.Sprint(100 + i)), PartitionKey: aws.String("k"), Data: []byte(fmt.Sprint(i)), ApproximateArrivalTimestamp: aws.Time(time.Now())})
	}
	return &kinesis.GetRecordsOutput{Records: recs, NextShardIterator: aws.String("it-1"), MillisBehindLatest: aws.Int64(f.behind)}, nil
}

// A shard whose reads are refused for throughput is backed off (with
// jitter, growing) and retried until the read goes through; nothing is
// lost and no call comes sooner than the per-shard gap.
func TestThrottledReadsBackOffAndRetry(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	api := &throttlingAPI{}
	api.refuse.Store(4)
	ls := newLeases(t, rdb, "t:{p}/", "s", "w1", time.Second)
	src, err := New(Config{API: api, Leases: ls, Stream: "s", PollInterval: 200 * time.Millisecond, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lanes := newFakeLanes(t)
	lanes.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lanes) }()
	waitFor(t, "the records after the throttling", 30*time.Second, func() bool { return lanes.count() >= 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := src.Throttled(); got != 4 {
		t.Errorf("throttled calls = %d, want 4", got)
	}
	api.mu.Lock()
	times := api.times
	api.mu.Unlock()
	// Calls 1..5: four refused, then the read. Each wait after a refusal
	// is at least half its exponential ceiling (200, 400, 800, 1600ms).
	for i := 1; i < 5 && i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		ceil := throttleBase << (i - 1)
		if gap < ceil/2-10*time.Millisecond {
			t.Errorf("call %d came %s after the refused one, want at least %s", i+1, gap, ceil/2)
		}
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < minCallGap-10*time.Millisecond {
			t.Errorf("calls %d and %d only %s apart; the shard allows 5 a second", i, i+1, gap)
		}
	}
	if n := lanes.count(); n != 5 {
		t.Errorf("%d records delivered, want 5", n)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ls := newLeases(t, rdb, "t:{p}/", "s", "w1", time.Second)
	_, err := New(Config{Leases: ls, PollInterval: time.Millisecond, MaxRecordsPerCall: 20000, Start: sources.Start{Kind: sources.StartTime}})
	for _, want := range []string{"API: required", "Stream: required", "PollInterval", "MaxRecordsPerCall", "Start.Time"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestCommitIsFencedByTheLeaseEpoch(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ctx := context.Background()
	a := newLeases(t, rdb, "t:{p}/", "s", "a", 200*time.Millisecond)
	b := newLeases(t, rdb, "t:{p}/", "s", "b", 200*time.Millisecond)
	if err := a.Init(ctx, "trim_horizon", []string{"sh"}); err != nil {
		t.Fatal(err)
	}
	la, ok, err := a.Acquire(ctx, "sh")
	if err != nil || !ok {
		t.Fatalf("a acquire: %v %v", ok, err)
	}
	if _, ok, _ := b.Acquire(ctx, "sh"); ok {
		t.Fatal("b took a live lease")
	}
	if err := a.Checkpoint(ctx, "sh", la.Epoch, lease.Checkpoint{Seq: "10"}, false); err != nil {
		t.Fatal(err)
	}
	mr.FastForward(time.Second)
	time.Sleep(250 * time.Millisecond) // TIME in scripts is the real clock
	lb, ok, err := b.Acquire(ctx, "sh")
	if err != nil || !ok || lb.Epoch <= la.Epoch || lb.Checkpoint.Seq != "10" {
		t.Fatalf("b acquire after expiry: %+v %v %v", lb, ok, err)
	}
	if err := a.Checkpoint(ctx, "sh", la.Epoch, lease.Checkpoint{Seq: "20"}, false); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("zombie checkpoint: %v, want ErrLost", err)
	}
	if _, err := a.Renew(ctx, "sh", la.Epoch); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("zombie renew: %v, want ErrLost", err)
	}
	if cp, _, _ := b.Load(ctx, "sh"); cp.Seq != "10" {
		t.Fatalf("checkpoint moved by the zombie: %+v", cp)
	}
}

// A stream that does not exist stops Run with an error naming it, instead
// of retrying forever.
func TestMissingStreamIsAnError(t *testing.T) {
	cl := testClient(t)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ls := newLeases(t, rdb, "t:{p}/", "nope", "w1", time.Second)
	src, err := New(Config{API: cl, Leases: ls, Stream: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	lanes := newFakeLanes(t)
	lanes.src = src
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = src.Run(ctx, lanes)
	if err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "ResourceNotFound") {
		t.Fatalf("Run = %v, want a ResourceNotFound error naming the stream", err)
	}
}

// expiringAPI serves one shard of 10 records, 4 per call; the second
// GetRecords call fails with ExpiredIteratorException. It records the
// iterator requests.
type expiringAPI struct {
	mu       sync.Mutex
	calls    int
	requests []kinesis.GetShardIteratorInput
}

func (f *expiringAPI) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{Shards: []types.Shard{{ShardId: aws.String("shardId-0")}}}, nil
}

// An iterator is the index of the next record, as a string.
func (f *expiringAPI) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, *in)
	next := 0
	if in.ShardIteratorType == types.ShardIteratorTypeAtSequenceNumber {
		n, _ := strconv.Atoi(aws.ToString(in.StartingSequenceNumber))
		next = n - 1000
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(strconv.Itoa(next))}, nil
}

func (f *expiringAPI) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == 2 {
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	}
	from, _ := strconv.Atoi(aws.ToString(in.ShardIterator))
	var recs []types.Record
	for i := from; i < min(from+4, 10); i++ {
		recs = append(recs, types.Record{SequenceNumber: aws.String(strconv.Itoa(1000 + i)), PartitionKey: aws.String("k"),
			Data: []byte(fmt.Sprintf("k:%d", i)), ApproximateArrivalTimestamp: aws.Time(time.Now())})
	}
	return &kinesis.GetRecordsOutput{Records: recs, NextShardIterator: aws.String(strconv.Itoa(from + len(recs))), MillisBehindLatest: aws.Int64(0)}, nil
}

// An expired iterator is replaced by one at the last record delivered:
// nothing is skipped, nothing delivered twice.
func TestExpiredIteratorResumesAtTheLastDelivered(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	api := &expiringAPI{}
	ls := newLeases(t, rdb, "t:{p}/", "s", "w1", time.Second)
	src, err := New(Config{API: api, Leases: ls, Stream: "s", PollInterval: 200 * time.Millisecond, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lanes := newFakeLanes(t)
	lanes.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lanes) }()
	waitFor(t, "10 records", 30*time.Second, func() bool { return lanes.count() >= 10 })
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := checkOrder(t, lanes.records(), 10); n != 10 {
		t.Fatalf("%d records, want 10", n)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.requests) != 2 || api.requests[1].ShardIteratorType != types.ShardIteratorTypeAtSequenceNumber ||
		aws.ToString(api.requests[1].StartingSequenceNumber) != "1003" {
		t.Fatalf("iterator requests %+v, want TRIM_HORIZON then AT_SEQUENCE_NUMBER 1003 (the last delivered)", api.requests)
	}
}

// A shard's lag is MillisBehindLatest of its latest read, with when that
// read returned; a shard not read yet, or not held, has none.
func TestTimeLagsReportMillisBehindLatest(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	api := &throttlingAPI{behind: 4200}
	ls := newLeases(t, rdb, "t:{p}/", "s", "w1", time.Second)
	src, err := New(Config{API: api, Leases: ls, Stream: "s", PollInterval: 200 * time.Millisecond, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	part := record.Partition{Stream: "s", ID: "shardId-0"}
	if got := src.TimeLags([]record.Partition{part}); len(got) != 0 {
		t.Fatalf("lag before any read: %v", got)
	}
	lanes := newFakeLanes(t)
	lanes.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- src.Run(ctx, lanes) }()
	waitFor(t, "the records", 30*time.Second, func() bool { return lanes.count() >= 5 })
	got := src.TimeLags([]record.Partition{part, {Stream: "s", ID: "shardId-9"}})
	if l, ok := got[part]; len(got) != 1 || !ok || l.Behind != 4200*time.Millisecond || l.At.Before(began) {
		t.Errorf("lags = %v, want shardId-0 4.2s behind, read after %s", got, began)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
