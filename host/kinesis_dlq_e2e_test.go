package host_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host/config"
	kinesissink "github.com/weirhq/weir/sinks/kinesis"
)

// kdlq is a Kinesis pipeline whose DLQ is a Kinesis stream, and a handler
// that fails (non-retryably) on every record whose id contains failOn.
type kdlq struct {
	*kenv
	dlqStream string
	n, keys   int
	bad       map[int]bool
}

func newKinesisDLQEnv(t *testing.T, n, keys int, failOn string) *kdlq {
	e := &kdlq{kenv: newKinesisEnv(t, 2), n: n, keys: keys, bad: map[int]bool{}}
	e.dlqStream = e.stream + "-dlq"
	if _, err := e.cl.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String(e.dlqStream), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		out, err := e.cl.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(e.dlqStream)})
		return err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive
	}, "the dlq stream active")
	for i := range n {
		if strings.Contains(strconv.Itoa(i), failOn) {
			e.bad[i] = true
		}
	}
	return e
}

// config is the pipeline with its Kinesis DLQ; failOn "" is the fixed
// handler.
func (e *kdlq) config(failOn string) *config.File {
	e.t.Helper()
	y := strings.Replace(e.yaml("trim_horizon", "position"), "    shutdown_timeout: 10s\n",
		fmt.Sprintf("    shutdown_timeout: 10s\n    dlq: { kinesis: { stream: %s, endpoint: %q, region: us-east-1 } }\n", e.dlqStream, e.endpoint), 1)
	if failOn != "" {
		y = strings.Replace(y, "WEIR_ECHO_SINK: out,", fmt.Sprintf("WEIR_ECHO_SINK: out, WEIR_FAIL_ON: %q,", failOn), 1)
	}
	cfg, err := config.Parse("kinesis.yaml", []byte(y))
	if err != nil {
		e.t.Fatal(err)
	}
	if cfg.Pipelines[0].DLQ.Kinesis == nil {
		e.t.Fatal("the dlq is not the kinesis one")
	}
	return cfg
}

// deadLetter runs the buggy handler until every good record is handled
// and the checkpoints are at the end of each shard: the dead letters are
// written (a checkpoint never passes a record not yet complete).
func (e *kdlq) deadLetter(failOn string) {
	e.t.Helper()
	e.put(0, e.n, e.keys)
	r := e.start(e.config(failOn), "buggy", nil)
	waitFor(e.t, func() bool { return e.count() >= e.n-len(e.bad) }, "the good records handled")
	waitFor(e.t, func() bool {
		for sh, seq := range e.lastSeq {
			if e.checkpoint(sh) != seq {
				return false
			}
		}
		return true
	}, "checkpoints at the end, past the dead letters")
	r.stop(e.t)
}

// dlqRecords reads the DLQ stream's records, every shard from its start.
func (e *kdlq) dlqRecords() []types.Record {
	e.t.Helper()
	var out []types.Record
	for _, sh := range e.shardsOf(e.dlqStream) {
		it, err := e.cl.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String(e.dlqStream),
			ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			e.t.Fatal(err)
		}
		res, err := e.cl.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, res.Records...)
	}
	return out
}

func (e *kdlq) shardsOf(stream string) []types.Shard {
	out, err := e.cl.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Shards
}

// replayer replays the DLQ stream back to the source stream, with its
// checkpoints in the test's redis-server.
func (e *kdlq) replayer(rate float64, progress func(dlq.ReplayProgress)) *dlq.KinesisReplayer {
	e.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.redis})
	e.t.Cleanup(func() { _ = rdb.Close() })
	rp, err := dlq.NewKinesisReplayer(dlq.KinesisReplayConfig{API: e.cl, Stream: e.dlqStream, Rate: rate, Progress: progress,
		Checkpoints: &dlq.RedisCheckpoints{Client: rdb, Prefix: e.prefix},
		Kinesis:     &kinesissink.Streams{API: func(context.Context) (kinesissink.API, error) { return e.cl, nil }}})
	if err != nil {
		e.t.Fatal(err)
	}
	return rp
}

// checkHandledOnce fails unless every id was handled exactly once: the
// good ones by the buggy handler, the dead-lettered ones once replayed.
func (e *kdlq) checkHandledOnce() {
	e.t.Helper()
	byID, _ := e.handled(e.n)
	for id, pids := range byID {
		if len(pids) != 1 {
			e.t.Errorf("id %d handled %d times (dead-lettered: %v)", id, len(pids), e.bad[id])
		}
	}
}

// A Kinesis pipeline dead-letters its poison records into a Kinesis DLQ
// stream (the envelope in the record data, the original key as partition
// key); inspect reports them; a fixed handler gets them back through a
// replay to the source stream and handles each once; a second replay
// sends nothing.
func TestKinesisDLQStreamInspectAndReplay(t *testing.T) {
	e := newKinesisDLQEnv(t, 1000, 20, "77")
	e.deadLetter("77")

	recs := e.dlqRecords()
	if len(recs) != len(e.bad) {
		t.Fatalf("%d records in the dlq stream, want %d", len(recs), len(e.bad))
	}
	for _, r := range recs {
		en, err := dlq.ParseKinesis(r.Data)
		if err != nil {
			t.Fatalf("dlq record %s: %v", aws.ToString(r.SequenceNumber), err)
		}
		id, _ := strconv.Atoi(string(en.Value))
		if !e.bad[id] || en.Source.Stream != e.stream || !strings.HasPrefix(en.Source.ID, "shardId-") || en.Origin.Pipeline != "kin" ||
			en.Failure.Class == "" || en.Failure.Attempts < 1 {
			t.Fatalf("dead letter %q: %+v", en.Value, en)
		}
		if k := aws.ToString(r.PartitionKey); k != "k"+strconv.Itoa(id%e.keys) || string(en.Key) != k {
			t.Fatalf("dead letter %d has partition key %q and key %q, want its own key", id, k, en.Key)
		}
	}

	rep, err := dlq.InspectKinesis(context.Background(), dlq.KinesisInspectConfig{API: e.cl, Stream: e.dlqStream})
	if err != nil {
		t.Fatal(err)
	}
	var fromShards int64
	for _, n := range rep.BySource {
		fromShards += n
	}
	if rep.Records != int64(len(e.bad)) || rep.Envelopes != int64(len(e.bad)) || rep.Invalid != 0 || rep.ByPipeline["kin"] != int64(len(e.bad)) ||
		fromShards != int64(len(e.bad)) || len(rep.Shards) != 2 || len(rep.Samples) == 0 || rep.Samples[0].Shard == "" {
		t.Fatalf("inspect report: %+v", rep)
	}

	e.start(e.config(""), "fixed", nil)
	sum, err := e.replayer(0, nil).Run(context.Background())
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if sum.Replayed != int64(len(e.bad)) || sum.ByDestination["kinesis:"+e.stream] != int64(len(e.bad)) || sum.Invalid != 0 {
		t.Fatalf("replay summary: %+v", sum)
	}
	waitFor(t, func() bool { return e.count() >= e.n }, "the replayed records handled")
	time.Sleep(500 * time.Millisecond) // a record handled twice would show by now
	e.checkHandledOnce()
	if again, err := e.replayer(0, nil).Run(context.Background()); err != nil || again.Replayed != 0 || again.Read != 0 {
		t.Errorf("a second replay: read %d, sent %d, err %v", again.Read, again.Replayed, err)
	}
}

// A replay stopped midway (Ctrl-C: its context cancelled) finishes and
// checkpoints the batch in hand; run again, it continues with the next
// dead letter. Each dead letter is replayed, and handled, exactly once.
// While the first run holds the group, a second is refused.
func TestKinesisDLQReplayInterruptedAndResumed(t *testing.T) {
	e := newKinesisDLQEnv(t, 1000, 20, "7") // 271 dead letters
	e.deadLetter("7")
	e.start(e.config(""), "fixed", nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu      sync.Mutex
		batches int
	)
	first := e.replayer(60, func(p dlq.ReplayProgress) {
		mu.Lock()
		defer mu.Unlock()
		batches++
	})
	done := make(chan struct{})
	var (
		sum1 *dlq.ReplaySummary
		err1 error
	)
	go func() {
		defer close(done)
		sum1, err1 = first.Run(ctx)
	}()
	// The group is held: a concurrent replay of it is refused at once.
	waitFor(t, func() bool { return e.count() > e.n-len(e.bad) }, "the first replay under way")
	if _, err := e.replayer(0, nil).Run(context.Background()); !errors.Is(err, dlq.ErrReplayRunning) {
		t.Errorf("a concurrent replay of the group: err = %v, want ErrReplayRunning", err)
	}
	time.Sleep(time.Second) // mid-batch: at 60/s a batch is 120 records, two seconds
	cancel()
	<-done
	if !errors.Is(err1, context.Canceled) || sum1.Replayed == 0 || sum1.Replayed >= int64(len(e.bad)) {
		t.Fatalf("first run: replayed %d of %d, err %v; want it stopped midway", sum1.Replayed, len(e.bad), err1)
	}
	t.Logf("first run: %d replayed in %d batches before the stop", sum1.Replayed, batches)

	sum2, err := e.replayer(0, nil).Run(context.Background())
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if sum1.Replayed+sum2.Replayed != int64(len(e.bad)) || sum2.Read != sum2.Replayed {
		t.Fatalf("replayed %d then %d (read %d), want %d in all", sum1.Replayed, sum2.Replayed, sum2.Read, len(e.bad))
	}
	waitFor(t, func() bool { return e.count() >= e.n }, "every replayed record handled")
	time.Sleep(500 * time.Millisecond)
	e.checkHandledOnce()
}

// A Kinesis shard's lag is reported in time (Kinesis gives no record
// count): /status has each shard's millis_behind with when it was read,
// and /metrics the weir_lag_millis gauge per shard.
func TestKinesisLagMillisInStatusAndMetrics(t *testing.T) {
	e := newKinesisEnv(t, 2)
	e.put(0, 200, 10)
	cfg := e.config("trim_horizon", "position")
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Admin.LagInterval = 100 * time.Millisecond
	r := e.start(cfg, "w1", nil)
	var base string
	waitFor(t, func() bool { base = r.h.AdminAddr(); return base != "" }, "the admin server to listen")
	base = "http://" + base
	waitFor(t, func() bool { return e.count() >= 200 }, "every record handled")
	asked := time.Now()
	waitFor(t, func() bool {
		st := status(t, base)
		if len(st.Pipelines) != 1 || len(st.Pipelines[0].Lanes) != 2 {
			return false
		}
		for _, l := range st.Pipelines[0].Lanes {
			if l.Lag.BehindAt.Before(asked) || l.Lag.Known {
				return false
			}
		}
		return true
	}, "/status to show when each shard was last read, in time not records")
	_, body := get(t, base+"/metrics")
	for _, sh := range []string{"shardId-000000000000", "shardId-000000000001"} {
		series := fmt.Sprintf(`weir_lag_millis{partition=%q,pipeline="kin",topic=%q}`, sh, e.stream)
		if !strings.Contains(body, series+" ") {
			t.Errorf("/metrics has no %s", series)
		} else if v := metricValue(t, body, series); v != 0 { // kinesalite reports 0 once caught up
			t.Errorf("%s = %v, want 0", series, v)
		}
	}
	if !strings.Contains(body, `weir_kinesis_throttled_total{pipeline="kin"} `) {
		t.Error("/metrics has no weir_kinesis_throttled_total")
	}
}

// A dead letter is durable before its record's position is checkpointed:
// while the DLQ stream cannot be written (it does not exist yet), the
// shard's checkpoint stays below the poison record and nothing is lost;
// once the stream exists the dead letter is written, and only then does
// the checkpoint pass it.
func TestKinesisDLQStreamWriteHoldsTheCheckpoint(t *testing.T) {
	e := &kdlq{kenv: newKinesisEnv(t, 1), n: 300, keys: 10, bad: map[int]bool{123: true}}
	e.dlqStream = e.stream + "-dlq" // not created yet
	e.put(0, 123, e.keys)
	e.put(123, 1, e.keys)
	const shard = "shardId-000000000000"
	poison, _ := new(big.Int).SetString(e.lastSeq[shard], 10)
	e.put(124, e.n-124, e.keys)
	cfg := e.config("123")
	cfg.Pipelines[0].Breaker.OpenFor = 500 * time.Millisecond
	cfg.Pipelines[0].Retry.MaxBackoff = 500 * time.Millisecond
	e.start(cfg, "w1", nil)
	waitFor(t, func() bool { return e.count() >= 123 }, "the records before the poison one handled")
	// Give the pipeline time to (wrongly) move past the poison record.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if ck, ok := new(big.Int).SetString(e.checkpoint(shard), 10); ok && ck.Cmp(poison) >= 0 {
			t.Fatalf("checkpoint %s reached the poison record %s while its dead letter could not be written", ck, poison)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := e.cl.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String(e.dlqStream), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.checkpoint(shard) == e.lastSeq[shard] }, "the checkpoint at the end once the dead letter is written")
	recs := e.dlqRecords()
	if len(recs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(recs))
	}
	if en, err := dlq.ParseKinesis(recs[0].Data); err != nil || string(en.Value) != "123" {
		t.Fatalf("dead letter %v: %v", en, err)
	}
	byID, _ := e.handled(e.n)
	for id, pids := range byID {
		if want := 1 - btoi(e.bad[id]); len(pids) != want {
			t.Errorf("id %d handled %d times, want %d", id, len(pids), want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
