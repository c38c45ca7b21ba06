package dlq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/record"
)

// DefaultMaxReplays is how many times a record may be replayed by default:
// a record whose weir.replay-count has reached it is refused.
const DefaultMaxReplays = 3

// GroupPrefix starts the name of every default replay group.
const GroupPrefix = "weir-replay."

// commitTimeout bounds the commit of what was replayed when the run is
// being stopped (its context is done).
const commitTimeout = 10 * time.Second

// errNotSent marks a record the run stopped before producing.
var errNotSent = errors.New("not replayed: the run stopped first")

// Filter selects the DLQ records a replay re-produces. Zero fields select
// everything; set fields must all match.
type Filter struct {
	// Pipeline matches weir.pipeline exactly.
	Pipeline string
	// ErrorClass matches weir.error.class exactly.
	ErrorClass string
	// Since and Until bound weir.failure.last (the record's last failure):
	// Since <= last < Until. A record without a failure time matches no
	// time bound.
	Since, Until time.Time
	// Key matches the record's key (its bytes; a null key is empty).
	Key *regexp.Regexp
}

// IsZero reports whether f selects every record.
func (f Filter) IsZero() bool {
	return f.Pipeline == "" && f.ErrorClass == "" && f.Since.IsZero() && f.Until.IsZero() && f.Key == nil
}

// Match reports whether f selects e.
func (f Filter) Match(e *Entry) bool {
	if f.Pipeline != "" && e.Origin.Pipeline != f.Pipeline {
		return false
	}
	if f.ErrorClass != "" && e.Failure.Class != f.ErrorClass {
		return false
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		t := e.Failure.LastFailure
		if t.IsZero() {
			t = e.Failure.FirstFailure
		}
		if t.IsZero() || (!f.Since.IsZero() && t.Before(f.Since)) || (!f.Until.IsZero() && !t.Before(f.Until)) {
			return false
		}
	}
	return f.Key == nil || f.Key.Match(e.Key)
}

// String is f in a canonical form, the same for equal filters.
func (f Filter) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+strconv.Quote(v))
		}
	}
	add("pipeline", f.Pipeline)
	add("error-class", f.ErrorClass)
	add("since", formatTime(f.Since))
	add("until", formatTime(f.Until))
	if f.Key != nil {
		add("key", f.Key.String())
	}
	return strings.Join(parts, " ")
}

// checkReplayOptions checks the options every replay shares: the rate, the
// replay limit and the filter's time range.
func checkReplayOptions(rate float64, maxReplays int, f Filter) error {
	switch {
	case math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0:
		return fmt.Errorf("dlq replay: Rate: %v must be a number of records per second, at least 0 (0: unlimited)", rate)
	case maxReplays < 0:
		return fmt.Errorf("dlq replay: MaxReplays: %d must be at least 1 (0: the default, %d)", maxReplays, DefaultMaxReplays)
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until):
		return fmt.Errorf("dlq replay: Filter.Since (%s) must be before Filter.Until (%s)", formatTime(f.Since), formatTime(f.Until))
	}
	return nil
}

// DefaultGroup is the consumer group of a replay of topic that selects with
// f and sends to to ("": the records' original topics). With no filter and
// no destination it is "weir-replay.<topic>"; otherwise a hash of the filter
// and the destination is appended ("weir-replay.<topic>.<hash>"), so a
// replay with another filter or destination starts from the beginning of
// the topic and sees the records earlier replays skipped, while running the
// same replay again resumes where it stopped.
func DefaultGroup(topic, to string, f Filter) string {
	g := GroupPrefix + topic
	if f.IsZero() && to == "" {
		return g
	}
	sum := sha256.Sum256([]byte(f.String() + " to=" + strconv.Quote(to)))
	return g + "." + hex.EncodeToString(sum[:6])
}

// ReplayConfig configures a Replayer.
type ReplayConfig struct {
	// Brokers are the seed brokers of the DLQ topic and of the topics
	// records are replayed to; required.
	Brokers []string
	// Client holds extra connection options (TLS, SASL, client id, ...),
	// applied after the replayer's own, so they may override them.
	Client []kgo.Opt
	// Topic is the DLQ topic; required.
	Topic string
	// To, when set, receives every replayed record instead of its original
	// topic (weir.source.stream). It must exist.
	To string
	// ToBrokers are the seed brokers of the cluster records are replayed
	// to, when it is not the DLQ's (a pipeline's dlq.kafka.brokers); nil
	// means Brokers. Client applies to both.
	ToBrokers []string
	// Filter selects the records to replay; the others are skipped.
	Filter Filter
	// Rate is the most records per second produced; 0 means unlimited.
	Rate float64
	// MaxReplays refuses a record whose weir.replay-count is already at
	// least this, so that a record that keeps failing cannot loop; 0
	// means DefaultMaxReplays.
	MaxReplays int
	// Group is the consumer group whose committed offsets say where a
	// replay resumes; "" means DefaultGroup(Topic, To, Filter).
	Group string
	// DryRun reads and counts what would be replayed, from the group's
	// committed offsets, without producing or committing anything and
	// without joining the group.
	DryRun bool
	// Kinesis, when set, writes back the records whose source is a
	// Kinesis shard (weir.source.partition is a shard id) to their stream;
	// without it they are invalid unless To is set. Kinesis records carry
	// no headers: such a record goes back with its key (as partition key)
	// and value only, so its weir.replay-count does not travel and
	// MaxReplays cannot stop it from looping through repeated replays.
	Kinesis KinesisWriter
	// Progress, when set, is called on the Run goroutine after each batch
	// of records.
	Progress func(ReplayProgress)
	// Logger receives the refused and invalid records (info level) and
	// the Kafka client's warnings. The zero value logs nothing.
	Logger zerolog.Logger
}

// KinesisWriter writes replayed records back to a Kinesis stream. Write
// returns one error per message (nil where it was written), or nil when
// every one was.
type KinesisWriter interface {
	Write(ctx context.Context, stream string, msgs []record.Message) []error
}

// kinesisDest is how a replay to a Kinesis stream is named in summaries.
const kinesisDest = "kinesis:"

// ReplayProgress is how far a replay is.
type ReplayProgress struct {
	// Read is how many offsets of the DLQ topic were read, of Total.
	Read, Total int64
	// The counts so far, as in ReplaySummary.
	Replayed, SkippedByFilter, Refused, Invalid int64
}

// Replayer re-produces DLQ records to where they came from. Run may be
// called again once it has returned (a second run resumes where the first
// stopped), not concurrently: two concurrent replays of one group should be
// two processes, or two Replayers.
type Replayer struct {
	cfg   ReplayConfig
	batch int // records per poll; 0: pollSize(cfg.Rate). Tests set it.
}

// NewReplayer validates cfg, naming the bad field, and applies its
// defaults. It connects to nothing.
func NewReplayer(cfg ReplayConfig) (*Replayer, error) {
	if err := validateConn("dlq replay", cfg.Brokers, cfg.Topic); err != nil {
		return nil, err
	}
	for i, b := range cfg.ToBrokers {
		if b == "" {
			return nil, fmt.Errorf("dlq replay: ToBrokers[%d]: must not be empty", i)
		}
	}
	if err := checkReplayOptions(cfg.Rate, cfg.MaxReplays, cfg.Filter); err != nil {
		return nil, err
	}
	switch {
	case cfg.To == cfg.Topic && len(cfg.ToBrokers) == 0:
		return nil, fmt.Errorf("dlq replay: To: %q is the DLQ topic itself", cfg.To)
	}
	if cfg.MaxReplays == 0 {
		cfg.MaxReplays = DefaultMaxReplays
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup(cfg.Topic, cfg.To, cfg.Filter)
	}
	return &Replayer{cfg: cfg}, nil
}

// Group returns the consumer group the replay uses.
func (rp *Replayer) Group() string { return rp.cfg.Group }

// ReplaySummary is what a replay did (in a dry run: would do).
type ReplaySummary struct {
	// Topic is the DLQ topic; Stream the DLQ stream (a Kinesis DLQ). One
	// of them is set.
	Topic  string `json:"topic,omitempty"`
	Stream string `json:"stream,omitempty"`
	Group  string `json:"group"`
	To     string `json:"to,omitempty"`
	Filter string `json:"filter,omitempty"`
	DryRun bool   `json:"dry_run"`
	// MaxReplays is the replay count at which records are refused.
	MaxReplays int `json:"max_replays"`
	// Read is how many records of the DLQ topic were looked at.
	Read int64 `json:"read"`
	// Replayed were produced and acknowledged (dry run: would be).
	Replayed int64 `json:"replayed"`
	// SkippedByFilter did not match the filter; they are committed.
	SkippedByFilter int64 `json:"skipped_by_filter"`
	// Refused had been replayed MaxReplays times already; they are
	// committed, not produced.
	Refused int64 `json:"refused"`
	// Invalid are not weir envelopes, or name no topic to go to; they
	// are committed, not produced.
	Invalid int64 `json:"invalid"`
	// ByDestination counts Replayed by topic.
	ByDestination map[string]int64 `json:"by_destination"`
	// ReplayedRecords, RefusedRecords and InvalidRecords list the first
	// MaxListed of each.
	ReplayedRecords []RecordRef `json:"replayed_records,omitempty"`
	RefusedRecords  []RecordRef `json:"refused_records,omitempty"`
	InvalidRecords  []RecordRef `json:"invalid_records,omitempty"`
	// Partitions are the offsets the run set out to read: from the
	// group's committed offsets to the ends at the start of the run (a
	// Kafka DLQ).
	Partitions []PartitionSpan `json:"partitions,omitempty"`
	// Shards are what the run read of each shard (a Kinesis DLQ).
	Shards []ShardSpan `json:"shards,omitempty"`
	// Unfinished lists partitions not read to their end because another
	// member of the group (a concurrent replay) holds them.
	Unfinished []int32 `json:"unfinished_partitions,omitempty"`
	DurationS  float64 `json:"duration_s"`
}

func (s *ReplaySummary) progress(read, total int64) ReplayProgress {
	return ReplayProgress{Read: read, Total: total, Replayed: s.Replayed, SkippedByFilter: s.SkippedByFilter,
		Refused: s.Refused, Invalid: s.Invalid}
}

// Run replays the DLQ topic from the group's committed offsets up to each
// partition's last stable offset at the start of the run, then returns;
// it does not wait for new records.
//
// It joins the consumer group (so two replays of one group split the
// partitions instead of replaying records twice), reads the records in
// batches and, for each record: counts it invalid if it is not an
// envelope, skips it if the filter does not select it, refuses it if its
// weir.replay-count is at least MaxReplays, and otherwise produces it to
// To or its original topic with its original key, value, headers and
// timestamp, every weir.* header removed, plus weir.replay-count (one
// more than before) and weir.replay.source-position (where it was
// dead-lettered from); to its original partition, or by key to To.
// Production is idempotent and rate-limited. Once
// every record of a batch is acknowledged, the batch's offsets are
// committed, skipped, refused and invalid records included: a replay
// never commits a record it has not finished with, and never sees a
// record it committed again.
//
// When ctx ends or producing fails, Run commits each partition up to its
// first record not acknowledged and returns the summary so far with the
// error (wrapping ctx's error, or naming the record that failed). Records
// of the same batch after a failed one may have been produced already;
// the next run replays them again. The summary is never nil.
func (rp *Replayer) Run(ctx context.Context) (*ReplaySummary, error) {
	start := time.Now()
	cfg := rp.cfg
	sum := &ReplaySummary{Topic: cfg.Topic, Group: cfg.Group, To: cfg.To, Filter: cfg.Filter.String(),
		DryRun: cfg.DryRun, MaxReplays: cfg.MaxReplays, ByDestination: map[string]int64{}}
	defer func() { sum.DurationS = time.Since(start).Seconds() }()

	acl, err := kgo.NewClient(baseOpts(cfg.Brokers, cfg.Logger, cfg.Client)...)
	if err != nil {
		return sum, fmt.Errorf("dlq replay: create client: %w", err)
	}
	defer acl.Close()
	adm := kadm.NewClient(acl)
	spans, err := topicSpans(ctx, adm, cfg.Topic)
	if err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	committed, err := committedOffsets(ctx, adm, cfg.Group, cfg.Topic)
	if err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	for p, s := range spans {
		if c, ok := committed[p]; ok {
			s.From = max(s.From, c)
			spans[p] = s
		}
		sum.Partitions = append(sum.Partitions, spans[p])
	}
	sort.Slice(sum.Partitions, func(i, j int) bool { return sum.Partitions[i].Partition < sum.Partitions[j].Partition })
	// prod produces the replayed records: the consuming client, or one of
	// its own on another cluster.
	var prod *kgo.Client
	toAdm := adm
	if len(cfg.ToBrokers) > 0 {
		opts := append(baseOpts(cfg.ToBrokers, cfg.Logger, nil), rp.producerOpts()...)
		if prod, err = kgo.NewClient(append(opts, cfg.Client...)...); err != nil {
			return sum, fmt.Errorf("dlq replay: create producer: %w", err)
		}
		defer prod.Close()
		toAdm = kadm.NewClient(prod)
	}
	if cfg.To != "" {
		if err := topicExists(ctx, toAdm, cfg.To); err != nil {
			return sum, fmt.Errorf("dlq replay: To: %w", err)
		}
	}

	r := newReader(adm, cfg.Topic, spans, !cfg.DryRun, cfg.Logger)
	r.group = cfg.Group
	if !r.pending() {
		return sum, nil // nothing new since the last replay of this group
	}
	opts := baseOpts(cfg.Brokers, cfg.Logger, nil)
	if prod == nil {
		opts = append(opts, rp.producerOpts()...)
	}
	if cfg.DryRun {
		opts = append(opts, kgo.ConsumePartitions(r.startOffsets()))
	} else {
		onRevoke := func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.revoke(m[cfg.Topic]) }
		opts = append(opts,
			kgo.ConsumerGroup(cfg.Group),
			kgo.ConsumeTopics(cfg.Topic),
			kgo.DisableAutoCommit(),
			// Every polled record is produced and committed before a
			// rebalance may proceed: nothing is left half done.
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.assign(m[cfg.Topic]) }),
			kgo.OnPartitionsRevoked(onRevoke),
			kgo.OnPartitionsLost(onRevoke),
		)
	}
	cl, err := kgo.NewClient(append(opts, cfg.Client...)...)
	if err != nil {
		return sum, fmt.Errorf("dlq replay: create client: %w", err)
	}
	defer cl.Close()
	r.cl = cl
	if prod == nil {
		prod = cl
	}
	for p, done := range r.done {
		if done { // nothing to read there: do not fetch what comes next
			cl.PauseFetchPartitions(map[string][]int32{cfg.Topic: {p}})
		}
	}

	lim := newLimiter(cfg.Rate)
	batch := rp.batch
	if batch == 0 {
		batch = pollSize(cfg.Rate)
	}
	for !r.finished() {
		recs, err := r.poll(ctx, batch)
		if err == nil && len(recs) > 0 {
			err = rp.replay(ctx, cl, prod, lim, recs, sum)
		}
		if !cfg.DryRun {
			cl.AllowRebalance()
		}
		if cfg.Progress != nil {
			cfg.Progress(sum.progress(r.progress()))
		}
		if err != nil {
			return sum, fmt.Errorf("dlq replay: %w", err)
		}
	}
	if !cfg.DryRun {
		sum.Unfinished = r.unfinished()
	}
	return sum, nil
}

// producerOpts are the options of the client that produces replayed
// records. Back to their original topic, records go to their original
// partition: a key hash might not pick it (the producer that wrote the
// original may hash differently), and the pipeline's per-key order relies
// on a key staying in one partition. To another topic, they go by key.
func (rp *Replayer) producerOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.ProducerLinger(5 * time.Millisecond)}
	if rp.cfg.To == "" {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	return opts
}

// pollSize keeps a batch to about two seconds of work at rate, so that
// commits are frequent and a rebalance is never held for long.
func pollSize(rate float64) int {
	if rate <= 0 {
		return 500
	}
	return int(min(500, max(1, rate*2)))
}

func topicExists(ctx context.Context, adm *kadm.Client, topic string) error {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", topic, err)
	}
	d, ok := td[topic]
	switch {
	case !ok:
		return fmt.Errorf("topic %s does not exist", topic)
	case errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("topic %s does not exist: %w", topic, d.Err)
	case d.Err != nil:
		return fmt.Errorf("topic %s: %w", topic, d.Err)
	}
	return nil
}

// replay handles one batch: decides each record, produces the selected
// ones through prod, waits for their acknowledgements and commits through
// cl. recs are in offset order per partition.
func (rp *Replayer) replay(ctx context.Context, cl, prod *kgo.Client, lim *limiter, recs []*kgo.Record, sum *ReplaySummary) error {
	cfg := rp.cfg
	outs := make([]*kgo.Record, len(recs)) // what to produce; nil: nothing
	refs := make([]RecordRef, len(recs))   // for the summary's list
	status := make([]error, len(recs))     // nil: finished with
	var (
		wg   sync.WaitGroup
		stop error
	)
	kin := map[string][]int{} // Kinesis stream → indexes of recs to write there
	for i, rec := range recs {
		if stop != nil {
			status[i] = errNotSent
			continue
		}
		if rec.Attrs.IsControl() {
			continue // a transaction marker: nothing to replay, committed
		}
		sum.Read++
		outs[i], refs[i] = rp.decide(rec, sum)
		if outs[i] == nil || cfg.DryRun {
			continue
		}
		if strings.HasPrefix(refs[i].Destination, kinesisDest) {
			if err := lim.wait(ctx); err != nil {
				stop, status[i] = err, errNotSent
				continue
			}
			kin[outs[i].Topic] = append(kin[outs[i].Topic], i)
			continue
		}
		if err := lim.wait(ctx); err != nil {
			stop, status[i] = err, errNotSent
			continue
		}
		wg.Add(1)
		// Promises run serially on the client's goroutine; this one only
		// stores. status is read after wg.Wait.
		prod.Produce(ctx, outs[i], func(_ *kgo.Record, err error) {
			status[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	for stream, idx := range kin {
		msgs := make([]record.Message, len(idx))
		for j, i := range idx {
			msgs[j] = record.Message{Key: outs[i].Key, Value: outs[i].Value, Timestamp: outs[i].Timestamp}
		}
		errs := cfg.Kinesis.Write(ctx, stream, msgs)
		for j, i := range idx {
			if errs != nil {
				status[i] = errs[j]
			}
		}
	}

	// Count what was acknowledged, and commit each partition up to its
	// first record not finished with.
	commit := map[int32]kgo.EpochOffset{}
	blocked := map[int32]bool{}
	var failed error
	for i, rec := range recs {
		p, err := rec.Partition, status[i]
		if err == nil && outs[i] != nil {
			// Acknowledged: replayed, even if not committed (after a
			// failed record of its partition, it will be again).
			sum.Replayed++
			sum.ByDestination[refs[i].Destination]++
			listRef(&sum.ReplayedRecords, refs[i])
		}
		if err != nil || blocked[p] {
			blocked[p] = true
			if err != nil && failed == nil && !errors.Is(err, errNotSent) {
				failed = fmt.Errorf("replaying %s/%d@%d to %s: %w", cfg.Topic, p, rec.Offset, outs[i].Topic, err)
			}
			continue
		}
		commit[p] = kgo.EpochOffset{Epoch: rec.LeaderEpoch, Offset: rec.Offset + 1}
	}
	if !cfg.DryRun {
		if err := rp.commit(ctx, cl, commit); err != nil {
			return errors.Join(failed, err)
		}
	}
	if failed != nil {
		return failed
	}
	return stop
}

// decide classifies rec, counting it in sum, and returns the record to
// produce (nil: none) and how to list it.
func (rp *Replayer) decide(rec *kgo.Record, sum *ReplaySummary) (*kgo.Record, RecordRef) {
	ref := RecordRef{Partition: rec.Partition, Offset: rec.Offset, Key: previewKey(rec.Key)}
	e, err := Parse(rec.Key, rec.Value, headers(rec.Headers))
	dest := rp.cfg.To
	toKinesis := false
	if err == nil && dest == "" {
		switch dest = e.Source.Stream; {
		case dest == "":
			err = fmt.Errorf("dlq envelope: header %s is empty: no topic to replay to", HeaderStream)
		case e.Source.KafkaID() >= 0:
		case rp.cfg.Kinesis != nil:
			toKinesis = true
		default:
			err = fmt.Errorf("dlq envelope: header %s: %q is not a Kafka partition (a Kinesis shard: replay it with a Kinesis writer, or --to a topic)", HeaderPartition, e.Source.ID)
		}
	}
	ref.Destination = dest
	if toKinesis {
		ref.Destination = kinesisDest + dest
	}
	switch {
	case err != nil:
		sum.Invalid++
		ref.Reason = err.Error()
		listRef(&sum.InvalidRecords, ref)
		rp.cfg.Logger.Info().Int32("partition", rec.Partition).Int64("offset", rec.Offset).Err(err).
			Msg("not a weir envelope: skipped (and committed)")
		return nil, ref
	case !rp.cfg.Filter.Match(e):
		sum.SkippedByFilter++
		return nil, ref
	case e.ReplayCount >= rp.cfg.MaxReplays:
		sum.Refused++
		ref.Reason = fmt.Sprintf("replayed %d times already (max %d)", e.ReplayCount, rp.cfg.MaxReplays)
		listRef(&sum.RefusedRecords, ref)
		rp.cfg.Logger.Info().Int32("partition", rec.Partition).Int64("offset", rec.Offset).
			Int("replay_count", e.ReplayCount).Str("source", e.SourcePosition()).
			Msg("refused: replayed too many times (committed, not produced)")
		return nil, ref
	}
	out := replayRecord(e, dest)
	if rp.cfg.To == "" && !toKinesis {
		out.Partition = e.Source.KafkaID()
	}
	return out, ref
}

// replayRecord is the record a replay produces for e: its original key,
// value, headers (weir.* removed) and timestamp, plus the replay headers.
// Its partition is left to the caller.
func replayRecord(e *Entry, topic string) *kgo.Record {
	out := &kgo.Record{Topic: topic, Key: e.Key, Value: e.Value, Timestamp: e.Timestamp}
	out.Headers = make([]kgo.RecordHeader, 0, len(e.Headers)+2)
	for _, h := range e.Headers {
		if !strings.HasPrefix(h.Key, HeaderPrefix) {
			out.Headers = append(out.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderReplayCount, Value: []byte(strconv.Itoa(e.ReplayCount + 1))},
		kgo.RecordHeader{Key: HeaderReplaySourcePosition, Value: []byte(e.SourcePosition())})
	return out
}

// commit commits offsets for the group. When ctx is done already (the run
// is being stopped) it still commits, within commitTimeout, so that what
// was replayed is not replayed again.
func (rp *Replayer) commit(ctx context.Context, cl *kgo.Client, offsets map[int32]kgo.EpochOffset) error {
	if len(offsets) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	var cerr error
	cl.CommitOffsetsSync(cctx, map[string]map[int32]kgo.EpochOffset{rp.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
						cerr = fmt.Errorf("partition %d: %w", p.Partition, err)
					}
				}
			}
		})
	if cerr != nil {
		return fmt.Errorf("committing group %s (the records of this batch were replayed and will be again by the next run): %w",
			rp.cfg.Group, cerr)
	}
	return nil
}

func listRef(list *[]RecordRef, ref RecordRef) {
	if len(*list) < MaxListed {
		*list = append(*list, ref)
	}
}

// WriteText writes the summary for a person.
func (s *ReplaySummary) WriteText(w io.Writer) error {
	verb := "replayed"
	if s.DryRun {
		verb = "would replay"
		fmt.Fprintf(w, "dry run: nothing produced, nothing committed\n")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	dlqName := s.Topic
	if s.Stream != "" {
		dlqName = s.Stream
		fmt.Fprintf(tw, "stream\t%s\n", s.Stream)
	} else {
		fmt.Fprintf(tw, "topic\t%s\n", s.Topic)
	}
	fmt.Fprintf(tw, "group\t%s\n", s.Group)
	if s.Filter != "" {
		fmt.Fprintf(tw, "filter\t%s\n", s.Filter)
	}
	fmt.Fprintf(tw, "read\t%d\n", s.Read)
	fmt.Fprintf(tw, "%s\t%d\n", verb, s.Replayed)
	for _, c := range sortedCounts(s.ByDestination) {
		fmt.Fprintf(tw, "  to %s\t%d\n", c.k, c.n)
	}
	fmt.Fprintf(tw, "skipped by filter\t%d\n", s.SkippedByFilter)
	fmt.Fprintf(tw, "refused (replayed %d times)\t%d\n", s.MaxReplays, s.Refused)
	fmt.Fprintf(tw, "not envelopes\t%d\n", s.Invalid)
	fmt.Fprintf(tw, "took\t%.2fs\n", s.DurationS)
	if err := tw.Flush(); err != nil {
		return err
	}
	list := func(title string, refs []RecordRef, n int64, limit int) {
		if len(refs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for i, r := range refs {
			if i == limit {
				break
			}
			key := "null"
			if r.Key != nil {
				key = strconv.Quote(*r.Key)
			}
			what := r.Reason
			if what == "" {
				what = "-> " + r.Destination
			}
			fmt.Fprintf(tw, "  %s\tkey %s\t%s\n", r.where(dlqName), key, what)
		}
		tw.Flush()
		if rest := n - int64(min(len(refs), limit)); rest > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", rest)
		}
	}
	if s.DryRun {
		list("would replay", s.ReplayedRecords, s.Replayed, 10)
	}
	list("refused", s.RefusedRecords, s.Refused, 10)
	list("not envelopes", s.InvalidRecords, s.Invalid, 10)
	for _, sh := range s.Shards {
		if sh.Waiting {
			fmt.Fprintf(w, "\nshard %s waits for its parent shards to be replayed to their end; run again\n", sh.Shard)
		}
	}
	if len(s.Unfinished) > 0 {
		fmt.Fprintf(w, "\npartitions %v were left to another member of group %s (a concurrent replay)\n", s.Unfinished, s.Group)
	}
	return nil
}
