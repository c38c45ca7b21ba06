// Package kafka is the Kafka topic sink: it produces a pipeline's outputs
// (or dead letters) to one topic with franz-go's idempotent producer.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kzlog"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
)

// DefaultLinger is how long the producer of New waits for more records
// before sending a batch.
const DefaultLinger = 5 * time.Millisecond

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("kafka sink: closed")

// Config configures a Sink with its own client.
type Config struct {
	// Client holds the connection options built by the host (seeds, TLS,
	// SASL, client id). They are applied after the sink's defaults
	// (idempotent producer, linger DefaultLinger, a logger from Logger),
	// so they may override them.
	Client []kgo.Opt
	// Topic is where every message goes; required.
	Topic string
	// Logger receives the Kafka client's logs. The zero value logs nothing.
	Logger zerolog.Logger
}

// Sink writes messages to one Kafka topic. The partition of a message is
// chosen by its key (murmur2, as Kafka's Java producer does), so messages of
// one key go to one partition, in order. It is safe for concurrent use.
type Sink struct {
	prod  Producer
	cl    *kgo.Client // set when the sink owns its client
	topic string
	owns  bool

	mu     sync.Mutex
	closed bool
	writes sync.WaitGroup // Write calls in flight
}

var _ sinks.Sink = (*Sink)(nil)

// New returns a Sink with its own producer client; Close closes it.
func New(cfg Config) (*Sink, error) {
	if cfg.Topic == "" {
		return nil, errors.New("kafka sink: topic: must not be empty")
	}
	opts := []kgo.Opt{
		kgo.WithLogger(kzlog.New(cfg.Logger.With().Str("component", "kgo").Str("topic", cfg.Topic).Logger())),
		kgo.ProducerLinger(DefaultLinger),
	}
	opts = append(opts, cfg.Client...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: create client: %w", cfg.Topic, err)
	}
	return &Sink{prod: cl, cl: cl, topic: cfg.Topic, owns: true}, nil
}

// Producer is what a Sink needs of a Kafka client: *kgo.Client, or the
// transactional producer of an exactly-once source.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// NewWithProducer returns a Sink producing to topic through p, which the
// caller owns. It is how an exactly-once pipeline writes its outputs inside
// the source's transaction.
func NewWithProducer(p Producer, topic string) (*Sink, error) {
	switch {
	case p == nil:
		return nil, errors.New("kafka sink: nil producer")
	case topic == "":
		return nil, errors.New("kafka sink: topic: must not be empty")
	}
	return &Sink{prod: p, topic: topic}, nil
}

// NewWithClient returns a Sink producing to topic through cl, so that one
// producer client can serve a pipeline's Kafka sinks and its DLQ. The caller
// keeps owning cl: Close does not close it, and cl must outlive the Sink.
// cl should be a producer-only client (no consumer group), idempotent (the
// franz-go default), with a small ProducerLinger.
func NewWithClient(cl *kgo.Client, topic string) (*Sink, error) {
	switch {
	case cl == nil:
		return nil, errors.New("kafka sink: nil client")
	case topic == "":
		return nil, errors.New("kafka sink: topic: must not be empty")
	}
	return &Sink{prod: cl, topic: topic}, nil
}

// Topic returns the topic the sink writes to.
func (s *Sink) Topic() string { return s.topic }

// Write produces msgs and waits until each is acknowledged by the broker or
// has failed. Failures are reported per message in a *sinks.WriteError whose
// errors wrap the client's (kerr.MessageTooLarge,
// kerr.UnknownTopicOrPartition, context errors, ...). The client retries
// retryable errors until ctx is done, so bound ctx; a batch already sent
// cannot be failed by ctx (the idempotent producer must learn its outcome),
// so Write may outlast ctx by one request round trip. Canceling ctx may also
// fail other callers' messages buffered in the same batch; they see the
// error and retry. Messages of one call that share a key are written in
// order; a failed message does not stop the ones after it.
func (s *Sink) Write(ctx context.Context, msgs []record.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.writes.Add(1)
	s.mu.Unlock()
	defer s.writes.Done()

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafka sink %q: %w", s.topic, err)
	}
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	wg.Add(len(msgs))
	for i := range msgs {
		m := &msgs[i]
		r := &kgo.Record{Topic: s.topic, Key: m.Key, Value: m.Value, Timestamp: m.Timestamp}
		if len(m.Headers) > 0 {
			r.Headers = make([]kgo.RecordHeader, len(m.Headers))
			for j, h := range m.Headers {
				r.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
			}
		}
		// Promises run serially on the client's goroutine and must not
		// block: this one only stores and counts.
		s.prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				errs[i] = fmt.Errorf("kafka sink: produce to %q: %w", s.topic, err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return &sinks.WriteError{Errs: errs}
		}
	}
	return nil
}

// Close stops accepting writes and waits for those in flight. A sink from
// New then flushes and closes its client; one from NewWithClient leaves the
// client open. If ctx ends first, Close returns its error (an owned client
// is closed anyway, failing what it still buffers). Safe to call twice.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	var err error
	if s.owns {
		// Flushing ends the linger at once, so in-flight writes finish now.
		err = s.cl.Flush(ctx)
	}
	done := make(chan struct{})
	go func() {
		s.writes.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if s.owns {
		s.cl.Close()
	}
	if err != nil {
		return fmt.Errorf("kafka sink %q: close: %w", s.topic, err)
	}
	return nil
}
