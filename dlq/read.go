package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kzlog"
	"github.com/weirhq/weir/record"
)

// ClientID is the Kafka client id of inspect and replay, unless the caller's
// client options set another.
const ClientID = "weir-dlq"

// idlePoll bounds one poll: when it brings nothing, the reader checks
// whether the partitions it waits for can still bring anything (their
// records deleted, or committed by another replay).
const idlePoll = time.Second

// MaxListed is how many records a Report or a ReplaySummary lists by
// position (invalid envelopes, refused records); their counts are exact.
const MaxListed = 50

// PartitionSpan is the part of one partition a run reads: offsets From
// (inclusive) to End (exclusive, the partition's last stable offset when the
// run started).
type PartitionSpan struct {
	Partition int32 `json:"partition"`
	From      int64 `json:"from"`
	End       int64 `json:"end"`
}

// baseOpts are the client options inspect and replay share: read_committed,
// control records kept (so that the offset before a partition's end is
// always seen, even when it is a transaction marker), short fetch waits.
func baseOpts(brokers []string, log zerolog.Logger, extra []kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(ClientID),
		// franz-go's info level narrates every group step; keep it for
		// debug and show its warnings otherwise.
		kgo.WithLogger(kzlog.New(log.Level(max(log.GetLevel(), zerolog.WarnLevel)).With().Str("component", "kafka").Logger())),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	return append(opts, extra...)
}

func validateConn(what string, brokers []string, topic string) error {
	if len(brokers) == 0 {
		return fmt.Errorf("%s: Brokers: at least one seed broker is required", what)
	}
	for i, b := range brokers {
		if b == "" {
			return fmt.Errorf("%s: Brokers[%d]: must not be empty", what, i)
		}
	}
	if topic == "" {
		return fmt.Errorf("%s: Topic: must not be empty", what)
	}
	return nil
}

// topicSpans returns, for every partition of topic, its log start offset
// and its last stable offset (the end a read_committed reader can reach).
// It fails if the topic does not exist.
func topicSpans(ctx context.Context, adm *kadm.Client, topic string) (map[int32]PartitionSpan, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing the end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing the start offsets of %s: %w", topic, err)
	}
	spans := map[int32]PartitionSpan{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		switch {
		case o.Topic != topic:
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
			lerr = fmt.Errorf("topic %s does not exist: %w", topic, o.Err)
		case o.Err != nil:
			if lerr == nil {
				lerr = fmt.Errorf("end offset of %s/%d: %w", topic, o.Partition, o.Err)
			}
		default:
			s, _ := starts.Lookup(topic, o.Partition)
			if s.Err != nil && lerr == nil {
				lerr = fmt.Errorf("start offset of %s/%d: %w", topic, o.Partition, s.Err)
			}
			spans[o.Partition] = PartitionSpan{Partition: o.Partition, From: max(s.Offset, 0), End: o.Offset}
		}
	})
	if lerr != nil {
		return nil, lerr
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("topic %s does not exist: %w", topic, kerr.UnknownTopicOrPartition)
	}
	return spans, nil
}

// committedOffsets returns group's committed offsets on topic; partitions
// without a commit are left out.
func committedOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	os, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("fetching the offsets of group %s: %w", group, err)
	}
	out := map[int32]int64{}
	var ferr error
	os.Each(func(o kadm.OffsetResponse) {
		switch {
		case o.Topic != topic, errors.Is(o.Err, kerr.GroupIDNotFound):
		case o.Err != nil:
			if ferr == nil {
				ferr = fmt.Errorf("offset of group %s on %s/%d: %w", group, topic, o.Partition, o.Err)
			}
		case o.At >= 0:
			out[o.Partition] = o.At
		}
	})
	return out, ferr
}

// reader reads the partitions of one topic up to end offsets fixed when it
// is made, and says when it is done. It is used from one goroutine, except
// for assign and revoke, which the group's callbacks call.
type reader struct {
	cl    *kgo.Client
	adm   *kadm.Client
	topic string
	log   zerolog.Logger
	// group, when set, is consulted when idle: a partition another replay
	// committed to its end is done.
	group string

	spans map[int32]PartitionSpan // From is where this run starts
	next  map[int32]int64         // the next offset not yet read
	done  map[int32]bool

	// mu guards owned and assigned, written by the group's callbacks.
	mu       sync.Mutex
	grouped  bool           // ownership follows a consumer group
	owned    map[int32]bool // grouped: the partitions assigned now
	assigned bool           // grouped: an assignment was received
}

// newReader reads spans of topic; a span with From >= End is done already.
// With grouped, only partitions assigned (see assign) are waited for.
func newReader(adm *kadm.Client, topic string, spans map[int32]PartitionSpan, grouped bool, log zerolog.Logger) *reader {
	r := &reader{adm: adm, topic: topic, log: log, spans: spans, grouped: grouped,
		next: map[int32]int64{}, done: map[int32]bool{}, owned: map[int32]bool{}}
	for p, s := range spans {
		r.next[p] = s.From
		r.done[p] = s.From >= s.End
	}
	return r
}

// pending reports whether any partition has records left to read.
func (r *reader) pending() bool {
	for _, d := range r.done {
		if !d {
			return true
		}
	}
	return false
}

// startOffsets are where a reader without a group starts: the pending
// partitions' From.
func (r *reader) startOffsets() map[string]map[int32]kgo.Offset {
	ps := map[int32]kgo.Offset{}
	for p, s := range r.spans {
		if !r.done[p] {
			ps[p] = kgo.NewOffset().At(s.From)
		}
	}
	return map[string]map[int32]kgo.Offset{r.topic: ps}
}

func (r *reader) assign(ps []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.assigned = true
	for _, p := range ps {
		r.owned[p] = true
	}
}

func (r *reader) revoke(ps []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		delete(r.owned, p)
	}
}

// finished reports whether the run is over: every partition read to its
// end; with a group, every partition this member holds (once it holds any).
func (r *reader) finished() bool {
	if !r.grouped {
		return !r.pending()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.assigned {
		return !r.pending()
	}
	for p, d := range r.done {
		if !d && r.owned[p] {
			return false
		}
	}
	return true
}

// unfinished lists the partitions not read to their end.
func (r *reader) unfinished() []int32 {
	var ps []int32
	for p, d := range r.done {
		if !d {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// progress returns how many offsets were read of how many to read.
func (r *reader) progress() (read, total int64) {
	for p, s := range r.spans {
		if s.From >= s.End {
			continue
		}
		total += s.End - s.From
		read += min(r.next[p], s.End) - s.From
	}
	return read, total
}

func (r *reader) markDone(p int32) {
	if r.done[p] {
		return
	}
	r.done[p] = true
	r.next[p] = max(r.next[p], r.spans[p].End)
	if r.cl != nil {
		r.cl.PauseFetchPartitions(map[string][]int32{r.topic: {p}})
	}
}

// poll returns the next records (control records included) below their
// partition's end, at most n, in offset order per partition. It returns
// no records and no error when a poll of idlePoll brought nothing; it
// returns ctx's error once ctx is done.
func (r *reader) poll(ctx context.Context, n int) ([]*kgo.Record, error) {
	pctx, cancel := context.WithTimeout(ctx, idlePoll)
	fs := r.cl.PollRecords(pctx, n)
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if fs.IsClientClosed() {
		return nil, kgo.ErrClientClosed
	}
	for _, fe := range fs.Errors() {
		var (
			dl *kgo.ErrDataLoss
			gs *kgo.ErrGroupSession
		)
		switch {
		case errors.Is(fe.Err, context.DeadlineExceeded), errors.Is(fe.Err, context.Canceled):
		case errors.As(fe.Err, &gs) && !kerr.IsRetriable(gs.Err) && errors.As(gs.Err, new(*kerr.Error)):
			// Refused by the broker (group authorization, ...): it will
			// not get better by waiting.
			return nil, fmt.Errorf("joining the consumer group: %w", gs.Err)
		case errors.As(fe.Err, &dl), errors.As(fe.Err, &gs):
			// Informational: the client has reset or rejoined and goes on.
			r.log.Warn().Err(fe.Err).Str("topic", fe.Topic).Int32("partition", fe.Partition).Msg("reading the dlq topic")
		default:
			return nil, fmt.Errorf("reading %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
	}
	var out []*kgo.Record
	seen := false
	fs.EachRecord(func(rec *kgo.Record) {
		seen = true
		s, ok := r.spans[rec.Partition]
		if rec.Topic != r.topic || !ok || r.done[rec.Partition] {
			return // a partition created after the start, or read already
		}
		if rec.Offset >= s.End {
			// The offset before End is gone (deleted by retention).
			r.markDone(rec.Partition)
			return
		}
		out = append(out, rec)
		r.next[rec.Partition] = rec.Offset + 1
		if rec.Offset >= s.End-1 {
			r.markDone(rec.Partition)
		}
	})
	if !seen {
		if err := r.recheck(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// recheck marks done the partitions that can bring nothing more: their
// records below End were deleted, or (with a group) another replay of the
// group committed them.
func (r *reader) recheck(ctx context.Context) error {
	if !r.pending() {
		return nil
	}
	starts, err := r.adm.ListStartOffsets(ctx, r.topic)
	if err != nil {
		return fmt.Errorf("listing the start offsets of %s: %w", r.topic, err)
	}
	var committed map[int32]int64
	if r.group != "" {
		if committed, err = committedOffsets(ctx, r.adm, r.group, r.topic); err != nil {
			return err
		}
	}
	for p, s := range r.spans {
		if r.done[p] {
			continue
		}
		if o, ok := starts.Lookup(r.topic, p); ok && o.Err == nil && o.Offset >= s.End {
			r.markDone(p)
		} else if c, ok := committed[p]; ok && c >= s.End {
			r.markDone(p)
		}
	}
	return nil
}

// headers converts kgo headers to record headers.
func headers(hs []kgo.RecordHeader) []record.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]record.Header, len(hs))
	for i, h := range hs {
		out[i] = record.Header{Key: h.Key, Value: h.Value}
	}
	return out
}
