package host

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// Dispatcher runs a batch through the pipeline's handler (the plugin pool).
// Handle must not keep b, or its Records slice, after it returns: the host
// reuses the slice for its next call.
type Dispatcher interface {
	Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error)
}

// encodedDispatcher is a Dispatcher that also takes a batch's records in
// their wire form (the handler pools, through rollingHandler): the lanes
// then encode each record as it arrives, and a batch is sent by copying
// bytes (see delivery.encode). HandleEncoded ignores b.Records and must not
// keep recs' parts after it returns.
type encodedDispatcher interface {
	Dispatcher
	HandleEncoded(ctx context.Context, b *plugins.Batch, recs plugins.EncodedRecords) (*plugins.Result, error)
}

// Sink is where outputs (and, for the DLQ, envelopes) are written; see
// sinks.Sink for the contract of Write.
type Sink interface {
	Write(ctx context.Context, msgs []record.Message) error
}

// Source is what a pipeline needs of its source.
type Source interface {
	Run(ctx context.Context, l sources.Lanes) error
	Committer
	Pause(parts ...record.Partition)
	Resume(parts ...record.Partition)
}

// EventKind names a lifecycle event of a partition in a pipeline.
type EventKind string

// Events reported to Options.OnEvent.
const (
	EventAssigned EventKind = "assigned"
	EventRevoked  EventKind = "revoked" // lane drained and final commit done
	EventLost     EventKind = "lost"
	EventCommit   EventKind = "commit" // a commit succeeded
)

// Event is a partition lifecycle event, for tests and tooling.
type Event struct {
	Pipeline  string
	Kind      EventKind
	Partition record.Partition
	Position  record.Position // for EventCommit
	Time      time.Time
}

// pipeline runs one configured pipeline: it is the sources.Lanes of its
// source, owns the lanes, the committer and the in-flight budget.
type pipeline struct {
	cfg     *config.Pipeline
	log     zerolog.Logger
	src     Source
	handler Dispatcher
	// encoded is handler if it takes encoded records; nil otherwise.
	encoded encodedDispatcher
	info    plugins.Info
	sinks   map[string]Sink
	dlq     Sink // nil: a record that fails for good stops the pipeline
	hostID  string
	onEvent func(Event)
	stats   *Stats
	commits *committer
	// restarts reports the handler pool's process restarts; nil in tests
	// with a fake handler.
	restarts func() int64
	// alive reports the handler pool's processes running and configured;
	// nil in tests with a fake handler.
	alive func() (up, total int)

	// Breakers guard the handler pool, each sink and the DLQ; while any is
	// open every partition is paused at the source.
	handlerBreaker *breaker
	sinkBreakers   map[string]*breaker
	dlqBreaker     *breaker
	guard          *dlqGuard // nil without a DLQ
	// marks keeps idempotency marks and checkpoints in Redis; nil with
	// idempotency off. redisBreaker guards it.
	marks        Marks
	redisBreaker *breaker
	// successes counts handler calls that were not systemic failures (a
	// record handled, or rejected as bad data): a record failing retryably
	// is only dead-lettered if a call succeeded after its first failure
	// began. Otherwise it met an outage, not its own bad data.
	successes atomic.Int64

	// pauseMu serializes reconcilePauses, so that two of them cannot
	// apply their Pause and Resume calls out of order.
	pauseMu sync.Mutex

	mu    sync.Mutex
	lanes map[record.Partition]*lane
	// full are the partitions whose lane has enough records waiting (see
	// lane.deliver): they are paused until it is down to half of that.
	full map[record.Partition]bool
	// overBudget is set when the in-flight bytes pass max_inflight_bytes
	// and cleared when they are back under half of it: every partition is
	// paused meanwhile.
	overBudget   bool
	paused       map[record.Partition]bool // paused at the source now
	openBreakers map[string]bool

	cancel  context.CancelCauseFunc
	failMu  sync.Mutex
	failErr error

	// txn is the exactly-once source; nil under at-least-once. holding is
	// the release channel of the barrier holding the lanes, if any: a lane
	// created meanwhile starts held.
	txn     Transactor
	holding chan struct{}

	// lagInterval is how often pollLag measures lag (admin.lag_interval).
	lagInterval time.Duration
	// lagMu guards lag, the latest measurement per owned partition, and
	// srcErr, the outcome of the latest offsets poll (nil: connected).
	lagMu  sync.Mutex
	lag    map[record.Partition]PartitionLag
	srcErr error
	// srcWasUp: an offsets poll has succeeded before.
	srcWasUp bool
}

type pipelineDeps struct {
	txn     Transactor // exactly-once mode; must be src
	marks   Marks
	src     Source
	handler Dispatcher
	info    plugins.Info
	sinks   map[string]Sink
	dlq     Sink
	hostID  string
	onEvent func(Event)
	// lagInterval: see pipeline.lagInterval; 0 means the default.
	lagInterval time.Duration
}

func newPipeline(cfg *config.Pipeline, log zerolog.Logger, d pipelineDeps) *pipeline {
	pl := &pipeline{
		cfg: cfg, log: log.With().Str("pipeline", cfg.Name).Logger(),
		src: d.src, handler: d.handler, info: d.info, sinks: d.sinks, dlq: d.dlq,
		hostID: d.hostID, onEvent: d.onEvent, stats: newStats(),
		lanes: map[record.Partition]*lane{}, paused: map[record.Partition]bool{},
		openBreakers: map[string]bool{}, full: map[record.Partition]bool{},
		lagInterval: d.lagInterval,
	}
	pl.encoded, _ = d.handler.(encodedDispatcher)
	if _, ok := d.src.(sources.OffsetReporter); ok {
		pl.srcErr = errNotMeasured
	}
	pl.handlerBreaker = newBreaker("handler", cfg.Breaker, pl.log, pl.breakerChanged)
	if d.marks != nil {
		pl.marks = d.marks
		pl.redisBreaker = newBreaker("redis", cfg.Breaker, pl.log, pl.breakerChanged)
	}
	pl.sinkBreakers = make(map[string]*breaker, len(d.sinks))
	for name := range d.sinks {
		pl.sinkBreakers[name] = newBreaker("sink "+name, cfg.Breaker, pl.log, pl.breakerChanged)
	}
	if d.dlq != nil {
		pl.dlqBreaker = newBreaker("dlq", cfg.Breaker, pl.log, pl.breakerChanged)
		ratio, window := 0.5, 1000
		if cfg.DLQ != nil {
			ratio, window = cfg.DLQ.MaxRatio, cfg.DLQ.Window
		}
		pl.guard = newDLQGuard(ratio, window)
	}
	pl.commits = newCommitter(d.src, d.marks, pl.log)
	if d.txn != nil {
		pl.txn = d.txn
		pl.commits.txn = d.txn
		pl.commits.quiesce = pl.quiesce
		pl.commits.quiesceWithin = cfg.Handler.Timeout + 10*time.Second
		pl.commits.onTxnError = func(err error) { pl.fail(fmt.Errorf("pipeline %s: %w", cfg.Name, err)) }
		for name, sk := range pl.sinks {
			pl.sinks[name] = taintingSink{sk, pl.commits}
		}
		if pl.dlq != nil {
			pl.dlq = taintingSink{pl.dlq, pl.commits}
		}
	}
	pl.commits.onFenced = func(p record.Partition, err error) {
		pl.mu.Lock()
		l := pl.lanes[p]
		pl.mu.Unlock()
		if l != nil {
			pl.fenced(l, err)
		}
	}
	pl.commits.onDone = func(m map[record.Partition]record.Position) {
		pl.stats.Commits.Add(1)
		for p, pos := range m {
			pl.event(EventCommit, p, pos)
		}
	}
	return pl
}

func (pl *pipeline) event(kind EventKind, p record.Partition, pos record.Position) {
	pl.stats.countEvent(kind)
	if pl.onEvent != nil {
		pl.onEvent(Event{Pipeline: pl.cfg.Name, Kind: kind, Partition: p, Position: pos, Time: time.Now()})
	}
}

// run consumes until ctx is done or the pipeline fails. On return every lane
// has been drained and its completed records committed.
func (pl *pipeline) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pl.cancel = cancel
	commitCtx, stopCommits := context.WithCancel(context.Background())
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		pl.commits.loop(commitCtx, pl.cfg.CommitInterval)
	}()
	srcCtx := ctx
	if pl.txn != nil {
		// Exactly-once: on shutdown, finish and commit the lanes' work in
		// a last transaction before the source leaves the group (which
		// drops every lane, committing nothing).
		var stopSrc context.CancelFunc
		srcCtx, stopSrc = context.WithCancel(context.WithoutCancel(ctx))
		defer stopSrc()
		srcDone := make(chan struct{})
		defer close(srcDone)
		go func() {
			select {
			case <-ctx.Done():
				pl.commits.finalTxn(pl.cfg.ShutdownTimeout)
				stopSrc()
			case <-srcDone:
			}
		}()
	}
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		pl.pollLag(lagCtx, pl.lagInterval)
	}()
	err := pl.src.Run(srcCtx, pl)
	stopLag()
	<-lagDone
	// The source revokes every lane before Run returns; drop any it missed.
	pl.mu.Lock()
	left := make([]record.Partition, 0, len(pl.lanes))
	for p := range pl.lanes {
		left = append(left, p)
	}
	pl.mu.Unlock()
	if len(left) > 0 {
		pl.Revoke(context.Background(), left)
	}
	stopCommits()
	<-committerDone
	if ferr := pl.failure(); ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("pipeline %s: source: %w", pl.cfg.Name, err)
	}
	return nil
}

// fail stops the pipeline with err (the first error wins).
func (pl *pipeline) fail(err error) {
	pl.failMu.Lock()
	if pl.failErr == nil {
		pl.failErr = err
		pl.log.Error().Err(err).Msg("pipeline stopping")
	}
	pl.failMu.Unlock()
	if pl.cancel != nil {
		pl.cancel(err)
	}
}

func (pl *pipeline) failure() error {
	pl.failMu.Lock()
	defer pl.failMu.Unlock()
	return pl.failErr
}

// Assign implements sources.Lanes.
func (pl *pipeline) Assign(_ context.Context, claims []sources.Claim) {
	for _, c := range claims {
		pl.mu.Lock()
		if old := pl.lanes[c.Partition]; old != nil {
			pl.mu.Unlock()
			pl.log.Warn().Str("partition", c.Partition.String()).Msg("assigned a partition that already has a lane; replacing it")
			old.kill()
			pl.mu.Lock()
		}
		l := newLane(pl, c.Partition, c.Generation)
		pl.lanes[c.Partition] = l
		delete(pl.full, c.Partition) // the old lane's, if it was replaced
		if pl.holding != nil {
			l.holds <- hold{idle: make(chan struct{}), release: pl.holding}
		}
		pl.mu.Unlock()
		pl.commits.own(c.Partition, c.Generation)
		go l.run()
		pl.reconcilePauses() // a breaker may be open: start paused
		l.log.Info().Int64("generation", c.Generation).Msg("partition assigned")
		pl.event(EventAssigned, c.Partition, record.Position{})
	}
}

// Revoke implements sources.Lanes: drain the lanes in parallel within the
// shutdown timeout, then commit what each completed. Under exactly-once the
// open transaction cannot commit after a revoke: the lanes are dropped and
// the transaction is aborted at once (see revokeTxn).
func (pl *pipeline) Revoke(ctx context.Context, parts []record.Partition) {
	if pl.txn != nil {
		pl.revokeTxn(parts)
		return
	}
	lanes := pl.detach(parts)
	if len(lanes) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pl.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.drain(dctx)
			l.abandonQueue()
			pos, ok := l.tracker.watermark()
			pl.commits.release(context.WithoutCancel(ctx), l.part, pos, ok)
			ev := l.log.Info()
			if ok {
				ev = ev.Str("committed", pos.String())
			}
			ev.Msg("partition revoked")
			pl.event(EventRevoked, l.part, pos)
		}()
	}
	wg.Wait()
}

// fenced drops a lane whose partition a newer owner fenced in Redis: it
// is paused at the source (so nothing more is fetched for it here) and
// dropped like a lost partition, committing nothing. The source's own
// revoke or loss of it follows when the group catches up.
func (pl *pipeline) fenced(l *lane, err error) {
	pl.log.Error().Err(err).Str("partition", l.part.String()).Int64("generation", l.gen).
		Msg("another owner has this partition: dropping its lane without committing")
	pl.src.Pause(l.part)
	go pl.Lost(context.Background(), []record.Partition{l.part})
}

// revokeTxn drops the lanes of revoked partitions under exactly-once: the
// source's transaction session aborts the open transaction after a revoke
// (their outputs in it never become visible), so their work since the last
// commit is for the next owner to redo. The committer is asked to end the
// transaction now, so that the next owner and read_committed readers of
// the outputs do not wait for it.
func (pl *pipeline) revokeTxn(parts []record.Partition) {
	msg := "partition revoked; its work since the last transaction is aborted"
	if pl.commits.txnEnded() {
		msg = "partition released after the last transaction"
	}
	pl.dropLanes(parts, EventRevoked, msg)
	pl.commits.abortSoon()
}

// Rewind implements kafka.Rewinder: the transaction aborted, so every
// record delivered since the last commit will be delivered again. Each
// lane is replaced by an empty one of the same claim; in-flight batches are
// abandoned (their outputs were aborted with the transaction).
func (pl *pipeline) Rewind(_ context.Context, parts []record.Partition) {
	for _, p := range parts {
		pl.mu.Lock()
		old := pl.lanes[p]
		pl.mu.Unlock()
		if old == nil {
			continue
		}
		old.kill()
		old.abandonQueue()
		pl.commits.drop(p)
		l := newLane(pl, p, old.gen)
		pl.mu.Lock()
		pl.lanes[p] = l
		delete(pl.full, p) // the old lane's: the new one starts empty
		if pl.holding != nil {
			l.holds <- hold{idle: make(chan struct{}), release: pl.holding}
		}
		pl.mu.Unlock()
		pl.commits.own(p, old.gen)
		go l.run()
		l.log.Debug().Msg("partition rewound to its last commit")
	}
	pl.reconcilePauses()
}

// quiesce holds every lane at the exactly-once barrier and waits up to
// within for all of them to have no batch in flight. release lets them go
// on; idle is false if some lane did not get there in time.
func (pl *pipeline) quiesce(within time.Duration) (release func(), idle bool) {
	rel := make(chan struct{})
	pl.mu.Lock()
	pl.holding = rel
	lanes := make([]*lane, 0, len(pl.lanes))
	for _, l := range pl.lanes {
		lanes = append(lanes, l)
	}
	pl.mu.Unlock()
	release = func() {
		pl.mu.Lock()
		pl.holding = nil
		pl.mu.Unlock()
		close(rel)
	}
	type held struct {
		l *lane
		h hold
	}
	var hs []held
	for _, l := range lanes {
		h := hold{idle: make(chan struct{}), release: rel}
		if l.holdLane(h) {
			hs = append(hs, held{l, h})
		}
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for _, x := range hs {
		select {
		case <-x.h.idle:
		case <-x.l.done:
		case <-deadline.C:
			pl.log.Warn().Str("partition", x.l.part.String()).Dur("waited", within).
				Msg("a batch did not finish in time for the transaction; aborting it (its records are handled again)")
			return release, false
		}
	}
	return release, true
}

// Lost implements sources.Lanes: abandon the lanes, commit nothing.
func (pl *pipeline) Lost(_ context.Context, parts []record.Partition) {
	pl.dropLanes(parts, EventLost, "partition lost; in-flight work abandoned, nothing committed")
}

// dropLanes abandons the lanes of parts, committing nothing, and reports
// kind for each.
func (pl *pipeline) dropLanes(parts []record.Partition, kind EventKind, msg string) {
	for _, l := range pl.detach(parts) {
		pl.commits.drop(l.part)
		l.kill()
		l.abandonQueue()
		ev := l.log.Info()
		if kind == EventLost {
			ev = l.log.Warn()
		}
		ev.Msg(msg)
		pl.event(kind, l.part, record.Position{})
	}
}

// detach removes the lanes of parts. The source clears its pauses of a
// partition it revokes or loses.
func (pl *pipeline) detach(parts []record.Partition) []*lane {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []*lane
	for _, p := range parts {
		if l := pl.lanes[p]; l != nil {
			out = append(out, l)
			delete(pl.lanes, p)
		}
		delete(pl.paused, p)
		delete(pl.full, p)
	}
	pl.stats.Paused.Store(int64(len(pl.paused)))
	return out
}

// reconcilePauses pauses at the source every partition that should be
// paused (over the in-flight budget, or any breaker open) and resumes the
// others that are paused.
func (pl *pipeline) reconcilePauses() {
	pl.pauseMu.Lock()
	defer pl.pauseMu.Unlock()
	pl.mu.Lock()
	var pause, resume []record.Partition
	for p := range pl.lanes {
		want := pl.overBudget || pl.full[p] || len(pl.openBreakers) > 0
		if want && !pl.paused[p] {
			pl.paused[p] = true
			pause = append(pause, p)
		} else if !want && pl.paused[p] {
			delete(pl.paused, p)
			resume = append(resume, p)
		}
	}
	pl.stats.Paused.Store(int64(len(pl.paused)))
	pl.mu.Unlock()
	if len(pause) > 0 {
		pl.src.Pause(pause...)
	}
	if len(resume) > 0 {
		pl.src.Resume(resume...)
	}
}

// breakerChanged pauses every partition while any breaker is open.
func (pl *pipeline) breakerChanged(name string, open bool) {
	pl.mu.Lock()
	if open {
		pl.openBreakers[name] = true
	} else {
		delete(pl.openBreakers, name)
	}
	pl.mu.Unlock()
	pl.reconcilePauses()
}

// Deliver implements sources.Lanes.
func (pl *pipeline) Deliver(p record.Partition, recs []record.Record) {
	pl.mu.Lock()
	l := pl.lanes[p]
	pl.mu.Unlock()
	if l == nil {
		pl.log.Warn().Str("partition", p.String()).Int("records", len(recs)).Msg("records for a partition without a lane; ignoring (not committed, will be redelivered)")
		sources.PutRecords(recs)
		return
	}
	pl.stats.RecordsIn.Add(int64(len(recs)))
	bytes, full := l.deliver(recs, time.Now())
	if full {
		pl.mu.Lock()
		already := pl.full[p] || pl.lanes[p] != l
		if !already {
			pl.full[p] = true
			l.full.Store(true)
		}
		pl.mu.Unlock()
		if !already {
			pl.reconcilePauses()
			l.poke() // it may have dispatched below the resume mark already
		}
	}
	if pl.stats.InflightBytes.Add(bytes) > pl.cfg.MaxInflightBytes {
		// The budget is the pipeline's: past it, no partition fetches
		// more. Pausing only the partition that passed it would let every
		// other one bring its next fetch, and the pipeline would hold up
		// to a fetch per partition more than its budget.
		pl.mu.Lock()
		already := pl.overBudget
		pl.overBudget = true
		pl.mu.Unlock()
		if !already {
			pl.reconcilePauses()
		}
	}
}

// DeliveredToEnd implements sources.EndNoter: the lane of p learns that its
// newest record is, for now, the partition's last (see lane.take).
func (pl *pipeline) DeliveredToEnd(p record.Partition) {
	pl.mu.Lock()
	l := pl.lanes[p]
	pl.mu.Unlock()
	if l != nil {
		l.deliveredToEnd()
	}
}

// CopiesBytes implements sources.BytesCopier: with a dispatcher that takes
// encoded records, a lane copies each record's bytes as it encodes it
// (delivery.encode), so the source need not copy them first.
func (pl *pipeline) CopiesBytes() bool { return pl.encoded != nil }

// laneDrained resumes l's partition once its lane, paused for having
// enough records waiting, is down to half of that.
func (pl *pipeline) laneDrained(l *lane) {
	pl.mu.Lock()
	changed := pl.full[l.part] && pl.lanes[l.part] == l
	if changed {
		delete(pl.full, l.part)
	}
	l.full.Store(false)
	pl.mu.Unlock()
	if changed {
		pl.reconcilePauses()
	}
}

// completed accounts for records that became complete.
func (pl *pipeline) completed(n int, bytes int64) {
	pl.stats.Completed.Add(int64(n))
	pl.release(bytes)
}

// release returns bytes to the in-flight budget and resumes paused
// partitions once the pipeline is back under half of it.
func (pl *pipeline) release(bytes int64) {
	if bytes == 0 {
		return
	}
	if pl.stats.InflightBytes.Add(-bytes) > pl.cfg.MaxInflightBytes/2 {
		return
	}
	pl.mu.Lock()
	had := pl.overBudget
	pl.overBudget = false
	pl.mu.Unlock()
	if had {
		pl.reconcilePauses()
	}
}
