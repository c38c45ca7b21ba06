// Package kinesis is the Kinesis source: a worker that leases shards of a
// stream in Redis (package lease), reads each leased shard with its own
// GetRecords loop, and drives the host's lanes exactly as the Kafka source
// does: Assign when a lease is taken, Revoke (drain, commit) before a
// lease is given up, Lost when it was taken away, Deliver for records.
//
// # Positions
//
// A record's Position carries its sequence number in Seq and, for a user
// record unpacked from a KPL aggregate, its index in the aggregate (the
// sub-sequence number) in Offset; Offset is 0 for plain records. (Seq,
// Offset) orders the records of a shard. The host's commit tracker orders
// records by the order they were delivered, not by their position, so it
// needs no ordinal; a commit of (Seq, Offset) means every record of the
// shard up to that one is complete, and is what the lease's checkpoint
// stores.
//
// # Leases and balancing
//
// Every heartbeat the worker registers itself, renews its leases, and
// balances: with E shards ready to read (not finished, and every parent
// finished) and W live workers, it takes free or expired leases while it
// holds fewer than ceil(E/W); when none is free and it holds fewer than
// floor(E/W), it asks the worker holding the most (at least two more than
// itself) to hand one over. The owner sees the request at its next renew,
// stops reading the shard, lets the lane drain and commit (Lanes.Revoke),
// and releases the lease reserved for the asker, which takes it at its
// next heartbeat and resumes after the checkpoint: nothing is handled
// twice. A worker that dies stops renewing; its leases expire after the
// lease TTL and the others take them, resuming from the last checkpoint.
// A renewal that finds the lease taken (or a Redis that stays unreachable
// until the lease would have expired) drops the shard's lane without
// committing (Lanes.Lost); checkpoints are fenced by the lease epoch, so
// such a worker cannot move the checkpoint.
//
// # Resharding
//
// A shard is read only once each of its parents is ended: read to its
// last record (GetRecords returned no next iterator), every delivered
// record committed, and the lease marked ended at that checkpoint. Only
// then are its children leased, from their first record, so records of a
// key stay in order across a split or a merge.
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/rs/zerolog"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
	"github.com/weirhq/weir/sources/kinesis/lease"
)

// Per-shard read limits of Kinesis: five GetRecords calls a second, and
// 2 MB a second.
const (
	minCallGap       = 200 * time.Millisecond
	maxBytesPerSec   = 2 << 20
	maxRecordsPerGet = 10000
)

// Defaults of Config.
const (
	DefaultPollInterval      = time.Second
	DefaultLeaseTTL          = 10 * time.Second
	DefaultShardSyncInterval = 30 * time.Second
)

// ErrNotAssigned is returned by Commit for a shard this worker does not
// currently hold.
var ErrNotAssigned = errors.New("shard not leased by this worker")

// ErrRunCalled is returned by a second call to Run.
var ErrRunCalled = errors.New("kinesis source: Run called twice")

// Config configures a Source.
type Config struct {
	// API makes the Kinesis calls; required (a *kinesis.Client).
	API API
	// Leases keeps the leases and checkpoints; required. Its TTL is the
	// lease TTL.
	Leases *lease.Store
	// Stream is the stream name: the Stream of every record.Partition.
	// Required.
	Stream string
	// StreamARN, if set, is sent instead of the name (a stream of another
	// account).
	StreamARN string
	// Start applies to shards without a checkpoint that existed when the
	// pipeline first listed the stream; shards that appear later (children
	// of a reshard) are read from their first record.
	Start sources.Start
	// PollInterval is the wait after a GetRecords call that returned
	// nothing new. Default 1s; at least 200ms (the per-shard call limit).
	PollInterval time.Duration
	// MaxRecordsPerCall is GetRecords' Limit; default and maximum 10000.
	MaxRecordsPerCall int32
	// Heartbeat is how often the worker registers, renews its leases and
	// balances. Default a quarter of the lease TTL; less than half of it.
	Heartbeat time.Duration
	// ShardSyncInterval is how often the shards are listed again to find
	// new ones. Default 30s. A shard reaching its end lists them at once.
	ShardSyncInterval time.Duration
	// Logger receives the source's logs; the zero value logs nothing.
	Logger zerolog.Logger
}

// Source is one worker reading a stream for one pipeline. Run it once;
// Commit, Pause and Resume are safe for concurrent use with Run.
type Source struct {
	cfg    Config
	leases *lease.Store
	ttl    time.Duration
	log    zerolog.Logger

	ran   atomic.Bool
	lanes sources.Lanes
	// lanesMu serializes calls into lanes: the coordinator's Assign,
	// Revoke and Lost, and every shard reader's Deliver.
	lanesMu sync.Mutex
	// gate orders commits against giving up a shard: Commit holds it
	// shared, forgetting a shard takes it exclusively.
	gate sync.RWMutex
	// wake asks the coordinator for a cycle now (a shard reached its end).
	wake chan struct{}

	mu     sync.Mutex
	shards map[string]*shard // held shards by id

	workers []string // live workers at the last heartbeat; guarded by mu

	// owned by the coordinator goroutine (Run)
	known     []types.Shard
	lastSync  time.Time
	needSync  bool
	throttled atomic.Int64
}

// shard is one leased shard and its reader.
type shard struct {
	id     string
	part   record.Partition
	epoch  int64
	resume lease.Checkpoint // from the lease at acquire
	start  string           // lease start without a checkpoint
	latest bool             // the first iterator reads from LATEST (see lease.Lease.Latest); guarded by Source.mu
	first  *string          // an iterator got before the lane was assigned; nil: the reader gets one
	log    zerolog.Logger

	cancel context.CancelFunc
	done   chan struct{} // closed when the reader has returned

	// guarded by Source.mu
	validUntil time.Time // last renewal + TTL
	lost       bool      // the renewer found the lease taken, or could not renew it in time
	handover   string    // the renewer found this worker asking for the lease
	paused     bool
	resumed    chan struct{} // closed and replaced by Resume
	last       record.Position
	delivered  bool // any record delivered under this lease
	committed  record.Position
	hasCommit  bool
	atEnd      bool // the reader saw the shard's end
	// behind is MillisBehindLatest of the latest GetRecords, and
	// behindAt when it returned (zero: not read yet).
	behind   time.Duration
	behindAt time.Time
}

// New validates cfg and returns a Source. It does not contact Kinesis or
// Redis; Run does.
func New(cfg Config) (*Source, error) {
	if err := cfg.withDefaults().validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Source{
		cfg: cfg, leases: cfg.Leases, ttl: cfg.Leases.TTL(),
		log:    cfg.Logger.With().Str("component", "kinesis-source").Str("stream", cfg.Stream).Str("worker", cfg.Leases.Worker()).Logger(),
		shards: map[string]*shard{}, wake: make(chan struct{}, 1),
	}, nil
}

func (cfg Config) withDefaults() Config {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxRecordsPerCall == 0 {
		cfg.MaxRecordsPerCall = maxRecordsPerGet
	}
	if cfg.Heartbeat == 0 && cfg.Leases != nil {
		cfg.Heartbeat = cfg.Leases.TTL() / 4
	}
	if cfg.ShardSyncInterval == 0 {
		cfg.ShardSyncInterval = DefaultShardSyncInterval
	}
	return cfg
}

func (cfg Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("kinesis source: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if cfg.API == nil {
		bad("API", "required")
	}
	if cfg.Leases == nil {
		bad("Leases", "required")
	}
	if cfg.Stream == "" {
		bad("Stream", "required")
	}
	if cfg.PollInterval < minCallGap {
		bad("PollInterval", "%s is below %s (five calls a second per shard)", cfg.PollInterval, minCallGap)
	}
	if cfg.MaxRecordsPerCall < 1 || cfg.MaxRecordsPerCall > maxRecordsPerGet {
		bad("MaxRecordsPerCall", "%d is not in 1..%d", cfg.MaxRecordsPerCall, maxRecordsPerGet)
	}
	if cfg.Leases != nil && (cfg.Heartbeat <= 0 || cfg.Heartbeat*2 > cfg.Leases.TTL()) {
		bad("Heartbeat", "%s must be positive and at most half the lease TTL (%s)", cfg.Heartbeat, cfg.Leases.TTL())
	}
	if cfg.ShardSyncInterval <= 0 {
		bad("ShardSyncInterval", "%s is not positive", cfg.ShardSyncInterval)
	}
	switch cfg.Start.Kind {
	case "", sources.StartEarliest, sources.StartLatest:
	case sources.StartTime:
		if cfg.Start.Time.IsZero() {
			bad("Start.Time", "required when start is a time")
		}
	default:
		bad("Start", "%q is not earliest, latest or time", cfg.Start.Kind)
	}
	return errors.Join(errs...)
}

// leaseStart is the configured start as the lease stores it.
func (cfg Config) leaseStart() string {
	switch cfg.Start.Kind {
	case sources.StartLatest:
		return "latest"
	case sources.StartTime:
		return "at:" + strconv.FormatInt(cfg.Start.Time.UnixMilli(), 10)
	}
	return "trim_horizon"
}

// Throttled returns how many GetRecords calls were refused for throughput
// so far.
func (s *Source) Throttled() int64 { return s.throttled.Load() }

// TimeLags implements sources.TimeLagReporter: for each held shard of
// parts read at least once, MillisBehindLatest of its latest GetRecords.
// Safe for concurrent use.
func (s *Source) TimeLags(parts []record.Partition) map[record.Partition]sources.TimeLag {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[record.Partition]sources.TimeLag, len(parts))
	for _, p := range parts {
		if sh := s.shards[p.ID]; sh != nil && sh.part == p && !sh.behindAt.IsZero() {
			out[p] = sources.TimeLag{Behind: sh.behind, At: sh.behindAt}
		}
	}
	return out
}

var _ sources.TimeLagReporter = (*Source)(nil)

// Run works until ctx is done: it registers the worker, takes and renews
// leases, reads the leased shards and balances with the other workers.
// On ctx done it stops reading, revokes every held shard (the lanes drain
// and commit), marks the shards read to their end as ended, releases the
// leases so that other workers take them at once, deregisters, and returns
// nil. It returns an error, after the same shutdown, only when the stream
// cannot be found at start.
func (s *Source) Run(ctx context.Context, l sources.Lanes) error {
	if l == nil {
		return errors.New("kinesis source: Run: nil Lanes")
	}
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunCalled
	}
	s.lanes = l
	s.log.Info().Dur("lease_ttl", s.ttl).Dur("heartbeat", s.cfg.Heartbeat).Msg("kinesis worker starting")
	var fatal error
	if err := s.syncShards(ctx); err != nil {
		if isNotFound(err) {
			fatal = err
		} else if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("listing shards failed; will retry")
		}
	}
	// The renewer registers the worker and renews its leases each
	// heartbeat, apart from the coordinator, so that leases stay renewed
	// while the coordinator waits for a lane to drain.
	rctx, stopRenewer := context.WithCancel(context.WithoutCancel(ctx))
	renewerDone := make(chan struct{})
	go func() {
		defer close(renewerDone)
		s.renewLoop(rctx)
	}()
	// Wait one heartbeat before taking leases, so that workers started
	// together see each other and split the shards without handovers.
	if fatal == nil {
		sleepCtx(ctx, s.cfg.Heartbeat)
	}
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for fatal == nil && ctx.Err() == nil {
		s.cycle(ctx)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-s.wake:
		}
	}
	// Leases stay renewed until every lane has drained and released.
	s.shutdown(context.WithoutCancel(ctx))
	stopRenewer()
	<-renewerDone
	if err := s.leases.Deregister(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn().Err(err).Msg("deregistering failed; the registration expires after the lease TTL")
	}
	if fatal != nil {
		return fmt.Errorf("kinesis source: stream %s: %w", s.cfg.Stream, fatal)
	}
	return nil
}

// cycle is one heartbeat of the coordinator: act on what the renewer
// found, end finished shards, list shards when due, balance.
func (s *Source) cycle(ctx context.Context) {
	for _, sh := range s.held() {
		s.mu.Lock()
		lost, to, atEnd := sh.lost, sh.handover, sh.atEnd
		s.mu.Unlock()
		switch {
		case lost:
			s.lose(ctx, sh)
		case to != "" && to != s.leases.Worker() && !atEnd:
			s.handOver(ctx, sh, to)
		}
	}
	s.finishEnded(ctx)
	if s.needSync || time.Since(s.lastSync) >= s.cfg.ShardSyncInterval {
		if err := s.syncShards(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("listing shards failed; will retry")
		}
	}
	s.mu.Lock()
	workers := s.workers
	s.mu.Unlock()
	if len(workers) > 0 && ctx.Err() == nil {
		if err := s.balance(ctx, workers); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("balancing leases failed; will retry")
		}
	}
}

// renewLoop registers the worker and renews every held lease each
// heartbeat until ctx is done, flagging for the coordinator the leases
// lost and the handovers asked for.
func (s *Source) renewLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		workers, err := s.leases.Heartbeat(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("worker heartbeat failed")
		}
		s.mu.Lock()
		s.workers = workers
		s.mu.Unlock()
		if s.renew(ctx) {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// held returns the held shards, sorted by id.
func (s *Source) held() []*shard {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*shard, 0, len(s.shards))
	for _, sh := range s.shards {
		out = append(out, sh)
	}
	slices.SortFunc(out, func(a, b *shard) int { return cmpString(a.id, b.id) })
	return out
}

// renew extends every held lease, and reports whether the coordinator
// has something to do: a lease taken by another worker (or not renewed
// before it expired), or a handover asked for.
func (s *Source) renew(ctx context.Context) (act bool) {
	for _, sh := range s.held() {
		at := time.Now()
		handover, err := s.leases.Renew(ctx, sh.id, sh.epoch)
		s.mu.Lock()
		if s.shards[sh.id] != sh {
			s.mu.Unlock() // given up meanwhile (handed over, ended, lost)
			continue
		}
		switch {
		case errors.Is(err, lease.ErrLost):
			if !sh.lost {
				sh.log.Warn().Err(err).Msg("lease taken by another worker")
			}
			sh.lost, act = true, true
		case err != nil:
			if ctx.Err() != nil {
				s.mu.Unlock()
				return act
			}
			if time.Now().After(sh.validUntil) {
				sh.log.Error().Err(err).Msg("could not renew the lease before it expired; dropping the shard")
				sh.lost, act = true, true
			} else {
				sh.log.Warn().Err(err).Msg("renewing the lease failed; will retry")
			}
		default:
			sh.validUntil = at.Add(s.ttl)
			if handover != "" && sh.handover == "" {
				sh.handover, act = handover, true
			}
		}
		s.mu.Unlock()
	}
	return act
}

// stopReader stops the shard's reader and waits for it. It must not be
// called with lanesMu held.
func (s *Source) stopReader(sh *shard) {
	sh.cancel()
	<-sh.done
}

// forget removes sh once no commit of it is in flight.
func (s *Source) forget(sh *shard) {
	s.gate.Lock()
	s.mu.Lock()
	delete(s.shards, sh.id)
	s.mu.Unlock()
	s.gate.Unlock()
}

func (s *Source) callLanes(fn func()) {
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	fn()
}

// lose drops a shard whose lease is no longer ours: nothing is committed.
func (s *Source) lose(ctx context.Context, sh *shard) {
	s.stopReader(sh)
	s.forget(sh)
	s.callLanes(func() { s.lanes.Lost(ctx, []record.Partition{sh.part}) })
}

// handOver gives a shard to the worker that asked for it: stop reading,
// drain and commit, release the lease reserved for that worker.
func (s *Source) handOver(ctx context.Context, sh *shard, to string) {
	sh.log.Info().Str("to", to).Msg("handing the shard over")
	s.stopReader(sh)
	s.callLanes(func() { s.lanes.Revoke(ctx, []record.Partition{sh.part}) })
	s.forget(sh)
	if err := s.leases.Release(ctx, sh.id, sh.epoch, to); err != nil {
		sh.log.Warn().Err(err).Msg("releasing the lease after a handover failed; it expires after its TTL")
	}
}

// complete reports whether a shard read to its end has every delivered
// record committed. Called with s.mu held.
func (sh *shard) complete() bool {
	return sh.atEnd && (!sh.delivered || sh.hasCommit && sh.committed == sh.last)
}

// finishEnded ends the shards read to their end whose records are all
// committed: revoke the lane, mark the lease ended, release it. Their
// children become readable.
func (s *Source) finishEnded(ctx context.Context) {
	for _, sh := range s.held() {
		s.mu.Lock()
		ready := sh.complete()
		s.mu.Unlock()
		if !ready {
			continue
		}
		s.stopReader(sh)
		s.callLanes(func() { s.lanes.Revoke(ctx, []record.Partition{sh.part}) })
		s.endAndRelease(ctx, sh)
		s.needSync = true
	}
}

// endAndRelease marks a complete shard ended (if it is) and releases its
// lease, after its lane was revoked.
func (s *Source) endAndRelease(ctx context.Context, sh *shard) {
	s.mu.Lock()
	ended := sh.complete()
	s.mu.Unlock()
	s.forget(sh)
	if ended {
		if err := s.leases.Checkpoint(ctx, sh.id, sh.epoch, lease.Checkpoint{}, true); err != nil {
			sh.log.Warn().Err(err).Msg("marking the shard ended failed; it will be read to its end again")
		} else {
			sh.log.Info().Msg("shard read to its end and checkpointed at SHARD_END")
		}
	}
	if err := s.leases.Release(ctx, sh.id, sh.epoch, ""); err != nil {
		sh.log.Warn().Err(err).Msg("releasing the lease failed; it expires after its TTL")
	}
}

// syncShards lists the stream's shards (every page) and records the start
// of new ones.
func (s *Source) syncShards(ctx context.Context) error {
	var all []types.Shard
	in := &kinesis.ListShardsInput{}
	if s.cfg.StreamARN != "" {
		in.StreamARN = aws.String(s.cfg.StreamARN)
	} else {
		in.StreamName = aws.String(s.cfg.Stream)
	}
	for {
		out, err := s.cfg.API.ListShards(ctx, in)
		if err != nil {
			return fmt.Errorf("listing the shards of %s: %w", s.cfg.Stream, err)
		}
		all = append(all, out.Shards...)
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	ids := make([]string, len(all))
	for i, sh := range all {
		ids[i] = aws.ToString(sh.ShardId)
	}
	if err := s.leases.Init(ctx, s.cfg.leaseStart(), ids); err != nil {
		return err
	}
	if len(all) != len(s.known) {
		s.log.Info().Int("shards", len(all)).Msg("shards listed")
	}
	s.known, s.lastSync, s.needSync = all, time.Now(), false
	return nil
}

// balance takes free leases up to this worker's fair share, and asks an
// overloaded worker for one when there are none.
func (s *Source) balance(ctx context.Context, workers []string) error {
	if len(s.known) == 0 {
		return nil
	}
	me := s.leases.Worker()
	if !slices.Contains(workers, me) {
		workers = append(workers, me)
	}
	ids := make([]string, len(s.known))
	for i, sh := range s.known {
		ids[i] = aws.ToString(sh.ShardId)
	}
	states, err := s.leases.States(ctx, ids)
	if err != nil {
		return err
	}
	byID := make(map[string]lease.State, len(states))
	for _, st := range states {
		byID[st.Shard] = st
	}
	parentsDone := func(sh types.Shard) bool {
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if p == nil || *p == "" {
				continue
			}
			if st, listed := byID[*p]; listed && !st.Ended {
				return false
			}
		}
		return true
	}
	var ready []lease.State
	for _, sh := range s.known {
		if st := byID[aws.ToString(sh.ShardId)]; !st.Ended && parentsDone(sh) {
			ready = append(ready, st)
		}
	}
	s.mu.Lock()
	mine := len(s.shards)
	s.mu.Unlock()
	target := int(math.Ceil(float64(len(ready)) / float64(len(workers))))
	floor := len(ready) / len(workers)

	// Free leases: those reserved for this worker first.
	var free []lease.State
	asked := false
	load := map[string][]lease.State{}
	for _, st := range ready {
		switch {
		case st.Owner == "" && (st.ReservedFor == "" || st.ReservedFor == me):
			free = append(free, st)
		case st.Owner != "" && st.Owner != me:
			load[st.Owner] = append(load[st.Owner], st)
		}
		if st.Handover == me {
			asked = true
		}
	}
	slices.SortStableFunc(free, func(a, b lease.State) int {
		return boolInt(b.ReservedFor == me) - boolInt(a.ReservedFor == me)
	})
	for _, st := range free {
		if mine >= target && st.ReservedFor != me {
			break
		}
		ok, err := s.take(ctx, st.Shard)
		if err != nil {
			return err
		}
		if ok {
			mine++
		}
	}
	if mine >= floor || asked {
		return nil
	}
	// Ask the most loaded worker for one of its shards.
	var victim string
	for w, sts := range load {
		if len(sts) > len(load[victim]) || len(sts) == len(load[victim]) && w < victim {
			victim = w
		}
	}
	if victim == "" || len(load[victim]) < mine+2 {
		return nil
	}
	for _, st := range load[victim] {
		if st.Handover != "" {
			continue
		}
		ok, err := s.leases.AskHandover(ctx, st.Shard, victim)
		if err != nil {
			return err
		}
		if ok {
			s.log.Info().Str("shard", st.Shard).Str("from", victim).Int("held", mine).Int("fair_share", floor).
				Msg("asked for a lease to balance the workers")
			return nil
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// take acquires a shard's lease and starts its lane and reader.
func (s *Source) take(ctx context.Context, id string) (bool, error) {
	l, ok, err := s.leases.Acquire(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	part := record.Partition{Stream: s.cfg.Stream, ID: id}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sh := &shard{
		id: id, part: part, epoch: l.Epoch, resume: l.Checkpoint, start: l.Start, latest: l.Latest,
		log:    s.log.With().Str("shard", id).Int64("epoch", l.Epoch).Logger(),
		cancel: cancel, done: make(chan struct{}), resumed: make(chan struct{}),
		validUntil: time.Now().Add(s.ttl),
	}
	s.mu.Lock()
	s.shards[id] = sh
	s.mu.Unlock()
	ev := sh.log.Info()
	if l.Checkpoint.Seq != "" {
		ev = ev.Str("checkpoint", l.Checkpoint.Seq).Int64("sub", l.Checkpoint.Sub)
	} else {
		ev = ev.Str("start", l.Start)
	}
	ev.Msg("lease taken")
	if l.Latest {
		// Fix the read position before the lane exists, so that a record
		// written once the shard is assigned is never skipped as older
		// than "latest". On failure the reader asks again.
		if it, err := s.iteratorOnce(ctx, sh); err == nil {
			sh.first = it
		}
	}
	s.callLanes(func() { s.lanes.Assign(ctx, []sources.Claim{{Partition: part, Generation: l.Epoch}}) })
	go s.read(rctx, sh)
	return true, nil
}

// shutdown revokes every held shard (lanes drain and commit in parallel),
// ends the complete ones, and releases every lease.
func (s *Source) shutdown(ctx context.Context) {
	held := s.held()
	for _, sh := range held {
		s.stopReader(sh)
	}
	if len(held) > 0 {
		parts := make([]record.Partition, len(held))
		for i, sh := range held {
			parts[i] = sh.part
		}
		s.log.Info().Int("shards", len(held)).Msg("stopping: draining the lanes and releasing the leases")
		s.callLanes(func() { s.lanes.Revoke(ctx, parts) })
	}
	for _, sh := range held {
		s.endAndRelease(ctx, sh)
	}
}

// Commit checkpoints each shard's position in its lease, fenced by the
// lease epoch. It refuses a shard this worker does not hold
// (ErrNotAssigned) and reports lease.ErrLost for one another worker took;
// the other shards are still committed. Safe for concurrent use, and from
// inside Lanes.Revoke.
func (s *Source) Commit(ctx context.Context, positions map[record.Partition]record.Position) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	var errs []error
	for p, pos := range positions {
		s.mu.Lock()
		sh := s.shards[p.ID]
		s.mu.Unlock()
		if sh == nil || p.Stream != s.cfg.Stream {
			errs = append(errs, fmt.Errorf("%s: %w", p, ErrNotAssigned))
			continue
		}
		if pos.Seq == "" {
			errs = append(errs, fmt.Errorf("%s: commit without a sequence number", p))
			continue
		}
		if err := s.leases.Checkpoint(ctx, p.ID, sh.epoch, lease.Checkpoint{Seq: pos.Seq, Sub: pos.Offset}, false); err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		sh.committed, sh.hasCommit = pos, true
		wake := sh.complete()
		s.mu.Unlock()
		if wake {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kinesis source: commit: %w", errors.Join(errs...))
	}
	return nil
}

// Pause stops reading the given shards after the call in flight.
func (s *Source) Pause(parts ...record.Partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range parts {
		if sh := s.shards[p.ID]; sh != nil && p.Stream == s.cfg.Stream {
			sh.paused = true
		}
	}
}

// Resume undoes Pause.
func (s *Source) Resume(parts ...record.Partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range parts {
		if sh := s.shards[p.ID]; sh != nil && p.Stream == s.cfg.Stream && sh.paused {
			sh.paused = false
			close(sh.resumed)
			sh.resumed = make(chan struct{})
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
