// Package lease keeps the shard leases and checkpoints of a Kinesis
// pipeline in Redis: which worker reads which shard, under which epoch, and
// how far it has got. It is the Redis half of the Kinesis source; the
// source decides what to take, when to renew and when to let go.
//
// # Data model
//
// Every key starts with the base given in Config (the host passes
// KeyPrefix + "{pipeline}/", so all of a pipeline's keys share one cluster
// slot and every script is single-slot). S is the stream name.
//
//	BASE kl/S/SHARD  hash, no TTL   owner:    worker id, "" when free
//	                                exp:      lease expiry, ms (Redis clock)
//	                                epoch:    raised by every acquire; the fence
//	                                ck, sub:  checkpoint: sequence number and
//	                                          sub-sequence (KPL) number
//	                                ended:    "1" once checkpointed at SHARD_END
//	                                start:    where to begin without a checkpoint
//	                                handover: a worker that asked for the lease
//	                                for, forexp: after a handover, the lease is
//	                                          reserved for that worker until forexp
//	BASE kw/S        zset           live workers, scored by heartbeat expiry (ms)
//	BASE ki/S        string         set once the stream's first shards got their
//	                                start (the configured one); later shards
//	                                (children of a reshard) start at TRIM_HORIZON
//
// Every decision that depends on time uses the Redis server's clock (TIME
// inside the scripts), so workers on hosts with skewed clocks agree on
// which leases have expired.
//
// # Fencing
//
// Each acquire raises the lease's epoch. Renew, Checkpoint and Release
// carry the caller's owner id and epoch and change nothing unless both
// still match, checked and written in one Lua script: once another worker
// has acquired the lease, nothing the old owner sends lands. A lease whose
// expiry passed but that nobody took yet is still its owner's: the epoch
// is unchanged, so the owner may renew it and go on.
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLost is returned by Renew, Checkpoint and Release when the caller no
// longer holds the lease: another worker acquired it (a newer epoch), or it
// was released.
var ErrLost = errors.New("lease lost to another worker")

// Config configures a Store.
type Config struct {
	// Client is the Redis connection; required. The Store does not close
	// it.
	Client redis.UniversalClient
	// Base is put before every key: the host uses KeyPrefix + "{pipeline}/".
	// Required.
	Base string
	// Stream is the stream name; required.
	Stream string
	// Worker is this worker's id, unique among the pipeline's workers;
	// required.
	Worker string
	// TTL is how long a lease and a worker registration live without a
	// renewal; required, at least 100ms.
	TTL time.Duration
}

// Store reads and writes one pipeline's leases of one stream for one
// worker. Safe for concurrent use.
type Store struct {
	cfg     Config
	ttl     string
	workers string
	init    string
}

// New validates cfg and returns a Store. It does not contact Redis.
func New(cfg Config) (*Store, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("lease: Client: required"))
	}
	if cfg.Base == "" {
		errs = append(errs, errors.New("lease: Base: required"))
	}
	if cfg.Stream == "" {
		errs = append(errs, errors.New("lease: Stream: required"))
	}
	if cfg.Worker == "" {
		errs = append(errs, errors.New("lease: Worker: required"))
	}
	if cfg.TTL < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("lease: TTL: %s is below 100ms", cfg.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Store{
		cfg:     cfg,
		ttl:     strconv.FormatInt(cfg.TTL.Milliseconds(), 10),
		workers: cfg.Base + "kw/" + cfg.Stream,
		init:    cfg.Base + "ki/" + cfg.Stream,
	}, nil
}

// Worker returns this worker's id.
func (s *Store) Worker() string { return s.cfg.Worker }

// Key returns the Redis key of a shard's lease.
func (s *Store) Key(shard string) string { return s.cfg.Base + "kl/" + s.cfg.Stream + "/" + shard }

// Checkpoint is how far a shard has been processed: every record at or
// below (Seq, Sub) is complete. The zero value is "none".
type Checkpoint struct {
	// Seq is the Kinesis sequence number; "" when there is no checkpoint.
	Seq string
	// Sub is the sub-sequence number of a KPL user record within the
	// aggregate at Seq; 0 for plain records.
	Sub int64
}

// Lease is what Acquire returns.
type Lease struct {
	Shard string
	// Epoch is the fencing token of this holding of the lease.
	Epoch int64
	// Checkpoint is where the previous owners got to.
	Checkpoint Checkpoint
	// Start is the shard's start without a checkpoint: "trim_horizon" or
	// "at:UNIXMS" ("latest" as given to Init becomes the time of the first
	// acquire).
	Start string
	// Latest reports that the start was "latest" and this acquire fixed it
	// to now: the owner reads from the shard's tip (LATEST), and later
	// owners without a checkpoint from the time in Start.
	Latest bool
}

// State is the view of a lease that balancing needs.
type State struct {
	Shard string
	// Owner is the live owner; "" when the lease is free or expired.
	Owner string
	// Ended reports the shard was processed to its end and checkpointed
	// there.
	Ended bool
	// Handover is the worker that asked the owner for the lease; "" if
	// none.
	Handover string
	// ReservedFor is the worker a handover reserved the lease for, while
	// the reservation lasts; "" otherwise.
	ReservedFor string
}

const nowMs = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// scriptInit: KEYS[1] the stream's init marker, KEYS[2..] shard leases;
// ARGV[1] the configured start. The first call for a stream gives every
// listed shard the configured start; later calls give new shards
// "trim_horizon" (they are children of a reshard and must be read whole).
var scriptInit = redis.NewScript(`
local start = ARGV[1]
if redis.call('SET', KEYS[1], '1', 'NX') == false then start = 'trim_horizon' end
for i = 2, #KEYS do redis.call('HSETNX', KEYS[i], 'start', start) end
return 1`)

// scriptAcquire: KEYS[1] lease; ARGV worker, ttl ms. Returns
// {epoch, ck, sub, start, fixed} or {-1} (held or reserved by another), {-2} (ended).
// A start of "latest" becomes "at:NOW" at the first acquire, so a later
// owner of a shard without a checkpoint reads from the same point instead
// of skipping what was written in between.
var scriptAcquire = redis.NewScript(nowMs + `
local k = KEYS[1]
local f = redis.call('HMGET', k, 'owner', 'exp', 'ended', 'for', 'forexp', 'ck', 'sub', 'start')
if f[3] == '1' then return {-2} end
if f[1] and f[1] ~= '' and tonumber(f[2] or '0') > now then return {-1} end
if f[4] and f[4] ~= '' and f[4] ~= ARGV[1] and tonumber(f[5] or '0') > now then return {-1} end
local ep = redis.call('HINCRBY', k, 'epoch', 1)
local start = f[8] or 'trim_horizon'
local fixed = '0'
if start == 'latest' then
  start = 'at:' .. now
  fixed = '1'
  redis.call('HSET', k, 'start', start)
end
redis.call('HSET', k, 'owner', ARGV[1], 'exp', now + tonumber(ARGV[2]), 'for', '', 'forexp', 0, 'handover', '')
return {ep, f[6] or '', f[7] or '0', start, fixed}`)

// scriptRenew: KEYS[1] lease; ARGV worker, epoch, ttl ms. Returns the
// handover request ("" if none), or false when the lease is not ours.
var scriptRenew = redis.NewScript(nowMs + `
local k = KEYS[1]
local f = redis.call('HMGET', k, 'owner', 'epoch', 'handover')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return false end
redis.call('HSET', k, 'exp', now + tonumber(ARGV[3]))
return f[3] or ''`)

// scriptCheckpoint: KEYS[1] lease; ARGV worker, epoch, seq, sub, ended.
var scriptCheckpoint = redis.NewScript(`
local k = KEYS[1]
local f = redis.call('HMGET', k, 'owner', 'epoch')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', k, 'ck', ARGV[3], 'sub', ARGV[4]) end
if ARGV[5] == '1' then redis.call('HSET', k, 'ended', '1') end
return 1`)

// scriptRelease: KEYS[1] lease; ARGV worker, epoch, reserve-for, ttl ms.
var scriptRelease = redis.NewScript(nowMs + `
local k = KEYS[1]
local f = redis.call('HMGET', k, 'owner', 'epoch')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return 0 end
local forexp = 0
if ARGV[3] ~= '' then forexp = now + tonumber(ARGV[4]) end
redis.call('HSET', k, 'owner', '', 'exp', 0, 'handover', '', 'for', ARGV[3], 'forexp', forexp)
return 1`)

// scriptAskHandover: KEYS[1] lease; ARGV asking worker, expected owner.
var scriptAskHandover = redis.NewScript(nowMs + `
local k = KEYS[1]
local f = redis.call('HMGET', k, 'owner', 'exp', 'handover')
if f[1] ~= ARGV[2] or tonumber(f[2] or '0') <= now then return 0 end
if f[3] and f[3] ~= '' then return 0 end
redis.call('HSET', k, 'handover', ARGV[1])
return 1`)

// scriptStates: KEYS leases. Returns per lease {live owner, ended,
// handover, reserved for}.
var scriptStates = redis.NewScript(nowMs + `
local out = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'owner', 'exp', 'ended', 'handover', 'for', 'forexp')
  local owner = ''
  if f[1] and f[1] ~= '' and tonumber(f[2] or '0') > now then owner = f[1] end
  local rfor = ''
  if f[5] and f[5] ~= '' and tonumber(f[6] or '0') > now then rfor = f[5] end
  out[i] = {owner, f[3] or '', f[4] or '', rfor}
end
return out`)

// scriptHeartbeat: KEYS[1] workers zset; ARGV worker, ttl ms. Registers
// the worker and returns the live workers, sorted.
var scriptHeartbeat = redis.NewScript(nowMs + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`)

// Init gives shards that have no start yet their start without a
// checkpoint: start for the shards of the stream's first listing, and
// "trim_horizon" for shards that appear later (children of a reshard,
// whose every record must be read once their parents are done).
func (s *Store) Init(ctx context.Context, start string, shards []string) error {
	if len(shards) == 0 {
		return nil
	}
	keys := make([]string, 0, len(shards)+1)
	keys = append(keys, s.init)
	for _, sh := range shards {
		keys = append(keys, s.Key(sh))
	}
	if err := scriptInit.Run(ctx, s.cfg.Client, keys, start).Err(); err != nil {
		return fmt.Errorf("lease: recording the start of %d shards of %s: %w", len(shards), s.cfg.Stream, err)
	}
	return nil
}

// Acquire takes the shard's lease if it is free, expired, or reserved for
// this worker. ok is false when another worker holds it (or it is reserved
// for another) or the shard is ended.
func (s *Store) Acquire(ctx context.Context, shard string) (l Lease, ok bool, err error) {
	res, err := scriptAcquire.Run(ctx, s.cfg.Client, []string{s.Key(shard)}, s.cfg.Worker, s.ttl).Slice()
	if err != nil {
		return Lease{}, false, fmt.Errorf("lease: acquiring %s/%s: %w", s.cfg.Stream, shard, err)
	}
	ep, _ := res[0].(int64)
	if ep < 0 {
		return Lease{}, false, nil
	}
	l = Lease{Shard: shard, Epoch: ep, Start: str(res[3]), Latest: str(res[4]) == "1"}
	l.Checkpoint.Seq = str(res[1])
	l.Checkpoint.Sub, _ = strconv.ParseInt(str(res[2]), 10, 64)
	return l, true, nil
}

// Renew extends the lease by the TTL. handover is the worker that asked
// for the lease ("" if none). ErrLost: another worker has it.
func (s *Store) Renew(ctx context.Context, shard string, epoch int64) (handover string, err error) {
	res, err := scriptRenew.Run(ctx, s.cfg.Client, []string{s.Key(shard)}, s.cfg.Worker, epoch, s.ttl).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("lease: renewing %s/%s at epoch %d: %w", s.cfg.Stream, shard, epoch, ErrLost)
	}
	if err != nil {
		return "", fmt.Errorf("lease: renewing %s/%s: %w", s.cfg.Stream, shard, err)
	}
	return str(res), nil
}

// Checkpoint stores cp (unless cp.Seq is "") and, with ended, marks the
// shard processed to its end, fenced by epoch. ErrLost: another worker has
// the lease, and nothing was written.
func (s *Store) Checkpoint(ctx context.Context, shard string, epoch int64, cp Checkpoint, ended bool) error {
	e := "0"
	if ended {
		e = "1"
	}
	n, err := scriptCheckpoint.Run(ctx, s.cfg.Client, []string{s.Key(shard)}, s.cfg.Worker, epoch, cp.Seq, cp.Sub, e).Int()
	if err != nil {
		return fmt.Errorf("lease: checkpointing %s/%s at %s: %w", s.cfg.Stream, shard, cp.Seq, err)
	}
	if n == 0 {
		return fmt.Errorf("lease: checkpointing %s/%s at %s (epoch %d): %w", s.cfg.Stream, shard, cp.Seq, epoch, ErrLost)
	}
	return nil
}

// Release frees the lease, fenced by epoch. With reserveFor set (a
// graceful handover), only that worker may acquire it for the next TTL.
func (s *Store) Release(ctx context.Context, shard string, epoch int64, reserveFor string) error {
	n, err := scriptRelease.Run(ctx, s.cfg.Client, []string{s.Key(shard)}, s.cfg.Worker, epoch, reserveFor, s.ttl).Int()
	if err != nil {
		return fmt.Errorf("lease: releasing %s/%s: %w", s.cfg.Stream, shard, err)
	}
	if n == 0 {
		return fmt.Errorf("lease: releasing %s/%s (epoch %d): %w", s.cfg.Stream, shard, epoch, ErrLost)
	}
	return nil
}

// AskHandover asks owner, which must hold the shard's live lease, to hand
// it over to this worker. It reports whether the request was recorded
// (false: the owner changed, or someone else asked first).
func (s *Store) AskHandover(ctx context.Context, shard, owner string) (bool, error) {
	n, err := scriptAskHandover.Run(ctx, s.cfg.Client, []string{s.Key(shard)}, s.cfg.Worker, owner).Int()
	if err != nil {
		return false, fmt.Errorf("lease: asking %s for %s/%s: %w", owner, s.cfg.Stream, shard, err)
	}
	return n == 1, nil
}

// States returns the state of each shard's lease, in the order given.
func (s *Store) States(ctx context.Context, shards []string) ([]State, error) {
	if len(shards) == 0 {
		return nil, nil
	}
	keys := make([]string, len(shards))
	for i, sh := range shards {
		keys[i] = s.Key(sh)
	}
	res, err := scriptStates.Run(ctx, s.cfg.Client, keys).Slice()
	if err != nil {
		return nil, fmt.Errorf("lease: reading %d leases of %s: %w", len(shards), s.cfg.Stream, err)
	}
	out := make([]State, len(shards))
	for i, r := range res {
		row, _ := r.([]any)
		if len(row) < 4 {
			return nil, fmt.Errorf("lease: reading leases of %s: malformed row %v", s.cfg.Stream, r)
		}
		out[i] = State{Shard: shards[i], Owner: str(row[0]), Ended: str(row[1]) == "1", Handover: str(row[2]), ReservedFor: str(row[3])}
	}
	return out, nil
}

// Heartbeat registers this worker for the TTL and returns every live
// worker of the stream (this one included), sorted.
func (s *Store) Heartbeat(ctx context.Context) ([]string, error) {
	ws, err := scriptHeartbeat.Run(ctx, s.cfg.Client, []string{s.workers}, s.cfg.Worker, s.ttl).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("lease: heartbeat of worker %s: %w", s.cfg.Worker, err)
	}
	return ws, nil
}

// Deregister removes this worker from the live workers at once (on
// shutdown, after its leases are released).
func (s *Store) Deregister(ctx context.Context) error {
	if err := s.cfg.Client.ZRem(ctx, s.workers, s.cfg.Worker).Err(); err != nil {
		return fmt.Errorf("lease: deregistering worker %s: %w", s.cfg.Worker, err)
	}
	return nil
}

// Load returns a shard's checkpoint and whether it is ended, without
// taking its lease (for tests and tools).
func (s *Store) Load(ctx context.Context, shard string) (cp Checkpoint, ended bool, err error) {
	f, err := s.cfg.Client.HMGet(ctx, s.Key(shard), "ck", "sub", "ended").Result()
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("lease: loading %s/%s: %w", s.cfg.Stream, shard, err)
	}
	cp.Seq = str(f[0])
	cp.Sub, _ = strconv.ParseInt(str(f[1]), 10, 64)
	return cp, str(f[2]) == "1", nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

// TTL returns the lease TTL.
func (s *Store) TTL() time.Duration { return s.cfg.TTL }
