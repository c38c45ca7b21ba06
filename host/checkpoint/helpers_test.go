package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
)

// backend is a Redis to run a test against: the real redis-server (always)
// and miniredis (the embedded Redis of `weir quickstart`, which must run
// the same scripts).
type backend struct {
	name string
	// start returns an address and a way to let time pass for TTLs.
	start func(t testing.TB) (addr string, wait func(time.Duration))
}

var (
	realRedis = backend{"redis-server", func(t testing.TB) (string, func(time.Duration)) {
		return testenv.Redis(t), time.Sleep
	}}
	miniRedis = backend{"miniredis", func(t testing.TB) (string, func(time.Duration)) {
		mr := miniredis.RunT(t)
		return mr.Addr(), mr.FastForward
	}}
	backends = []backend{realRedis, miniRedis}
)

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, addr string, wait func(time.Duration))) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			addr, wait := b.start(t)
			f(t, addr, wait)
		})
	}
}

// uniquePrefix keeps tests apart on a shared server (WEIR_TEST_REDIS).
func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "weirtest:" + hex.EncodeToString(b[:]) + ":"
}

// open makes a Store on addr with cfg, filling Addr, KeyPrefix (unique) and
// Pipeline when unset; t.Cleanup closes it.
func open(t testing.TB, addr string, cfg Config) *Store {
	t.Helper()
	if cfg.Addr == "" && cfg.Mode != ModeOff {
		cfg.Addr = addr
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = uniquePrefix()
	}
	if cfg.Pipeline == "" {
		cfg.Pipeline = "iot"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// raw is a plain client to look at what a Store wrote.
func raw(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var (
	p0 = record.KafkaPartition("sensor-readings", 0)
	p1 = record.KafkaPartition("sensor-readings", 1)
)

// offsets returns position keys for the offsets [from, to).
func offsets(t testing.TB, from, to int64) []Key {
	t.Helper()
	keys := make([]Key, 0, to-from)
	for o := from; o < to; o++ {
		k, err := PositionKey(record.Position{Offset: o})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// msg is a record of p at offset off whose header message_id is id.
func msg(p record.Partition, off int64, id string) record.Record {
	return record.Record{
		Partition: p,
		Position:  record.Position{Offset: off},
		Key:       []byte("device-" + strconv.FormatInt(off%7, 10)),
		Value:     []byte(`{"message_id":"` + id + `","temp":21.5}`),
		Headers:   []record.Header{{Key: "message_id", Value: []byte(id)}},
	}
}

// keysOf returns s.KeyOf of each record.
func keysOf(t testing.TB, s *Store, recs ...record.Record) []Key {
	t.Helper()
	keys := make([]Key, len(recs))
	for i := range recs {
		k, err := s.KeyOf(&recs[i])
		if err != nil {
			t.Fatalf("KeyOf(record %d): %v", i, err)
		}
		keys[i] = k
	}
	return keys
}

// statuses renders Claims as a string like "CDB", for compact assertions.
func statuses(c Claims) string {
	b := make([]byte, len(c.Status))
	for i, st := range c.Status {
		b[i] = byte(st)
	}
	return string(b)
}

func claim(t testing.TB, s *Store, p record.Partition, gen int64, keys []Key) string {
	t.Helper()
	c, err := s.Claim(context.Background(), p, gen, keys)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return statuses(c)
}

func markDone(t testing.TB, s *Store, p record.Partition, gen int64, keys []Key) {
	t.Helper()
	if err := s.MarkDone(context.Background(), p, gen, keys); err != nil {
		t.Fatalf("MarkDone: %v", err)
	}
}

func commit(t testing.TB, s *Store, p record.Partition, gen int64, pos record.Position) {
	t.Helper()
	if err := s.Commit(context.Background(), p, gen, pos); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func repeat(c byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// counter is a go-redis hook counting round trips (a command, or a
// pipeline of them, is one) and the bytes written and read on connections.
type counter struct {
	cmds, pipelines   atomic.Int64
	written, readByte atomic.Int64
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, c: c}, nil
	}
}

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

func (c *counter) roundTrips() int64 { return c.cmds.Load() + c.pipelines.Load() }

func (c *counter) reset() {
	c.cmds.Store(0)
	c.pipelines.Store(0)
	c.written.Store(0)
	c.readByte.Store(0)
}

type countingConn struct {
	net.Conn
	c *counter
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.written.Add(int64(n))
	return n, err
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.readByte.Add(int64(n))
	return n, err
}
