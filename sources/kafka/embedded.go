package kafka

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is an in-process, single-broker Kafka (franz-go's kfake) on
// loopback, for `weir quickstart`, the examples and tests. It keeps data in
// memory only. It supports what weir uses: consumer groups with the
// cooperative-sticky balancer (balancing is client-side), offset commits,
// idempotent and transactional producers, and topic creation. It does not
// delay a group's first rebalance (Kafka's group.initial.rebalance.delay.ms),
// so members learn of a rebalance at their next heartbeat: lower
// kgo.HeartbeatInterval for fast rebalances.
type Embedded struct {
	c    *kfake.Cluster
	once sync.Once
}

// EmbeddedOption configures StartEmbedded.
type EmbeddedOption func(*embeddedConfig)

type embeddedConfig struct {
	port       int
	partitions int
	noAuto     bool
	topics     map[string]int32
	log        *zerolog.Logger
}

// WithPort listens on port instead of a free one.
func WithPort(port int) EmbeddedOption {
	return func(c *embeddedConfig) { c.port = port }
}

// WithDefaultPartitions sets the partition count of topics created
// automatically or without a count; default 8.
func WithDefaultPartitions(n int) EmbeddedOption {
	return func(c *embeddedConfig) { c.partitions = n }
}

// WithTopic creates topic at start with partitions partitions (the default
// count if partitions <= 0). It may be given several times.
func WithTopic(topic string, partitions int32) EmbeddedOption {
	return func(c *embeddedConfig) { c.topics[topic] = partitions }
}

// WithoutAutoCreateTopics makes producing to or consuming from an unknown
// topic fail instead of creating it; topics are then created only by
// WithTopic or by an admin request (EnsureTopics).
func WithoutAutoCreateTopics() EmbeddedOption {
	return func(c *embeddedConfig) { c.noAuto = true }
}

// WithBrokerLogger sends the broker's own logs (warnings and errors) to l.
func WithBrokerLogger(l zerolog.Logger) EmbeddedOption {
	return func(c *embeddedConfig) { c.log = &l }
}

// StartEmbedded starts the broker. Close it when done.
func StartEmbedded(opts ...EmbeddedOption) (*Embedded, error) {
	cfg := embeddedConfig{partitions: 8, topics: make(map[string]int32)}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.port < 0 || cfg.port > 65535 {
		return nil, fmt.Errorf("kafka: embedded broker: port %d out of range", cfg.port)
	}
	if cfg.partitions <= 0 {
		return nil, fmt.Errorf("kafka: embedded broker: default partitions %d must be positive", cfg.partitions)
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(cfg.partitions),
		kfake.ClusterID("weir-embedded"),
	}
	if cfg.port != 0 {
		kopts = append(kopts, kfake.Ports(cfg.port))
	}
	if !cfg.noAuto {
		kopts = append(kopts, kfake.AllowAutoTopicCreation())
	}
	for t, p := range cfg.topics {
		if t == "" {
			return nil, errors.New("kafka: embedded broker: topic name must not be empty")
		}
		kopts = append(kopts, kfake.SeedTopics(p, t))
	}
	if cfg.log != nil {
		kopts = append(kopts, kfake.WithLogger(brokerLogger{cfg.log.With().Str("component", "kfake").Logger()}))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: start embedded broker: %w", err)
	}
	return &Embedded{c: c}, nil
}

// Addrs returns the broker's host:port, for kgo.SeedBrokers.
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Close stops the broker and drops its data. It is safe to call twice.
func (e *Embedded) Close() { e.once.Do(e.c.Close) }

// brokerLogger adapts zerolog to kfake.Logger. kfake's info and debug logs
// trace every request; only warnings and errors are kept.
type brokerLogger struct{ zl zerolog.Logger }

func (l brokerLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.zl.Error().Msgf(format, args...)
	case kfake.LogLevelWarn:
		l.zl.Warn().Msgf(format, args...)
	}
}
