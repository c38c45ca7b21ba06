package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/dlq"

	"github.com/weirhq/weir/host/checkpoint"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/record"
	kinesissink "github.com/weirhq/weir/sinks/kinesis"
	kinesissrc "github.com/weirhq/weir/sources/kinesis"
	"github.com/weirhq/weir/sources/kinesis/lease"
)

// kinesisSource builds the Kinesis source of pc: an SDK client, a Redis
// client for the shard leases (the file's redis section, beside the
// pipeline's checkpoints), and a worker id unique to this process. closeFn
// releases the Redis client.
func (h *Host) kinesisSource(ctx context.Context, pc *config.Pipeline, redisAddr string, log zerolog.Logger) (src *kinesissrc.Source, closeFn func(), err error) {
	k := pc.Source.Kinesis
	region := k.Region
	if region == "" && k.StreamARN() != "" {
		region = arnRegion(k.StreamARN())
	}
	api, err := kinesissrc.NewClient(ctx, kinesissrc.ClientConfig{Region: region, Endpoint: k.Endpoint, Credentials: h.opts.KinesisCredentials})
	if err != nil {
		return nil, func() {}, err
	}
	scfg := h.storeConfig(pc, redisAddr)
	if scfg.KeyPrefix == "" {
		scfg.KeyPrefix = "weir:"
	}
	rdb := checkpoint.NewClient(scfg)
	closeFn = func() { _ = rdb.Close() }
	var tok [3]byte
	_, _ = rand.Read(tok[:])
	worker := h.opts.HostID + "-" + hex.EncodeToString(tok[:])
	leases, err := lease.New(lease.Config{Client: rdb, Base: checkpoint.KeyBase(scfg), Stream: k.StreamName(), Worker: worker, TTL: k.Lease.TTL})
	if err != nil {
		return nil, closeFn, err
	}
	src, err = kinesissrc.New(kinesissrc.Config{
		API: api, Leases: leases, Stream: k.StreamName(), StreamARN: k.StreamARN(), Start: k.Start,
		PollInterval: k.PollInterval, MaxRecordsPerCall: int32(k.MaxRecordsPerCall),
		Heartbeat: k.Lease.Heartbeat, ShardSyncInterval: k.ShardSyncInterval, Logger: log,
	})
	if err != nil {
		return nil, closeFn, fmt.Errorf("creating the kinesis source: %w", err)
	}
	return src, closeFn, nil
}

// arnRegion is the region field of an ARN ("" if it has none).
func arnRegion(arn string) string {
	var parts [6]string
	n := 0
	start := 0
	for i := 0; i < len(arn) && n < 5; i++ {
		if arn[i] == ':' {
			parts[n] = arn[start:i]
			n++
			start = i + 1
		}
	}
	if n < 5 {
		return ""
	}
	return parts[3]
}

// kinesisSink builds a Kinesis stream sink with a client of its own.
func (h *Host) kinesisSink(ctx context.Context, k *config.KinesisSink) (*kinesissink.Sink, error) {
	src := &config.KinesisSource{Stream: k.Stream}
	region := k.Region
	if region == "" && src.StreamARN() != "" {
		region = arnRegion(src.StreamARN())
	}
	api, err := kinesissrc.NewClient(ctx, kinesissrc.ClientConfig{Region: region, Endpoint: k.Endpoint, Credentials: h.opts.KinesisCredentials})
	if err != nil {
		return nil, err
	}
	return kinesissink.New(kinesissink.Config{API: api, Stream: src.StreamName(), StreamARN: src.StreamARN()})
}

// kinesisDLQ writes dead letters to a Kinesis stream: each envelope is
// encoded into the record data (dlq.KinesisDeadLetter), since Kinesis
// records have no headers. It is a Sink like any other, so a dead letter
// goes through the same write loop (retried until written, behind the DLQ
// breaker) and a record is complete, and its position may be
// checkpointed, only once its dead letter is acknowledged by Kinesis.
type kinesisDLQ struct{ s *kinesissink.Sink }

// Write encodes msgs and writes them; a *sinks.WriteError it returns
// indexes msgs (one encoded message per envelope, in order).
func (k kinesisDLQ) Write(ctx context.Context, msgs []record.Message) error {
	out := make([]record.Message, len(msgs))
	for i, m := range msgs {
		out[i] = dlq.KinesisDeadLetter(m)
	}
	return k.s.Write(ctx, out)
}

// ReplayCheckpoints returns where `weir dlq replay` keeps the progress of
// a Kinesis DLQ replay: the file's redis section, under its key_prefix.
// The caller closes the client. It fails when the file has no redis
// section or an embedded one (a process of its own, not reachable).
func ReplayCheckpoints(f *config.File) (*dlq.RedisCheckpoints, func() error, error) {
	switch {
	case !f.Redis.Configured():
		return nil, nil, fmt.Errorf("%s has no redis section", f.Path)
	case f.Redis.Embedded():
		return nil, nil, fmt.Errorf("%s: redis.addr is embedded (inside the weir run process, not reachable from here)", f.Path)
	}
	h := &Host{cfg: f}
	c := h.storeConfig(&config.Pipeline{Name: "dlq-replay", Idempotency: config.Idempotency{Key: "position"}}, f.Redis.Addr)
	cl := checkpoint.NewClient(c)
	return &dlq.RedisCheckpoints{Client: cl, Prefix: f.Redis.KeyPrefix}, cl.Close, nil
}
