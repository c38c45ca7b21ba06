package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/record"
)

// Store keeps one pipeline's idempotency marks and per-partition fenced
// checkpoints in Redis. Make one with New; it is safe for concurrent use by
// every lane of the pipeline. See the package documentation for the data
// model and the fencing rule.
type Store struct {
	cfg  Config
	tmpl Template
	rdb  redis.UniversalClient // nil when there is no server (ModeOff without one)

	base     string // KeyPrefix + "{" + Pipeline + "}/"
	markBase string // base + "idem/"
	token    string // random, per Store: tells claims of two processes apart
	ttlMs    string
	claimMs  string

	closeOnce sync.Once
	closed    atomic.Bool
	stats     struct {
		claimed, duplicates, busy, markedDone, released, fenced, unavailable atomic.Uint64
	}
}

// New validates cfg (every bad option is named in one error), connects to
// Redis and checks that it answers, all within ctx. Under ModeOff without a
// server it connects to nothing. An error that IsUnavailable means the
// configuration was valid but Redis did not answer; the caller may retry.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     cfg,
		base:    cfg.KeyPrefix + "{" + cfg.Pipeline + "}/",
		ttlMs:   strconv.FormatInt(cfg.TTL.Milliseconds(), 10),
		claimMs: strconv.FormatInt(cfg.ClaimTTL.Milliseconds(), 10),
	}
	s.markBase = s.base + "idem/"
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	s.token = hex.EncodeToString(tok[:])
	if cfg.Mode == ModeTemplate {
		s.tmpl, _ = ParseTemplate(cfg.Template) // validated
	}
	if !cfg.hasServer() {
		return s, nil
	}
	s.rdb = redis.NewUniversalClient(s.options())
	for _, h := range cfg.hooks {
		s.rdb.AddHook(h)
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("checkpoint: connecting to redis at %s for pipeline %s: %w",
			s.where(), cfg.Pipeline, classify(err, record.Partition{}, 0))
	}
	return s, nil
}

// options maps Config to go-redis's options: fail fast (one dial attempt,
// two quick retries of a command on a broken connection, socket deadlines
// from the caller's context), so that an outage reaches the host's breaker
// within the caller's deadline.
func (s *Store) options() *redis.UniversalOptions {
	c := s.cfg
	o := &redis.UniversalOptions{
		ClientName:            "weir-" + c.Pipeline,
		DB:                    c.DB,
		Username:              c.Username,
		Password:              c.Password,
		TLSConfig:             c.TLS,
		DialTimeout:           c.Timeout,
		ReadTimeout:           c.Timeout,
		WriteTimeout:          c.Timeout,
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		MaxRetries:            2,
		MinRetryBackoff:       8 * time.Millisecond,
		MaxRetryBackoff:       128 * time.Millisecond,
		DisableIdentity:       true,
	}
	switch {
	case len(c.SentinelAddrs) > 0:
		o.Addrs, o.MasterName = c.SentinelAddrs, c.SentinelMaster
	case len(c.ClusterAddrs) > 0:
		o.Addrs, o.IsClusterMode = c.ClusterAddrs, true
	default:
		o.Addrs = []string{c.Addr}
	}
	return o
}

// where names the server for error messages (never the credentials).
func (s *Store) where() string {
	switch {
	case len(s.cfg.SentinelAddrs) > 0:
		return fmt.Sprintf("sentinel master %s via %v", s.cfg.SentinelMaster, s.cfg.SentinelAddrs)
	case len(s.cfg.ClusterAddrs) > 0:
		return fmt.Sprintf("cluster %v", s.cfg.ClusterAddrs)
	}
	return s.cfg.Addr
}

// Mode returns the store's idempotency mode, with the default applied.
func (s *Store) Mode() Mode { return s.cfg.Mode }

// Ping checks that Redis answers. It returns nil without a server.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("checkpoint: pinging redis: %w", ErrClosed)
	}
	if s.rdb == nil {
		return nil
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("checkpoint: pinging redis: %w", s.note(classify(err, record.Partition{}, 0)))
	}
	return nil
}

// Close closes the connections to Redis. Calls after Close fail with
// ErrClosed. Close is safe to call more than once and concurrently with
// other calls.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.rdb != nil {
			err = s.rdb.Close()
		}
	})
	return err
}

// KeyOf returns r's idempotency key under the store's mode: its position
// (ModePosition), the field its template names (ModeTemplate; a record
// lacking it gets a *KeyError, errors.Is ErrNoKey, which the host turns
// into a non-retryable failure of that record), or the zero Key (ModeOff).
func (s *Store) KeyOf(r *record.Record) (Key, error) {
	switch s.cfg.Mode {
	case ModePosition:
		return PositionKey(r.Position)
	case ModeTemplate:
		v, err := s.tmpl.value(r)
		if err != nil {
			return Key{}, err
		}
		// A record replayed from the DLQ carries its original's id, which
		// was marked done when it was dead-lettered: key each replay apart
		// (weir dlq replay sets weir.replay-count), or it would be dropped
		// as a duplicate of itself.
		if n := replayCount(r); n != "" {
			v = append(append(v[:len(v):len(v)], "\x00replay="...), n...)
		}
		pos, err := encodePosition(r.Position)
		if err != nil {
			return Key{}, err
		}
		return Key{pos: pos, mark: markKey(s.markBase, v)}, nil
	}
	return Key{}, nil
}

// Status is what Claim found for one key.
type Status byte

const (
	// Claimed: handle the record. In ModeTemplate the key is now claimed
	// for ClaimTTL by this record (of this partition and generation), and
	// must be marked done or released.
	Claimed Status = 'C'
	// Done: the record was already handled (a duplicate); drop it, as
	// complete, without handling it.
	Done Status = 'D'
	// Busy (ModeTemplate only): another record holds the key's claim (in
	// another partition or process, or earlier in the same batch). Neither
	// handle nor drop it: ask again later, when it will be Done, or
	// claimable because its holder released it or its claim expired.
	Busy Status = 'B'
)

func (st Status) String() string {
	switch st {
	case Claimed:
		return "claimed"
	case Done:
		return "done"
	case Busy:
		return "busy"
	}
	return "Status(" + strconv.Itoa(int(st)) + ")"
}

// Claims is the result of Claim (Status[i] is keys[i]'s) and of
// ClaimPositions (Status[i] is record i's), with the counts of each status. Done is the number of duplicates dropped, for metrics and
// logs.
type Claims struct {
	Status              []Status
	Claimed, Done, Busy int
}

// Claim is called before a batch is dispatched, with the keys of its
// records (from KeyOf) in one call: one round trip (one script) whatever
// the number of keys. It reports for each key whether its record is done
// already (drop it), claimable (handle it) or busy; in ModeTemplate it
// claims the claimable keys. Under ModeOff every key is Claimed, with no
// Redis call. gen is the caller's generation for part; an older one than
// the partition's fails with a *FencedError (ErrFenced) and claims nothing.
func (s *Store) Claim(ctx context.Context, part record.Partition, gen int64, keys []Key) (Claims, error) {
	n := len(keys)
	if s.closed.Load() {
		return Claims{}, fmt.Errorf("checkpoint: claiming %d keys for %s/%s: %w", n, s.cfg.Pipeline, part, ErrClosed)
	}
	if n == 0 {
		return Claims{}, nil
	}
	var res Claims
	if s.cfg.Mode == ModeOff {
		res.Status = make([]Status, n)
		for i := range res.Status {
			res.Status[i] = Claimed
		}
		res.Claimed = n
		return res, nil
	}
	fail := func(err error) (Claims, error) {
		return Claims{}, fmt.Errorf("checkpoint: claiming %d keys for %s/%s: %w", n, s.cfg.Pipeline, part, err)
	}
	if err := s.usable(gen, keys); err != nil {
		return fail(err)
	}
	if s.cfg.Mode == ModePosition {
		done, err := s.claimRuns(ctx, part, gen, appendKeyRuns(make([]byte, 0, n*20), keys))
		if err != nil {
			return fail(err)
		}
		res.Status = make([]Status, n)
		for i, k := range keys {
			res.Status[i] = Claimed
			if done.has([]byte(k.pos)) {
				res.Status[i] = Done
			}
		}
		return s.count(res), nil
	}
	packed := appendPositions(make([]byte, 0, n*12), keys)
	out, err := scriptClaimMarks.Run(ctx, s.rdb, s.markKeys(part, keys), gen, s.ownerPrefix(gen), part.String(), s.claimMs, packed).Text()
	if err != nil {
		return fail(s.note(classify(err, part, gen)))
	}
	if len(out) != n {
		return fail(fmt.Errorf("the claim script answered %d statuses for %d keys", len(out), n))
	}
	res.Status = []Status(out)
	return s.count(res), nil
}

// count fills in res's counts from its statuses and adds them to the
// stats.
func (s *Store) count(res Claims) Claims {
	for _, st := range res.Status {
		switch st {
		case Claimed:
			res.Claimed++
		case Done:
			res.Done++
		case Busy:
			res.Busy++
		}
	}
	s.stats.claimed.Add(uint64(res.Claimed))
	s.stats.duplicates.Add(uint64(res.Done))
	s.stats.busy.Add(uint64(res.Busy))
	return res
}

// claimRuns runs the position-mode claim script on packed runs and
// returns the ranges it found done.
func (s *Store) claimRuns(ctx context.Context, part record.Partition, gen int64, packed []byte) (doneRanges, error) {
	pk := s.partKeys(part)
	out, err := scriptClaimPositions.Run(ctx, s.rdb, []string{pk.state, pk.wm, pk.done}, gen, packed).Text()
	if err != nil {
		return doneRanges{}, s.note(classify(err, part, gen))
	}
	return parseDone(out)
}

// ClaimPositions is Claim for position mode, with the batch's positions
// instead of keys: Status[i] is record i's, Claimed or Done. It sends and
// stores runs of positions, not each position, so its cost (bytes sent,
// work in Redis, allocations here) grows with the runs of a batch, not its
// records: a batch of consecutive Kafka offsets is one run.
//
// A run is records each of which follows the one before it in ps: the
// next offset, the next user record of the same KPL aggregate, or a later
// position that arrived right after it (ps.At's adjacent). The run
// [first, last] then holds every record of the partition between first
// and last: a position between two records that arrived one right after
// the other is no record, and never will be, since a source delivers a
// partition's records in position order and skips only positions that
// hold none (Kafka's transaction markers, compacted or expired records;
// Kinesis sequence numbers are not consecutive at all). That is what lets
// MarkPositionsDone store a run and a later claim find any record of it
// done, whichever batches the records come in then. A record that was not
// delivered right after the one before it (one held back under ordering
// key, one that failed and is retried, one delivered again after a
// rewind) starts a run of its own.
//
// Outside ModePosition it fails; use Claim with keys.
func (s *Store) ClaimPositions(ctx context.Context, part record.Partition, gen int64, ps Positions) (Claims, error) {
	n := ps.Len()
	fail := func(err error) (Claims, error) {
		return Claims{}, fmt.Errorf("checkpoint: claiming %d positions for %s/%s: %w", n, s.cfg.Pipeline, part, err)
	}
	if err := s.positionsUsable(gen); err != nil {
		return fail(err)
	}
	if n == 0 {
		return Claims{}, nil
	}
	packed, _, err := appendRuns(make([]byte, 0, 64), ps)
	if err != nil {
		return fail(err)
	}
	done, err := s.claimRuns(ctx, part, gen, packed)
	if err != nil {
		return fail(err)
	}
	res := Claims{Status: make([]Status, n)}
	if len(done.lo) == 0 {
		for i := range res.Status {
			res.Status[i] = Claimed
		}
		return s.count(res), nil
	}
	var buf [2 + 99]byte
	for i := range res.Status {
		p, _ := ps.At(i)
		e, _ := appendPosition(buf[:0], p) // checked by appendRuns
		res.Status[i] = Claimed
		if done.has(e) {
			res.Status[i] = Done
		}
	}
	return s.count(res), nil
}

// MarkPositionsDone is MarkDone for position mode, with the positions of
// the records now complete (see ClaimPositions for runs): one round trip,
// and one member of the done set per run. Outside ModePosition it fails;
// use MarkDone with keys.
func (s *Store) MarkPositionsDone(ctx context.Context, part record.Partition, gen int64, ps Positions) error {
	n := ps.Len()
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: marking %d positions done for %s/%s: %w", n, s.cfg.Pipeline, part, err)
	}
	if err := s.positionsUsable(gen); err != nil {
		return fail(err)
	}
	if n == 0 {
		return nil
	}
	packed, _, err := appendRuns(make([]byte, 0, 64), ps)
	if err != nil {
		return fail(err)
	}
	if err := s.markRuns(ctx, part, gen, packed); err != nil {
		return fail(err)
	}
	s.stats.markedDone.Add(uint64(n))
	return nil
}

func (s *Store) markRuns(ctx context.Context, part record.Partition, gen int64, packed []byte) error {
	pk := s.partKeys(part)
	err := scriptMarkPositions.Run(ctx, s.rdb, []string{pk.state, pk.wm, pk.done}, gen, s.ttlMs, packed).Err()
	if err != nil {
		return s.note(classify(err, part, gen))
	}
	return nil
}

// positionsUsable checks the store is open, in ModePosition, and gen is a
// generation.
func (s *Store) positionsUsable(gen int64) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.cfg.Mode != ModePosition {
		return fmt.Errorf("positions are the keys of mode %s only, not %s", ModePosition, s.cfg.Mode)
	}
	if gen < 0 {
		return fmt.Errorf("generation %d is negative", gen)
	}
	return nil
}

// MarkDone is called after the outcome step of a batch (outputs written,
// failures dead-lettered), with the keys of the records now complete, and
// before they count as complete for the commit: one round trip. The marks
// are kept for TTL: in ModeTemplate each key is set to "done" (replacing
// its claim); in ModePosition the positions above the watermark join the
// partition's done set (see Commit). Fenced like Claim. A no-op under
// ModeOff.
func (s *Store) MarkDone(ctx context.Context, part record.Partition, gen int64, keys []Key) error {
	n := len(keys)
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: marking %d keys done for %s/%s: %w", n, s.cfg.Pipeline, part, err)
	}
	if s.closed.Load() {
		return fail(ErrClosed)
	}
	if n == 0 || s.cfg.Mode == ModeOff {
		return nil
	}
	if err := s.usable(gen, keys); err != nil {
		return fail(err)
	}
	if s.cfg.Mode == ModePosition {
		if err := s.markRuns(ctx, part, gen, appendKeyRuns(make([]byte, 0, n*20), keys)); err != nil {
			return fail(err)
		}
	} else if err := scriptMarkMarks.Run(ctx, s.rdb, s.markKeys(part, keys), gen, s.ttlMs).Err(); err != nil {
		return fail(s.note(classify(err, part, gen)))
	}
	s.stats.markedDone.Add(uint64(n))
	return nil
}

// Release gives up the claims of records that failed and will be retried
// (or were abandoned), so that a retry, here or elsewhere, can claim them
// at once instead of after ClaimTTL: one round trip. A key whose claim is
// no longer this record's (it expired and was taken, or was marked done) is
// left alone. Release is not fenced, since it can only remove the caller's
// own claims. A no-op outside ModeTemplate.
func (s *Store) Release(ctx context.Context, part record.Partition, gen int64, keys []Key) error {
	n := len(keys)
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: releasing %d claims for %s/%s: %w", n, s.cfg.Pipeline, part, err)
	}
	if s.closed.Load() {
		return fail(ErrClosed)
	}
	if n == 0 || s.cfg.Mode != ModeTemplate {
		return nil
	}
	if err := s.usable(gen, keys); err != nil {
		return fail(err)
	}
	marks := s.markKeys(part, keys)[1:]
	packed := appendPositions(make([]byte, 0, n*12), keys)
	released, err := scriptReleaseMarks.Run(ctx, s.rdb, marks, s.ownerPrefix(gen), part.String(), packed).Int64()
	if err != nil {
		return fail(s.note(classify(err, part, gen)))
	}
	s.stats.released.Add(uint64(released))
	return nil
}

// Commit stores part's checkpoint: pos is the position of the newest
// record such that it and every record before it are complete (the
// tracker's watermark, inclusive). A checkpoint never moves backwards: a
// pos at or below the stored one is accepted and changes nothing. Commit
// raises the partition's generation to gen (as Fence does), and fails with
// a *FencedError if gen is older. In ModePosition it also moves the
// idempotency watermark to pos and drops the done positions at or below it,
// so the host must call it as the watermark moves (before committing the
// source); one round trip. Without a server (ModeOff) it does nothing.
func (s *Store) Commit(ctx context.Context, part record.Partition, gen int64, pos record.Position) error {
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: committing %s/%s at %s: %w", s.cfg.Pipeline, part, pos, err)
	}
	if s.closed.Load() {
		return fail(ErrClosed)
	}
	if s.rdb == nil {
		return nil
	}
	if err := s.usable(gen, nil); err != nil {
		return fail(err)
	}
	enc, err := encodePosition(pos)
	if err != nil {
		return fail(err)
	}
	posMode := "0"
	if s.cfg.Mode == ModePosition {
		posMode = "1"
	}
	pk := s.partKeys(part)
	err = scriptCommit.Run(ctx, s.rdb, []string{pk.state, pk.wm, pk.done}, gen, checkpointValue(pos), enc, s.ttlMs, posMode).Err()
	if err != nil {
		return fail(s.note(classify(err, part, gen)))
	}
	return nil
}

// Load returns part's stored checkpoint (ok is false if none was
// committed) and its stored generation (0 if none). It is not fenced.
// Without a server it returns ok false.
func (s *Store) Load(ctx context.Context, part record.Partition) (pos record.Position, gen int64, ok bool, err error) {
	fail := func(err error) (record.Position, int64, bool, error) {
		return record.Position{}, 0, false, fmt.Errorf("checkpoint: loading the checkpoint of %s/%s: %w", s.cfg.Pipeline, part, err)
	}
	if s.closed.Load() {
		return fail(ErrClosed)
	}
	if s.rdb == nil {
		return record.Position{}, 0, false, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.partKeys(part).state, "ck", "gen").Result()
	if err != nil {
		return fail(s.note(classify(err, part, 0)))
	}
	if g, isStr := vals[1].(string); isStr {
		if gen, err = strconv.ParseInt(g, 10, 64); err != nil {
			return fail(fmt.Errorf("stored generation %q is not a number", g))
		}
	}
	ck, isStr := vals[0].(string)
	if !isStr {
		return record.Position{}, gen, false, nil
	}
	if pos, err = parseCheckpointValue(ck); err != nil {
		return fail(err)
	}
	return pos, gen, true, nil
}

// Fence raises part's stored generation to gen. A new owner calls it when
// it takes the partition, before anything else, so that every write of an
// older owner (Claim, MarkDone, Commit) fails with ErrFenced from then on.
// Fencing again with the same generation is a no-op; an older generation
// than the stored one fails with a *FencedError (the caller is itself
// stale). One round trip; without a server it does nothing.
func (s *Store) Fence(ctx context.Context, part record.Partition, gen int64) error {
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: fencing %s/%s at generation %d: %w", s.cfg.Pipeline, part, gen, err)
	}
	if s.closed.Load() {
		return fail(ErrClosed)
	}
	if s.rdb == nil {
		return nil
	}
	if err := s.usable(gen, nil); err != nil {
		return fail(err)
	}
	if err := scriptFence.Run(ctx, s.rdb, []string{s.partKeys(part).state}, gen).Err(); err != nil {
		return fail(s.note(classify(err, part, gen)))
	}
	return nil
}

// Stats are counters since New, for metrics and logs.
type Stats struct {
	// Claimed, Duplicates and Busy count the keys Claim found claimable,
	// done already (duplicates dropped: redelivered, or resent by their
	// producer) and held by another owner.
	Claimed, Duplicates, Busy uint64
	// MarkedDone counts keys marked done; Released, claims released.
	MarkedDone, Released uint64
	// Fenced counts calls refused by the fence; Unavailable, calls that
	// failed because Redis was unavailable.
	Fenced, Unavailable uint64
}

// Stats returns the counters. Safe for concurrent use.
func (s *Store) Stats() Stats {
	return Stats{
		Claimed:     s.stats.claimed.Load(),
		Duplicates:  s.stats.duplicates.Load(),
		Busy:        s.stats.busy.Load(),
		MarkedDone:  s.stats.markedDone.Load(),
		Released:    s.stats.released.Load(),
		Fenced:      s.stats.fenced.Load(),
		Unavailable: s.stats.unavailable.Load(),
	}
}

// usable checks the store is open, gen is a generation and every key was
// made by KeyOf under the store's mode.
func (s *Store) usable(gen int64, keys []Key) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if gen < 0 {
		return fmt.Errorf("generation %d is negative", gen)
	}
	for i, k := range keys {
		if k.pos == "" || (s.cfg.Mode == ModeTemplate) != (k.mark != "") {
			return fmt.Errorf("keys[%d] was not made by this store's KeyOf (mode %s)", i, s.cfg.Mode)
		}
	}
	return nil
}

// markKeys returns the KEYS of a template script: part's state hash, then
// each key's mark.
func (s *Store) markKeys(part record.Partition, keys []Key) []string {
	out := make([]string, 1+len(keys))
	out[0] = s.partKeys(part).state
	for i, k := range keys {
		out[1+i] = k.mark
	}
	return out
}

// ownerPrefix is the start of the value of this store's claims at gen.
func (s *Store) ownerPrefix(gen int64) string {
	return "c:" + strconv.FormatInt(gen, 10) + ":" + s.token + ":"
}

// note counts a classified error in the stats and returns it.
func (s *Store) note(err error) error {
	switch {
	case errors.Is(err, ErrFenced):
		s.stats.fenced.Add(1)
	case errors.Is(err, ErrUnavailable):
		s.stats.unavailable.Add(1)
	}
	return err
}

// replayHeader is set by `weir dlq replay` (dlq.HeaderReplayCount).
const replayHeader = "weir.replay-count"

// replayCount returns r's replay count header, or "".
func replayCount(r *record.Record) string {
	for _, h := range r.Headers {
		if h.Key == replayHeader {
			return string(h.Value)
		}
	}
	return ""
}

// NewClient returns a go-redis client for cfg's server with the options a
// Store uses (fail fast, deadlines from the caller's context), for other
// parts of a pipeline that keep state beside its checkpoints (the Kinesis
// source's shard leases). It does not connect; the caller closes it.
func NewClient(cfg Config) redis.UniversalClient {
	s := &Store{cfg: cfg.withDefaults()}
	return redis.NewUniversalClient(s.options())
}

// KeyBase returns the prefix of every key of cfg's pipeline:
// KeyPrefix + "{" + Pipeline + "}/", one cluster slot per pipeline.
func KeyBase(cfg Config) string { return cfg.KeyPrefix + "{" + cfg.Pipeline + "}/" }
