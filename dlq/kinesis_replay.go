package dlq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
)

// DefaultLockTTL is how long a Kinesis DLQ replay's lock lasts without
// renewal (it is renewed every third of it): a replay that crashed blocks
// the next one of its group for at most this long.
const DefaultLockTTL = 30 * time.Second

// writeTimeout bounds the writes of one batch. They are not cancelled
// when the run is stopped (Ctrl-C): a batch that started is written and
// checkpointed, so that nothing is written without its checkpoint moving.
const writeTimeout = time.Minute

// KafkaProducer produces replayed records to Kafka; *kgo.Client
// implements it.
type KafkaProducer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// ReplayProducerOpts are the options of a Kafka client that produces
// replayed records: back to their original partition when to is "" (a
// key hash might not pick it), by key to the topic to otherwise.
func ReplayProducerOpts(to string) []kgo.Opt {
	return (&Replayer{cfg: ReplayConfig{To: to}}).producerOpts()
}

// KinesisReplayConfig configures a KinesisReplayer.
type KinesisReplayConfig struct {
	// API reads the DLQ stream; required.
	API KinesisAPI
	// Stream is the DLQ stream's name; required.
	Stream string
	// Checkpoints keep the replay's progress; required unless DryRun (a
	// dry run without them reads every shard from its oldest record).
	Checkpoints ReplayCheckpoints
	// Group names the progress: "" means DefaultGroup(Stream, To, Filter).
	Group string
	// To, when set, is a Kafka topic that receives every replayed record
	// (through Kafka) instead of its original stream.
	To string
	// Kinesis writes records of Kinesis pipelines back to their stream;
	// without it they are invalid unless To is set.
	Kinesis KinesisWriter
	// Kafka produces records of Kafka pipelines back to their topic and
	// partition, and every record when To is set; build it with
	// ReplayProducerOpts(To). Without it those records are invalid.
	Kafka KafkaProducer
	// Filter, Rate, MaxReplays and DryRun are as in ReplayConfig.
	Filter     Filter
	Rate       float64
	MaxReplays int
	DryRun     bool
	// LockTTL is the lock's TTL; 0 means DefaultLockTTL.
	LockTTL time.Duration
	// Ledger, when set, counts the replays into Kinesis streams (whose
	// records cannot carry weir.replay-count): see ReplayLedger. Default:
	// Checkpoints, when it implements ReplayLedger (RedisCheckpoints
	// does). LedgerTTL is how long it remembers; 0 means
	// DefaultLedgerTTL.
	Ledger    ReplayLedger
	LedgerTTL time.Duration
	// Progress, when set, is called on the Run goroutine after each batch;
	// Total is 0 (a stream's length is not known ahead).
	Progress func(ReplayProgress)
	// Logger receives refused and invalid records (info level) and
	// throttling warnings. The zero value logs nothing.
	Logger zerolog.Logger
}

// KinesisReplayer replays a Kinesis DLQ stream: like Replayer for a topic,
// with its progress in ReplayCheckpoints instead of a consumer group. Run
// may be called again once it has returned, not concurrently.
type KinesisReplayer struct {
	cfg KinesisReplayConfig
}

// NewKinesisReplayer validates cfg, naming the bad field, and applies its
// defaults. It connects to nothing.
func NewKinesisReplayer(cfg KinesisReplayConfig) (*KinesisReplayer, error) {
	if err := checkReplayOptions(cfg.Rate, cfg.MaxReplays, cfg.Filter); err != nil {
		return nil, err
	}
	switch {
	case cfg.API == nil:
		return nil, errors.New("dlq replay: API: required")
	case cfg.Stream == "":
		return nil, errors.New("dlq replay: Stream: must not be empty")
	case cfg.Checkpoints == nil && !cfg.DryRun:
		return nil, errors.New("dlq replay: Checkpoints: required: a replay of a Kinesis DLQ keeps its progress (a sequence number per shard) in Redis")
	case cfg.To != "" && cfg.Kafka == nil:
		return nil, fmt.Errorf("dlq replay: To: %q is a Kafka topic, and no Kafka producer is given", cfg.To)
	case cfg.LockTTL < 0:
		return nil, fmt.Errorf("dlq replay: LockTTL: %v is negative", cfg.LockTTL)
	}
	if cfg.MaxReplays == 0 {
		cfg.MaxReplays = DefaultMaxReplays
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup(cfg.Stream, cfg.To, cfg.Filter)
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if l, ok := cfg.Checkpoints.(ReplayLedger); ok && cfg.Ledger == nil {
		cfg.Ledger = l
	}
	if cfg.LedgerTTL <= 0 {
		cfg.LedgerTTL = DefaultLedgerTTL
	}
	return &KinesisReplayer{cfg: cfg}, nil
}

// Group returns the name the replay's progress is kept under.
func (rp *KinesisReplayer) Group() string { return rp.cfg.Group }

// Run replays the DLQ stream from the group's checkpoints up to each
// shard's tip when the run started (records arriving later are left to
// the next run), parents before children after a reshard, then returns.
//
// It takes the group's lock (a second replay of the group fails at once
// with ErrReplayRunning), reads each shard in batches and, per record,
// decides as Replayer does: invalid, skipped by the filter, refused at
// MaxReplays, or replayed to its original stream (Kinesis, with
// PutRecords; its key as partition key, value only), its original topic
// and partition (Kafka), or To. Once every record of a batch is written
// (acknowledged), the shard's checkpoint moves to the batch's last record;
// a shard read to its end is checkpointed ShardEnd.
//
// When ctx ends (Ctrl-C), the batch being replayed is finished, written
// and checkpointed, and Run returns ctx's error: a rerun starts after it
// and replays nothing twice. When a write fails, the shard is
// checkpointed up to its first record not written and Run returns the
// error; records after it that were written are replayed again by the
// next run (as with Replayer). A crash between a batch's write and its
// checkpoint replays that batch again. The summary is never nil.
func (rp *KinesisReplayer) Run(ctx context.Context) (*ReplaySummary, error) {
	start := time.Now()
	cfg := rp.cfg
	sum := &ReplaySummary{Stream: cfg.Stream, Group: cfg.Group, To: cfg.To, Filter: cfg.Filter.String(),
		DryRun: cfg.DryRun, MaxReplays: cfg.MaxReplays, ByDestination: map[string]int64{}}
	defer func() { sum.DurationS = time.Since(start).Seconds() }()

	var token string
	from := map[string]string{}
	if cfg.Checkpoints != nil {
		if !cfg.DryRun {
			var err error
			if token, err = cfg.Checkpoints.Acquire(ctx, cfg.Group, cfg.LockTTL); err != nil {
				return sum, fmt.Errorf("dlq replay: %w", err)
			}
			stopRenew := rp.renew(ctx, token)
			defer func() {
				stopRenew()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
				defer cancel()
				if err := cfg.Checkpoints.Release(rctx, cfg.Group, token); err != nil {
					cfg.Logger.Warn().Err(err).Msg("the replay lock expires on its own")
				}
			}()
		}
		var err error
		if from, err = cfg.Checkpoints.Load(ctx, cfg.Group); err != nil {
			return sum, fmt.Errorf("dlq replay: %w", err)
		}
	}
	r := &kinesisReader{api: cfg.API, stream: cfg.Stream, log: cfg.Logger, limit: int32(pollSize(cfg.Rate)), cutoff: time.Now()}
	lim := newLimiter(cfg.Rate)
	err := r.read(ctx, from, func(b kinesisBatch) error {
		err := rp.replay(ctx, lim, b, token, sum)
		if cfg.Progress != nil {
			cfg.Progress(sum.progress(sum.Read, 0))
		}
		return err
	})
	for _, s := range r.spans {
		sum.Shards = append(sum.Shards, *s)
	}
	if err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	return sum, nil
}

// renew renews the lock every third of its TTL until the returned func is
// called.
func (rp *KinesisReplayer) renew(ctx context.Context, token string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(rp.cfg.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rp.cfg.LockTTL/3)
				if err := rp.cfg.Checkpoints.Renew(rctx, rp.cfg.Group, token, rp.cfg.LockTTL); err != nil {
					rp.cfg.Logger.Warn().Err(err).Msg("renewing the replay lock")
				}
				cancel()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// replay handles one batch of a shard: decides each record, writes the
// selected ones, and checkpoints the shard past every record finished
// with.
func (rp *KinesisReplayer) replay(ctx context.Context, lim *limiter, b kinesisBatch, token string, sum *ReplaySummary) error {
	cfg := rp.cfg
	if b.ended {
		if cfg.DryRun {
			return nil
		}
		return rp.checkpoint(ctx, token, b.shard, ShardEnd)
	}
	type out struct {
		i     int
		kafka *kgo.Record    // to Kafka
		msg   record.Message // to Kinesis
		ref   RecordRef
		id    string // in the ledger (to Kinesis)
		count int    // replays before this one
	}
	prior, ids, err := rp.ledgerCounts(ctx, b.records)
	if err != nil {
		return err
	}
	var (
		toKafka []out
		toKin   = map[string][]out{}
		stop    error
		n       = len(b.records) // records decided (the rest: not sent)
		refs    = make([]RecordRef, len(b.records))
	)
	for i, rec := range b.records {
		sum.Read++
		o, ref := rp.decide(rec, prior[i], sum)
		refs[i] = ref
		if o == nil || cfg.DryRun {
			if o != nil {
				sum.Replayed++
				sum.ByDestination[ref.Destination]++
				listRef(&sum.ReplayedRecords, ref)
			}
			continue
		}
		if err := lim.wait(ctx); err != nil {
			sum.Read--
			stop, n = err, i
			break
		}
		if o.stream != "" {
			toKin[o.stream] = append(toKin[o.stream], out{i: i, msg: o.msg, ref: ref, id: ids[i], count: o.count})
		} else {
			toKafka = append(toKafka, out{i: i, kafka: o.kafka, ref: ref})
		}
	}
	failed := make([]error, n) // per record decided: its write's error
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	for stream, os := range toKin {
		msgs := make([]record.Message, len(os))
		for j, o := range os {
			msgs[j] = o.msg
		}
		errs := cfg.Kinesis.Write(wctx, stream, msgs)
		for j, o := range os {
			if errs != nil && errs[j] != nil {
				failed[o.i] = fmt.Errorf("to kinesis stream %s: %w", stream, errs[j])
			}
		}
	}
	if len(toKafka) > 0 {
		recs := make([]*kgo.Record, len(toKafka))
		for j, o := range toKafka {
			recs[j] = o.kafka
		}
		res := cfg.Kafka.ProduceSync(wctx, recs...)
		for j, o := range toKafka {
			if j < len(res) && res[j].Err != nil {
				failed[o.i] = fmt.Errorf("to kafka topic %s: %w", o.kafka.Topic, res[j].Err)
			}
		}
	}
	written := func(os []out) {
		for _, o := range os {
			if failed[o.i] == nil {
				sum.Replayed++
				sum.ByDestination[o.ref.Destination]++
				listRef(&sum.ReplayedRecords, o.ref)
			}
		}
	}
	written(toKafka)
	var lids []string
	var lcounts []int
	for _, os := range toKin {
		written(os)
		for _, o := range os {
			if failed[o.i] == nil && o.id != "" {
				lids, lcounts = append(lids, o.id), append(lcounts, o.count+1)
			}
		}
	}
	if cfg.Ledger != nil && len(lids) > 0 {
		if err := cfg.Ledger.Record(wctx, lids, lcounts, cfg.LedgerTTL); err != nil {
			// The records are written; only the loop guard misses them.
			cfg.Logger.Warn().Err(err).Int("records", len(lids)).Msg("the replay ledger was not updated: --max-replays will not count this replay")
		}
	}
	// Checkpoint past the unbroken run of finished records.
	upto := n
	var ferr error
	for i, err := range failed {
		if err != nil {
			upto, ferr = i, fmt.Errorf("replaying %s/%s@%s: %w", cfg.Stream, b.shard, b.records[i].ref.Sequence, err)
			break
		}
	}
	if upto > 0 && !cfg.DryRun {
		if err := rp.checkpoint(ctx, token, b.shard, b.records[upto-1].ref.Sequence); err != nil {
			return errors.Join(ferr, err)
		}
	}
	if ferr != nil {
		return ferr
	}
	return stop
}

func (rp *KinesisReplayer) checkpoint(ctx context.Context, token, shard, seq string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := rp.cfg.Checkpoints.Save(cctx, rp.cfg.Group, token, shard, seq); err != nil {
		return fmt.Errorf("checkpointing %s (the records of this batch were replayed and will be again by the next run): %w", shard, err)
	}
	return nil
}

// kinesisOut is what to write for one replayed record: msg to the Kinesis
// stream stream, or kafka to Kafka; count is how many times it was
// replayed before.
type kinesisOut struct {
	stream string
	msg    record.Message
	kafka  *kgo.Record
	count  int
}

// ledgerCounts returns, per record of recs that goes back to a Kinesis
// stream, its LedgerID and the ledger's count of its replays (0 and ""
// for the others, or without a ledger).
func (rp *KinesisReplayer) ledgerCounts(ctx context.Context, recs []rawRecord) (counts []int, ids []string, err error) {
	counts, ids = make([]int, len(recs)), make([]string, len(recs))
	if rp.cfg.Ledger == nil || rp.cfg.To != "" || rp.cfg.Kinesis == nil {
		return counts, ids, nil
	}
	var ask []string
	var at []int
	for i, rec := range recs {
		if e, err := rec.parse(); err == nil && e.Source.Stream != "" && e.Source.KafkaID() < 0 {
			ids[i] = LedgerID(e.Source.Stream, e.Key, e.Value)
			ask, at = append(ask, ids[i]), append(at, i)
		}
	}
	got, err := rp.cfg.Ledger.Counts(ctx, ask)
	if err != nil {
		return nil, nil, err
	}
	for j, i := range at {
		counts[i] = got[j]
	}
	return counts, ids, nil
}

// decide classifies rec, counting it in sum (except Replayed, counted
// once it is written), and returns what to write (nil: nothing) and how to
// list it.
func (rp *KinesisReplayer) decide(rec rawRecord, prior int, sum *ReplaySummary) (*kinesisOut, RecordRef) {
	cfg := rp.cfg
	ref := rec.ref
	ref.Key = previewKey(rec.key)
	e, err := rec.parse()
	if err == nil {
		e.ReplayCount = max(e.ReplayCount, prior) // replays into Kinesis, from the ledger
	}
	var o *kinesisOut
	if err == nil {
		switch {
		case cfg.To != "":
			ref.Destination = cfg.To
			o = &kinesisOut{kafka: replayRecord(e, cfg.To)}
		case e.Source.Stream == "":
			err = fmt.Errorf("dlq envelope: header %s is empty: nowhere to replay to", HeaderStream)
		case e.Source.KafkaID() >= 0 && cfg.Kafka != nil:
			ref.Destination = e.Source.Stream
			o = &kinesisOut{kafka: replayRecord(e, e.Source.Stream)}
			o.kafka.Partition = e.Source.KafkaID()
		case e.Source.KafkaID() >= 0:
			err = fmt.Errorf("dlq envelope: %s is a Kafka partition, and no Kafka connection is given (--brokers)", e.Source)
		case cfg.Kinesis != nil:
			ref.Destination = kinesisDest + e.Source.Stream
			// Kinesis records have no headers: key and value only.
			o = &kinesisOut{stream: e.Source.Stream, msg: record.Message{Key: e.Key, Value: e.Value, Timestamp: e.Timestamp}, count: e.ReplayCount}
		default:
			err = fmt.Errorf("dlq envelope: %s is a Kinesis shard, and no Kinesis writer is given", e.Source)
		}
	}
	switch {
	case err != nil:
		sum.Invalid++
		ref.Reason = err.Error()
		listRef(&sum.InvalidRecords, ref)
		cfg.Logger.Info().Str("shard", ref.Shard).Str("sequence", ref.Sequence).Err(err).
			Msg("not a weir envelope: skipped (and checkpointed)")
		return nil, ref
	case !cfg.Filter.Match(e):
		sum.SkippedByFilter++
		return nil, ref
	case e.ReplayCount >= cfg.MaxReplays:
		sum.Refused++
		ref.Reason = fmt.Sprintf("replayed %d times already (max %d)", e.ReplayCount, cfg.MaxReplays)
		listRef(&sum.RefusedRecords, ref)
		cfg.Logger.Info().Str("shard", ref.Shard).Str("sequence", ref.Sequence).
			Int("replay_count", e.ReplayCount).Str("source", e.SourcePosition()).
			Msg("refused: replayed too many times (checkpointed, not written)")
		return nil, ref
	}
	return o, ref
}
