// Package kafka is the Kafka source: a franz-go consumer group member that
// drives the host's lanes. It reads, commits, pauses and closes; batching,
// retries and checkpoint policy belong to the host.
//
// The member uses the cooperative-sticky balancer, commits only what the host
// asks it to commit (auto-commit is off), and blocks rebalances while a poll's
// records are being handed to the lanes (BlockRebalanceOnPoll), so a
// rebalance callback never runs between a poll and the delivery of its
// records.
//
// The package also holds EnsureTopics, for the host to create sink and DLQ
// topics, and StartEmbedded, an in-process broker for quickstarts and tests.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/internal/kzlog"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// Start is where a group without committed offsets begins; see
// sources.Start.
type Start = sources.Start

// The start kinds, re-exported for callers of this package.
const (
	StartEarliest = sources.StartEarliest
	StartLatest   = sources.StartLatest
	StartTime     = sources.StartTime
)

// Config configures a Source.
type Config struct {
	// Client holds the connection options built by the host: seed brokers,
	// TLS, SASL, client id, timeouts. The source adds its own group options
	// after these, so the consumer group settings listed in the package doc
	// cannot be overridden; a kgo.WithLogger here replaces the one built
	// from Logger. Group timing (kgo.HeartbeatInterval, SessionTimeout,
	// RebalanceTimeout) may be tuned here.
	Client []kgo.Opt
	// Topics to consume; required, no empty names.
	Topics []string
	// Group is the consumer group; required.
	Group string
	// Start applies to partitions the group has never committed.
	Start Start
	// Logger receives the source's and the Kafka client's logs. The zero
	// value logs nothing.
	Logger zerolog.Logger
	// FetchMaxBytes bounds one fetch response (kgo.FetchMaxBytes); 0 keeps
	// franz-go's default of 50MiB.
	FetchMaxBytes int32
	// FetchMaxPartitionBytes bounds what one fetch brings of one partition
	// (kgo.FetchMaxPartitionBytes), though a record batch larger than that
	// still comes whole; 0 keeps franz-go's default of 1MiB. franz-go drops
	// what a buffered fetch holds of a partition paused before it is
	// polled, and fetches it again after the resume: the smaller this is,
	// the less a pause wastes.
	FetchMaxPartitionBytes int32
	// TransactionalID, if set, puts the source in exactly-once mode (see
	// txn.go): it reads only committed records, its Kafka sinks produce
	// through TxnProducer, and progress is committed by EndTransaction,
	// not Commit. It must be unique among live processes.
	TransactionalID string
	// TransactionTimeout is how long the broker lets a transaction stay
	// open before it aborts it (kgo.TransactionTimeout); exactly-once mode
	// only. 0 keeps franz-go's default.
	TransactionTimeout time.Duration
}

// ErrNotAssigned is returned by Commit for a partition this source does not
// currently own: never assigned, already revoked or lost, or Run not started
// or finished.
var ErrNotAssigned = errors.New("partition not assigned to this consumer")

// ErrRunCalled is returned by a second call to Run.
var ErrRunCalled = errors.New("kafka source: Run called twice")

// Source is one consumer group member reading a pipeline's topics. Run it
// once; Commit, Pause and Resume are safe for concurrent use with Run and
// with each other.
type Source struct {
	cfg  Config
	opts []kgo.Opt
	log  zerolog.Logger

	ran atomic.Bool
	cl  atomic.Pointer[kgo.Client]
	// running is true between the client's creation and Run's shutdown.
	running atomic.Bool
	lanes   sources.Lanes // set by Run before the client exists
	// lent is set (by Run) when lanes copies the bytes of what it is
	// delivered (sources.BytesCopier): deliver then lends it the fetch's
	// own bytes instead of copying them into a buffer first.
	lent bool
	txn  *txnState // exactly-once mode only

	// lanesMu serializes calls into lanes. kgo already keeps the rebalance
	// callbacks and the poll loop apart (BlockRebalanceOnPoll); this makes
	// the Lanes contract hold even if that ever changes.
	lanesMu sync.Mutex

	// gate orders commits against ownership changes: a Commit holds it
	// shared for its whole round trip, and removing partitions (after
	// Lanes.Revoke returns, before Lanes.Lost is called) takes it
	// exclusively, so no commit for a partition is in flight once it is
	// gone. Commits made inside Lanes.Revoke run before the removal.
	gate sync.RWMutex
	// mu guards parts.
	mu    sync.Mutex
	parts map[record.Partition]*partState

	// kept and deliveries are deliver's scratch (it runs on the poll loop
	// only): the records of a fetched partition it keeps, and their
	// deliveries.
	kept       []*kgo.Record
	deliveries [][]record.Record
}

var _ sources.Source = (*Source)(nil)

// partState is what the source tracks for one owned partition.
type partState struct {
	// gen is the group generation the partition was claimed in.
	gen int64
	// next is the offset the next delivered record must be at or above;
	// -1 until the first record of the claim.
	next int64
	// epochs records where the leader epoch changed among delivered
	// records, ascending, so a commit can carry the epoch of the record it
	// commits (KIP-320). Epochs change rarely; this stays a few entries.
	epochs []epochMark
}

type epochMark struct {
	from  int64
	epoch int32
}

func (st *partState) noteEpoch(offset int64, epoch int32) {
	if n := len(st.epochs); n == 0 || st.epochs[n-1].epoch != epoch {
		st.epochs = append(st.epochs, epochMark{offset, epoch})
	}
}

// epochAt is the leader epoch of the delivered record at offset, or -1.
func (st *partState) epochAt(offset int64) int32 {
	for i := len(st.epochs) - 1; i >= 0; i-- {
		if st.epochs[i].from <= offset {
			return st.epochs[i].epoch
		}
	}
	return -1
}

// forgetEpochsBefore drops marks no commit at or above offset can need.
func (st *partState) forgetEpochsBefore(offset int64) {
	i := 0
	for i+1 < len(st.epochs) && st.epochs[i+1].from <= offset {
		i++
	}
	if i > 0 {
		st.epochs = slices.Delete(st.epochs, 0, i)
	}
}

// New validates cfg and returns a Source. It does not connect: the client
// is created, and the group joined, by Run.
func New(cfg Config) (*Source, error) {
	start, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:   cfg,
		log:   cfg.Logger.With().Str("component", "kafka-source").Str("group", cfg.Group).Logger(),
		parts: make(map[record.Partition]*partState),
	}
	opts := []kgo.Opt{kgo.WithLogger(kzlog.New(cfg.Logger.With().Str("component", "kgo").Str("group", cfg.Group).Logger()))}
	opts = append(opts, cfg.Client...)
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeStartOffset(start),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
		kgo.WithPools(&fetchPools{}),
	)
	if cfg.FetchMaxBytes > 0 {
		opts = append(opts, kgo.FetchMaxBytes(cfg.FetchMaxBytes))
	}
	if cfg.FetchMaxPartitionBytes > 0 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(cfg.FetchMaxPartitionBytes))
	}
	if cfg.TransactionalID == "" {
		opts = append(opts, kgo.DisableAutoCommit())
	} else {
		// Marks say what EndTransaction commits; a transactional client
		// never autocommits.
		s.txn = newTxnState()
		opts = append(opts, kgo.AutoCommitMarks(), kgo.TransactionalID(cfg.TransactionalID),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if cfg.TransactionTimeout > 0 {
			opts = append(opts, kgo.TransactionTimeout(cfg.TransactionTimeout))
		}
	}
	if err := kgo.ValidateOpts(opts...); err != nil {
		return nil, fmt.Errorf("kafka source: client options: %w", err)
	}
	s.opts = opts
	return s, nil
}

// validate checks cfg and returns the kgo start offset; every problem is
// reported, each naming its field.
func (cfg *Config) validate() (kgo.Offset, error) {
	var errs []error
	if len(cfg.Topics) == 0 {
		errs = append(errs, errors.New("kafka source: topics: must not be empty"))
	}
	for i, t := range cfg.Topics {
		if t == "" {
			errs = append(errs, fmt.Errorf("kafka source: topics[%d]: must not be empty", i))
		}
	}
	if cfg.Group == "" {
		errs = append(errs, errors.New("kafka source: group: must not be empty"))
	}
	if cfg.FetchMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("kafka source: fetch_max_bytes: %d is negative", cfg.FetchMaxBytes))
	}
	if cfg.FetchMaxPartitionBytes < 0 {
		errs = append(errs, fmt.Errorf("kafka source: fetch_max_partition_bytes: %d is negative", cfg.FetchMaxPartitionBytes))
	}
	var start kgo.Offset
	switch cfg.Start.Kind {
	case "", StartEarliest:
		start = kgo.NewOffset().AtStart()
	case StartLatest:
		start = kgo.NewOffset().AtEnd()
	case StartTime:
		if cfg.Start.Time.IsZero() {
			errs = append(errs, errors.New("kafka source: start.time: required when start is \"time\""))
		}
		start = kgo.NewOffset().AfterMilli(cfg.Start.Time.UnixMilli())
	default:
		errs = append(errs, fmt.Errorf("kafka source: start: %q is not earliest, latest or time", cfg.Start.Kind))
	}
	return start, errors.Join(errs...)
}

// Run joins the group and consumes until ctx is done or a fatal error
// occurs, calling l from the group's callbacks and its poll loop, one call
// at a time.
//
// On ctx done it stops polling and closes the client: the member leaves the
// group, Lanes.Revoke is called for every owned partition (the host commits
// from inside it; the context given to Revoke is still live), and Run
// returns nil. A fatal error (authorization, an invalid group, the client
// closed under it) ends Run the same way and is returned. Fetch errors that
// kgo retries are logged with their topic and partition. Run may be called
// only once.
func (s *Source) Run(ctx context.Context, l sources.Lanes) error {
	if l == nil {
		return errors.New("kafka source: Run: nil Lanes")
	}
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunCalled
	}
	s.lanes = l
	s.lent = copiesBytes(l)
	if s.txn != nil {
		return s.runTxn(ctx)
	}
	cl, err := kgo.NewClient(s.opts...)
	if err != nil {
		return fmt.Errorf("kafka source: create client: %w", err)
	}
	s.cl.Store(cl)
	s.running.Store(true)
	s.log.Info().Strs("topics", s.cfg.Topics).Msg("joining consumer group")

	var fatal error
	for fatal == nil && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fatal = s.handleErrors(ctx, fetches)
		if fatal == nil {
			fetches.EachPartition(s.deliver)
		}
		cl.AllowRebalance()
	}

	// Closing leaves the group, which revokes everything still owned:
	// lanes drain and commit through Commit, which works until Close
	// returns.
	s.log.Info().Msg("leaving consumer group")
	s.running.Store(false)
	cl.Close()
	s.finish(ctx)
	if fatal != nil {
		return fmt.Errorf("kafka source: group %q: %w", s.cfg.Group, fatal)
	}
	return nil
}

// finish drops, as lost, the partitions still owned after the client
// closed.
func (s *Source) finish(ctx context.Context) {
	// kgo revokes or loses every partition before Close returns; whatever
	// is left here was missed, and can no longer be committed.
	s.gate.Lock()
	s.mu.Lock()
	left := make([]record.Partition, 0, len(s.parts))
	for p := range s.parts {
		left = append(left, p)
	}
	clear(s.parts)
	s.mu.Unlock()
	s.gate.Unlock()
	if len(left) > 0 {
		s.log.Warn().Stringers("partitions", partitionStringers(left)).Msg("partitions still owned after the client closed; dropping them as lost")
		s.callLanes(func() { s.lanes.Lost(context.WithoutCancel(ctx), left) })
	}
}

// handleErrors logs the poll's retryable errors and returns the first fatal
// one.
func (s *Source) handleErrors(ctx context.Context, fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(topic string, partition int32, err error) {
		var loss *kgo.ErrDataLoss
		switch {
		case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
			// Our own shutdown.
		case errors.Is(err, kgo.ErrClientClosed):
			if fatal == nil {
				fatal = fmt.Errorf("client closed while consuming: %w", err)
			}
		case errors.As(err, &loss):
			// The broker lost data; kgo rewound to loss.ResetTo.
			// Records from there on are new records at reused
			// offsets, not redeliveries: let them through.
			p := record.KafkaPartition(loss.Topic, loss.Partition)
			s.mu.Lock()
			if st := s.parts[p]; st != nil {
				st.next = loss.ResetTo
			}
			s.mu.Unlock()
			s.log.Error().Str("topic", topic).Int32("partition", partition).Err(err).
				Int64("reset_to", loss.ResetTo).Msg("broker lost data; consuming from where the log now continues")
		case isFatal(err):
			if fatal == nil {
				fatal = fmt.Errorf("topic %q partition %d: %w", topic, partition, err)
			}
		default:
			ev := s.log.Warn().Err(err)
			if topic != "" {
				ev = ev.Str("topic", topic).Int32("partition", partition)
			}
			ev.Msg("kafka consume error; the client retries")
		}
	})
	return fatal
}

// isFatal reports errors that retrying cannot fix: missing permissions and
// an invalid group configuration.
func isFatal(err error) bool {
	for _, fatal := range []error{
		kerr.GroupAuthorizationFailed,
		kerr.TopicAuthorizationFailed,
		kerr.ClusterAuthorizationFailed,
		kerr.SaslAuthenticationFailed,
		kerr.InvalidGroupID,
		kerr.InvalidSessionTimeout,
		kerr.InconsistentGroupProtocol,
	} {
		if errors.Is(err, fatal) {
			return true
		}
	}
	return false
}

// deliver hands one fetched partition's records to its lane. It drops
// records below the partition's next expected offset: redeliveries, which
// the lane has already seen.
func (s *Source) deliver(ftp kgo.FetchTopicPartition) {
	if len(ftp.Records) == 0 {
		return
	}
	// Every record goes back to the fetch pools once copied out (or
	// dropped); nothing here keeps a *kgo.Record or its bytes.
	defer func() {
		for _, r := range ftp.Records {
			r.Recycle()
		}
	}()
	p := record.KafkaPartition(ftp.Topic, ftp.Partition)
	kept := s.kept[:0]
	s.mu.Lock()
	st := s.parts[p]
	if st == nil {
		s.mu.Unlock()
		// Cannot happen with BlockRebalanceOnPoll: kgo never returns
		// records of a partition whose revoke has finished.
		s.log.Warn().Str("topic", ftp.Topic).Int32("partition", ftp.Partition).Int("records", len(ftp.Records)).
			Msg("dropping records of a partition not assigned to this consumer")
		return
	}
	for _, r := range ftp.Records {
		if r.Offset < st.next {
			continue
		}
		st.next = r.Offset + 1
		st.noteEpoch(r.Offset, r.LeaderEpoch)
		kept = append(kept, r)
	}
	s.mu.Unlock()
	if dropped := len(ftp.Records) - len(kept); dropped > 0 {
		s.log.Warn().Str("topic", ftp.Topic).Int32("partition", ftp.Partition).Int("records", dropped).
			Msg("dropped records already delivered")
	}
	// The records go to the host in slices of at most deliverChunk
	// records and deliverBytes bytes (or one record), each with its bytes
	// in one buffer of its own: both come from pools the host gives them
	// back to (sources.PutRecords), so a steady stream reuses memory, and
	// one record held by a lane keeps at most one delivery's worth alive.
	//
	// Lanes that copy the bytes themselves (sources.BytesCopier) are lent
	// the fetch's: the records are recycled only once Deliver returned.
	parts := s.deliveries[:0]
	for rest := kept; len(rest) > 0; {
		n, size := 0, 0
		for n < len(rest) && n < deliverChunk {
			b := recordBytes(rest[n])
			if n > 0 && size+b > deliverBytes {
				break
			}
			size += b
			n++
		}
		recs := sources.GetRecords(n)
		if s.lent {
			recs = recs[:n]
			for i, r := range rest[:n] {
				lend(&recs[i], p, r)
			}
		} else {
			buf := sources.GetBytes(recs, size)
			for _, r := range rest[:n] {
				recs = append(recs, convert(p, r, &buf))
			}
		}
		parts = append(parts, recs)
		rest = rest[n:]
	}
	atEnd := len(kept) > 0 && kept[len(kept)-1].Offset+1 >= fetchEnd(ftp)
	clear(kept)
	s.kept = kept[:0]
	if len(parts) > 0 {
		s.callLanes(func() {
			for _, recs := range parts {
				s.lanes.Deliver(p, recs)
			}
			if en, ok := s.lanes.(sources.EndNoter); ok && atEnd {
				en.DeliveredToEnd(p)
			}
		})
	}
	clear(parts)
	s.deliveries = parts[:0]
}

// fetchEnd is the offset past the last record a fetch of ftp's partition
// could have returned: its high watermark, or its last stable offset when
// that is lower (a consumer reading committed records gets none past it).
// A record batch ending in a transaction's marker ends below it, so the
// records before the marker are not seen as the end.
func fetchEnd(ftp kgo.FetchTopicPartition) int64 {
	end := ftp.HighWatermark
	if ftp.LastStableOffset >= 0 && ftp.LastStableOffset < end {
		end = ftp.LastStableOffset
	}
	return end
}

// deliverChunk is the most records deliver hands the host in one slice.
const deliverChunk = 1024

// deliverBytes is the most record bytes (keys, values, header values)
// deliver hands the host in one slice, unless that slice is one record.
const deliverBytes = 256 << 10

// recordBytes is what convert copies of r.
func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	return n
}

// convert makes a record.Record of r, copying its key, value and header
// values into buf, which has room for them: kgo slices them out of the
// fetch response (or the decompressed batch, recycled once deliver
// returns) without copying. A record only refers to its delivery's buffer,
// whose lifetime the host's in-flight accounting covers (RecordOverhead).
func convert(p record.Partition, r *kgo.Record, buf *[]byte) record.Record {
	b := *buf
	take := func(v []byte) []byte {
		if v == nil {
			return nil // keep null keys and values null
		}
		start := len(b)
		b = append(b, v...)
		return b[start:len(b):len(b)]
	}
	out := record.Record{
		Key:       take(r.Key),
		Value:     take(r.Value),
		Timestamp: r.Timestamp,
		Partition: p,
		Position:  record.Position{Offset: r.Offset},
	}
	if len(r.Headers) > 0 {
		out.Headers = make([]record.Header, len(r.Headers))
		for i, h := range r.Headers {
			out.Headers[i] = record.Header{Key: h.Key, Value: take(h.Value)}
		}
	}
	*buf = b
	return out
}

// copiesBytes says whether l copies the bytes of the records it is
// delivered (sources.BytesCopier).
func copiesBytes(l sources.Lanes) bool {
	c, ok := l.(sources.BytesCopier)
	return ok && c.CopiesBytes()
}

// lend is convert without the copy, into out (every field of it): the
// record refers to r's key, value and header values, which are valid until
// r is recycled. It writes the fields one by one, where a record built and
// then stored was copied whole, twice, through the stack.
func lend(out *record.Record, p record.Partition, r *kgo.Record) {
	out.Key, out.Value = r.Key, r.Value
	out.Headers = nil
	if len(r.Headers) > 0 {
		out.Headers = make([]record.Header, len(r.Headers))
		for i, h := range r.Headers {
			out.Headers[i] = record.Header{Key: h.Key, Value: h.Value}
		}
	}
	out.Timestamp = r.Timestamp
	out.Partition = p
	out.Position = record.Position{Offset: r.Offset}
}

// onAssigned records the new claims, then starts their lanes. Claims start
// unpaused.
func (s *Source) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	parts := partitionsOf(assigned)
	if len(parts) == 0 {
		return // kgo calls this at every session start, even with nothing new
	}
	// The generation of the session that assigned these partitions. kgo
	// stores it from the join response before the session's callbacks run,
	// and no new join starts until this callback returns. Under the
	// cooperative protocol a partition moves in two rebalances (revoked in
	// one, assigned in the next), so its new owner's generation is always
	// above its old owner's.
	_, gen := cl.GroupMetadata()
	cl.ResumeFetchPartitions(assigned)
	claims := make([]sources.Claim, len(parts))
	s.mu.Lock()
	for i, p := range parts {
		s.parts[p] = &partState{gen: int64(gen), next: -1}
		claims[i] = sources.Claim{Partition: p, Generation: int64(gen)}
	}
	s.mu.Unlock()
	s.log.Info().Int32("generation", gen).Stringers("partitions", partitionStringers(parts)).Msg("partitions assigned")
	s.callLanes(func() { s.lanes.Assign(ctx, claims) })
}

// onRevoked lets the lanes drain and commit, then forgets the partitions.
// ctx is the client's context, live until the client is closed.
func (s *Source) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := s.owned(revoked)
	if len(parts) == 0 {
		return // kgo calls this at every session end, even with nothing revoked
	}
	s.log.Info().Stringers("partitions", partitionStringers(parts)).Msg("partitions revoked; draining lanes")
	s.callLanes(func() { s.lanes.Revoke(ctx, parts) })
	s.remove(parts)
	// A pause must not outlive the claim it was made for.
	cl.ResumeFetchPartitions(revoked)
}

// onLost forgets the partitions first, so that nothing commits them, then
// drops their lanes.
func (s *Source) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	parts := s.owned(lost)
	if len(parts) == 0 {
		return
	}
	s.log.Warn().Stringers("partitions", partitionStringers(parts)).Msg("partitions lost; dropping lanes without committing")
	s.remove(parts)
	s.callLanes(func() { s.lanes.Lost(ctx, parts) })
	cl.ResumeFetchPartitions(lost)
}

func (s *Source) callLanes(fn func()) {
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	fn()
}

// owned returns the partitions of tps this source owns.
func (s *Source) owned(tps map[string][]int32) []record.Partition {
	parts := partitionsOf(tps)
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.DeleteFunc(parts, func(p record.Partition) bool { return s.parts[p] == nil })
}

// remove forgets parts once no commit for them is in flight.
func (s *Source) remove(parts []record.Partition) {
	s.gate.Lock()
	defer s.gate.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range parts {
		delete(s.parts, p)
	}
}

// Commit commits, for each partition, the offset after pos: the next
// offset the group will read. It commits synchronously and returns an error
// if any partition's commit failed. It refuses the whole call, committing
// nothing, if any partition is not currently owned (ErrNotAssigned). Safe
// for concurrent use, and from inside Lanes.Revoke; commits are serialized
// by the client, so committing many partitions in one call is cheaper than
// one call each.
func (s *Source) Commit(ctx context.Context, positions map[record.Partition]record.Position) error {
	if s.txn != nil {
		return ErrTransactional
	}
	if len(positions) == 0 {
		return nil
	}
	s.gate.RLock()
	defer s.gate.RUnlock()

	cl := s.cl.Load()
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var refused []error
	s.mu.Lock()
	for p, pos := range positions {
		st := s.parts[p]
		switch {
		case st == nil || cl == nil:
			refused = append(refused, fmt.Errorf("%s: %w", p, ErrNotAssigned))
		case pos.Offset < 0:
			refused = append(refused, fmt.Errorf("%s: negative offset %d", p, pos.Offset))
		default:
			if offsets[p.Stream] == nil {
				offsets[p.Stream] = make(map[int32]kgo.EpochOffset)
			}
			offsets[p.Stream][p.KafkaID()] = kgo.EpochOffset{Epoch: st.epochAt(pos.Offset), Offset: pos.Offset + 1}
		}
	}
	s.mu.Unlock()
	if len(refused) > 0 {
		return fmt.Errorf("kafka source: commit refused: %w", errors.Join(refused...))
	}

	var errs []error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s/%d: %w", t.Topic, rp.Partition, err))
				}
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("kafka source: commit group %q: %w", s.cfg.Group, errors.Join(errs...))
	}

	s.mu.Lock()
	for p, pos := range positions {
		if st := s.parts[p]; st != nil {
			st.forgetEpochsBefore(pos.Offset)
		}
	}
	s.mu.Unlock()
	return nil
}

// Pause stops fetching parts. kgo discards what it has buffered for a
// paused partition without advancing past it, and fetches it again after
// Resume, so pausing loses nothing and repeats nothing. Pause is not a
// barrier: a poll already under way may still deliver records of parts
// that were buffered before the call. Pausing a partition not owned, or
// before Run, does nothing lasting: a new claim always starts unpaused.
func (s *Source) Pause(parts ...record.Partition) {
	if cl := s.cl.Load(); cl != nil {
		if tps := topicPartitions(parts); len(tps) > 0 {
			cl.PauseFetchPartitions(tps)
		}
	}
}

// Resume undoes Pause. Fetching restarts at the next fetch to the
// partition's broker; a fetch already waiting there for data (up to
// kgo.FetchMaxWait, 5s by default) is not interrupted.
func (s *Source) Resume(parts ...record.Partition) {
	if cl := s.cl.Load(); cl != nil {
		if tps := topicPartitions(parts); len(tps) > 0 {
			cl.ResumeFetchPartitions(tps)
		}
	}
}

func partitionsOf(tps map[string][]int32) []record.Partition {
	var parts []record.Partition
	for t, ps := range tps {
		for _, p := range ps {
			parts = append(parts, record.KafkaPartition(t, p))
		}
	}
	slices.SortFunc(parts, func(a, b record.Partition) int {
		if a.Stream != b.Stream {
			if a.Stream < b.Stream {
				return -1
			}
			return 1
		}
		return int(a.KafkaID() - b.KafkaID())
	})
	return parts
}

func topicPartitions(parts []record.Partition) map[string][]int32 {
	tps := make(map[string][]int32)
	for _, p := range parts {
		if id := p.KafkaID(); id >= 0 {
			tps[p.Stream] = append(tps[p.Stream], id)
		}
	}
	return tps
}

func partitionStringers(parts []record.Partition) []fmt.Stringer {
	out := make([]fmt.Stringer, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out
}
