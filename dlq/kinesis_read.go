package dlq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"
)

// KinesisAPI is the part of the Kinesis API that reads a DLQ stream;
// *kinesis.Client implements it.
type KinesisAPI interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

var _ KinesisAPI = (*kinesis.Client)(nil)

// ShardEnd is the checkpoint of a DLQ shard that was read to its end (it
// was closed by resharding and every record of it is finished with).
const ShardEnd = "SHARD_END"

// ShardSpan is the part of one shard of a Kinesis DLQ a run read.
type ShardSpan struct {
	Shard string `json:"shard"`
	// After is the sequence number the run started after ("": the shard's
	// oldest record).
	After string `json:"after,omitempty"`
	// Last is the sequence number of the last record read ("": none).
	Last string `json:"last,omitempty"`
	// Records is how many records were read.
	Records int64 `json:"records"`
	// Ended says the shard is closed and was read to its end.
	Ended bool `json:"ended,omitempty"`
	// Waiting says the shard was not read because a parent shard is not
	// read to its end yet (its records come after the parent's).
	Waiting bool `json:"waiting,omitempty"`
}

// shardGap is the least time between two GetRecords calls on one shard:
// Kinesis allows five a second.
const shardGap = 200 * time.Millisecond

// kinesisReader reads the shards of a DLQ stream, each from a checkpoint
// to where it was when the run started, parents before children. It is
// used from one goroutine.
type kinesisReader struct {
	api    KinesisAPI
	stream string
	log    zerolog.Logger
	limit  int32
	// cutoff is when the run started: a record that arrived after it is
	// left to the next run, so that a run ends even while dead letters
	// keep coming.
	cutoff time.Time
	spans  []*ShardSpan
}

// listShards lists every shard of the stream, with paging.
func listShards(ctx context.Context, api KinesisAPI, stream string) ([]types.Shard, error) {
	var shards []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		out, err := api.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("listing the shards of %s: %w", stream, err)
		}
		shards = append(shards, out.Shards...)
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// kinesisBatch is one GetRecords' worth of records of a shard, in
// sequence order.
type kinesisBatch struct {
	shard   string
	records []rawRecord
	// ended says the shard has no more records: it is closed and every
	// record of it was in earlier batches (this one has none).
	ended bool
}

// read reads every shard whose checkpoint (from: shard → sequence number,
// or ShardEnd) leaves something to read, calling fn with each batch; fn's
// error stops the read. A shard is read only once its parents are ended
// (or gone from the stream); fn must have finished with a batch when it
// returns, since the next one follows it.
func (r *kinesisReader) read(ctx context.Context, from map[string]string, fn func(kinesisBatch) error) error {
	shards, err := listShards(ctx, r.api, r.stream)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, s := range shards {
		listed[aws.ToString(s.ShardId)] = true
	}
	ended := map[string]bool{}
	for id, ck := range from {
		if ck == ShardEnd {
			ended[id] = true
		}
	}
	// Parents first: a shard is ready once each listed parent is ended.
	pending := slices.Clone(shards)
	for len(pending) > 0 {
		progressed := false
		for i := 0; i < len(pending); i++ {
			s := pending[i]
			id := aws.ToString(s.ShardId)
			ready := true
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if pid := aws.ToString(p); pid != "" && listed[pid] && !ended[pid] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			pending = slices.Delete(pending, i, i+1)
			i--
			progressed = true
			span := &ShardSpan{Shard: id, After: from[id]}
			r.spans = append(r.spans, span)
			if span.After == ShardEnd {
				span.After, span.Ended = "", true
				continue
			}
			if err := r.readShard(ctx, span, fn); err != nil {
				return err
			}
			if span.Ended {
				ended[id] = true
			}
		}
		if !progressed {
			break
		}
	}
	for _, s := range pending {
		r.spans = append(r.spans, &ShardSpan{Shard: aws.ToString(s.ShardId), After: from[aws.ToString(s.ShardId)], Waiting: true})
	}
	slices.SortFunc(r.spans, func(a, b *ShardSpan) int {
		if a.Shard < b.Shard {
			return -1
		}
		return 1
	})
	return nil
}

// readShard reads one shard from span.After until it is caught up (a read
// returns nothing and Kinesis says it is at the tip), it ends, or a record
// arrived after the cutoff.
func (r *kinesisReader) readShard(ctx context.Context, span *ShardSpan, fn func(kinesisBatch) error) error {
	iter, err := r.iterator(ctx, span.Shard, span.After)
	if err != nil {
		return err
	}
	var last time.Time
	for n := 0; ; {
		if wait := shardGap - time.Since(last); wait > 0 && !pause(ctx, wait) {
			return ctx.Err()
		}
		last = time.Now()
		out, err := r.api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(r.limit)})
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && kinesisErrorCode(err) == "ExpiredIteratorException":
			if iter, err = r.iterator(ctx, span.Shard, orAfter(span.Last, span.After)); err != nil {
				return err
			}
			continue
		case err != nil && throttled(err):
			n++
			d := min(shardGap<<min(n, 5), 5*time.Second)
			r.log.Warn().Err(err).Str("shard", span.Shard).Dur("backoff", d).Msg("reading the dlq stream: throttled")
			if !pause(ctx, d/2+rand.N(d/2+1)) {
				return ctx.Err()
			}
			continue
		case err != nil:
			return fmt.Errorf("reading %s/%s: %w", r.stream, span.Shard, err)
		}
		n = 0
		b := kinesisBatch{shard: span.Shard}
		stop := false
		for _, rec := range out.Records {
			if at := aws.ToTime(rec.ApproximateArrivalTimestamp); !at.IsZero() && at.After(r.cutoff) {
				stop = true // arrived after the run started: the next run's
				break
			}
			seq := aws.ToString(rec.SequenceNumber)
			raw := rawRecord{ref: RecordRef{Shard: span.Shard, Sequence: seq}, ts: aws.ToTime(rec.ApproximateArrivalTimestamp)}
			if m, err := DecodeKinesis(rec.Data); err != nil {
				raw.key, raw.value, raw.err = []byte(aws.ToString(rec.PartitionKey)), rec.Data, err
			} else {
				raw.key, raw.value, raw.headers = m.Key, m.Value, m.Headers
			}
			b.records = append(b.records, raw)
		}
		if len(b.records) > 0 {
			if err := fn(b); err != nil {
				return err
			}
			span.Records += int64(len(b.records))
			span.Last = b.records[len(b.records)-1].ref.Sequence
		}
		switch {
		case stop:
			return nil
		case out.NextShardIterator == nil:
			span.Ended = true
			return fn(kinesisBatch{shard: span.Shard, ended: true})
		case len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0:
			return nil // caught up
		}
		iter = out.NextShardIterator
	}
}

func orAfter(last, after string) string {
	if last != "" {
		return last
	}
	return after
}

// iterator returns a shard iterator after the sequence number after, or
// at the shard's oldest record when after is "".
func (r *kinesisReader) iterator(ctx context.Context, shard, after string) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(r.stream), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
	if after != "" {
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(after)
	}
	for n := 1; ; n++ {
		out, err := r.api.GetShardIterator(ctx, in)
		if err == nil {
			return out.ShardIterator, nil
		}
		if !throttled(err) || ctx.Err() != nil || n == 10 {
			return nil, fmt.Errorf("getting an iterator on %s/%s: %w", r.stream, shard, err)
		}
		if !pause(ctx, shardGap*time.Duration(n)) {
			return nil, ctx.Err()
		}
	}
}

func kinesisErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func throttled(err error) bool {
	switch kinesisErrorCode(err) {
	case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException", "KMSThrottlingException":
		return true
	}
	return false
}

// pause waits d or until ctx is done; it reports whether d passed.
func pause(ctx context.Context, d time.Duration) bool { return sleepCtx(ctx, d) == nil }

// KinesisInspectConfig configures InspectKinesis.
type KinesisInspectConfig struct {
	// API reads the stream; required.
	API KinesisAPI
	// Stream is the DLQ stream's name; required.
	Stream string
	// Samples is as in InspectConfig.
	Samples int
	// Logger receives throttling warnings. The zero value logs nothing.
	Logger zerolog.Logger
}

// InspectKinesis reads a Kinesis DLQ stream, every shard from its oldest
// record to its tip when the call began (records arriving later are left
// out), and summarizes it as Inspect does a topic. It checkpoints nothing,
// so it can run at any time. A record that is not a weir envelope is
// counted in Invalid, never an error.
func InspectKinesis(ctx context.Context, cfg KinesisInspectConfig) (*Report, error) {
	if cfg.API == nil || cfg.Stream == "" {
		return nil, errors.New("dlq inspect: API and Stream are required")
	}
	switch {
	case cfg.Samples == 0:
		cfg.Samples = DefaultSamples
	case cfg.Samples < 0:
		cfg.Samples = 0
	}
	rep := &Report{
		Stream:     cfg.Stream,
		ByPipeline: map[string]int64{}, BySource: map[string]int64{},
		ByErrorClass: map[string]int64{}, ByReplayCount: map[string]int64{},
		Samples: []Sample{},
	}
	samples := newSampler(cfg.Samples)
	r := &kinesisReader{api: cfg.API, stream: cfg.Stream, log: cfg.Logger, limit: 10000, cutoff: time.Now()}
	err := r.read(ctx, nil, func(b kinesisBatch) error {
		for _, rec := range b.records {
			rep.add(rec, samples)
		}
		return nil // b.ended: nothing to do
	})
	if err != nil {
		return nil, fmt.Errorf("dlq inspect: %w", err)
	}
	for _, s := range r.spans {
		rep.Shards = append(rep.Shards, *s)
	}
	rep.Samples = samples.result()
	return rep, nil
}
