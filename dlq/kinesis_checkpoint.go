package dlq

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrReplayRunning is returned when another replay of the same group holds
// the group's lock.
var ErrReplayRunning = errors.New("another replay of this group is running")

// ErrReplayLockLost is returned when a replay's lock expired and another
// replay may have taken it: the replay stops without checkpointing.
var ErrReplayLockLost = errors.New("the replay lost its lock")

// ReplayCheckpoints keeps the progress of Kinesis DLQ replays: per group
// (see DefaultGroup) and shard, the sequence number of the last DLQ record
// a replay finished with (or ShardEnd). A group is held by one replay at a
// time through a lock with a TTL, and every write is fenced by the lock's
// token, so that a replay that lost its lock (it hung past the TTL and
// another started) cannot move the checkpoints.
type ReplayCheckpoints interface {
	// Acquire takes group's lock for ttl and returns its token; it fails
	// with ErrReplayRunning when another replay holds it.
	Acquire(ctx context.Context, group string, ttl time.Duration) (token string, err error)
	// Renew extends the lock by ttl; ErrReplayLockLost when token no
	// longer holds it.
	Renew(ctx context.Context, group, token string, ttl time.Duration) error
	// Load returns the checkpoints of group: shard → sequence number.
	Load(ctx context.Context, group string) (map[string]string, error)
	// Save sets shard's checkpoint; ErrReplayLockLost when token no
	// longer holds the lock.
	Save(ctx context.Context, group, token, shard, seq string) error
	// Release gives the lock up, if token still holds it.
	Release(ctx context.Context, group, token string) error
}

// RedisCheckpoints is ReplayCheckpoints in Redis: a string
// PREFIX "dlq-replay:{GROUP}:lock" holding the token, and a hash
// PREFIX "dlq-replay:{GROUP}:shards" of shard → sequence number (one hash
// slot per group, for Redis Cluster). Safe for concurrent use.
type RedisCheckpoints struct {
	Client redis.UniversalClient
	// Prefix goes before every key (a pipeline's redis.key_prefix).
	Prefix string
}

var _ ReplayCheckpoints = (*RedisCheckpoints)(nil)

func (c *RedisCheckpoints) keys(group string) (lock, shards string) {
	base := c.Prefix + "dlq-replay:{" + group + "}:"
	return base + "lock", base + "shards"
}

// Acquire implements ReplayCheckpoints.
func (c *RedisCheckpoints) Acquire(ctx context.Context, group string, ttl time.Duration) (string, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	lock, _ := c.keys(group)
	ok, err := c.Client.SetNX(ctx, lock, token, ttl).Result()
	if err != nil {
		return "", fmt.Errorf("taking the replay lock %s in redis: %w", lock, err)
	}
	if !ok {
		left, _ := c.Client.PTTL(ctx, lock).Result()
		return "", fmt.Errorf("group %s: %w (its lock %s is held for %v more; a replay that crashed holds it until then)",
			group, ErrReplayRunning, lock, left.Round(time.Second))
	}
	return token, nil
}

// renewScript extends the lock if the token holds it.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 1`)

// Renew implements ReplayCheckpoints.
func (c *RedisCheckpoints) Renew(ctx context.Context, group, token string, ttl time.Duration) error {
	lock, _ := c.keys(group)
	n, err := renewScript.Run(ctx, c.Client, []string{lock}, token, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renewing the replay lock %s in redis: %w", lock, err)
	}
	if n == 0 {
		return fmt.Errorf("group %s: %w", group, ErrReplayLockLost)
	}
	return nil
}

// Load implements ReplayCheckpoints.
func (c *RedisCheckpoints) Load(ctx context.Context, group string) (map[string]string, error) {
	_, shards := c.keys(group)
	m, err := c.Client.HGetAll(ctx, shards).Result()
	if err != nil {
		return nil, fmt.Errorf("loading the replay checkpoints %s from redis: %w", shards, err)
	}
	return m, nil
}

// saveScript sets a checkpoint if the token holds the lock.
var saveScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
return 1`)

// Save implements ReplayCheckpoints.
func (c *RedisCheckpoints) Save(ctx context.Context, group, token, shard, seq string) error {
	lock, shards := c.keys(group)
	n, err := saveScript.Run(ctx, c.Client, []string{lock, shards}, token, shard, seq).Int()
	if err != nil {
		return fmt.Errorf("saving the replay checkpoint of %s in redis: %w", shard, err)
	}
	if n == 0 {
		return fmt.Errorf("group %s: %w; checkpoint of %s not saved", group, ErrReplayLockLost, shard)
	}
	return nil
}

var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("DEL", KEYS[1]) end
return 1`)

// Release implements ReplayCheckpoints.
func (c *RedisCheckpoints) Release(ctx context.Context, group, token string) error {
	lock, _ := c.keys(group)
	if err := releaseScript.Run(ctx, c.Client, []string{lock}, token).Err(); err != nil {
		return fmt.Errorf("releasing the replay lock %s in redis: %w", lock, err)
	}
	return nil
}

// DefaultLedgerTTL is how long the replay ledger remembers that a
// record's content was replayed into Kinesis.
const DefaultLedgerTTL = 30 * 24 * time.Hour

// ReplayLedger counts replays into Kinesis streams, which carry no
// headers, so a record's weir.replay-count cannot travel with it: a
// record that fails again comes back to the DLQ with a count of 0. The
// ledger keeps, per record content (LedgerID: source stream, key and
// value), how many times it was replayed, and a replay takes the larger of
// that and the envelope's count, so --max-replays stops such a record too.
type ReplayLedger interface {
	// Counts returns the count of each id (0: never replayed).
	Counts(ctx context.Context, ids []string) ([]int, error)
	// Record sets the count of each id, for ttl.
	Record(ctx context.Context, ids []string, counts []int, ttl time.Duration) error
}

var _ ReplayLedger = (*RedisCheckpoints)(nil)

// LedgerID names a record's content in the ReplayLedger: a hash of the
// stream it is replayed to, its key and its value.
func LedgerID(stream string, key, value []byte) string {
	h := sha256.New()
	for _, b := range [][]byte{[]byte(stream), key, value} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (c *RedisCheckpoints) ledgerKey(id string) string { return c.Prefix + "dlq-replayed:" + id }

// Counts implements ReplayLedger (one pipelined GET per id, so that ids
// may live in different Redis Cluster slots).
func (c *RedisCheckpoints) Counts(ctx context.Context, ids []string) ([]int, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := c.Client.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, c.ledgerKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading the replay ledger in redis: %w", err)
	}
	out := make([]int, len(ids))
	for i, cmd := range cmds {
		n, err := cmd.Int()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, fmt.Errorf("replay ledger %s: %w", c.ledgerKey(ids[i]), err)
		default:
			out[i] = n
		}
	}
	return out, nil
}

// Record implements ReplayLedger.
func (c *RedisCheckpoints) Record(ctx context.Context, ids []string, counts []int, ttl time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := c.Client.Pipeline()
	for i, id := range ids {
		pipe.Set(ctx, c.ledgerKey(id), counts[i], ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("writing the replay ledger in redis: %w", err)
	}
	return nil
}
