// Package kinesis is the Kinesis stream sink: it writes a pipeline's
// outputs with PutRecords, in requests of at most 500 records and 5 MB,
// retrying only the entries that failed.
//
// Order: the messages of one Write that share a key are written in order.
// PutRecords does not keep order within a request when some entries fail
// and later ones succeed, so a request never holds two messages of one
// key: the messages are sent in rounds, the first message of every key,
// then the second, each round once the one before it is written. A
// message that cannot be written fails the later messages of its key too,
// unsent.
//
// Partition key: the message key; a key longer than Kinesis allows (256
// characters) is replaced by the hex SHA-256 of it (the same key always
// lands on the same shard), and a message without a key gets a random one.
// Kinesis records have no headers: a message's headers are not written.
package kinesis

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
)

// Kinesis limits of PutRecords.
const (
	maxEntries      = 500
	maxRequestBytes = 5 << 20
	maxRecordBytes  = 1 << 20 // data plus partition key
	maxKeyChars     = 256
)

// Defaults of Config.
const (
	DefaultMaxAttempts = 10
	DefaultBackoff     = 100 * time.Millisecond
	maxBackoff         = 5 * time.Second
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("kinesis sink: closed")

// ErrTooLarge fails a message whose value and partition key pass 1 MB.
var ErrTooLarge = errors.New("kinesis sink: record larger than 1 MB")

// API is the Kinesis call the sink makes; *kinesis.Client implements it.
type API interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

var _ API = (*kinesis.Client)(nil)

// Config configures a Sink.
type Config struct {
	// API makes the calls; required.
	API API
	// Stream is the stream name; required unless StreamARN is set.
	Stream string
	// StreamARN, if set, is sent instead of the name.
	StreamARN string
	// MaxAttempts bounds how often one entry is sent before its message
	// fails; default 10.
	MaxAttempts int
	// Backoff is the first wait before a retry; it doubles, with jitter, up
	// to 5s. Default 100ms.
	Backoff time.Duration
}

// Sink writes messages to one Kinesis stream. Safe for concurrent use.
type Sink struct {
	cfg Config

	mu     sync.Mutex
	closed bool
	writes sync.WaitGroup
}

var _ sinks.Sink = (*Sink)(nil)

// New validates cfg and returns a Sink. It does not connect.
func New(cfg Config) (*Sink, error) {
	var errs []error
	if cfg.API == nil {
		errs = append(errs, errors.New("kinesis sink: API: required"))
	}
	if cfg.Stream == "" && cfg.StreamARN == "" {
		errs = append(errs, errors.New("kinesis sink: stream: required"))
	}
	if cfg.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("kinesis sink: MaxAttempts: %d is negative", cfg.MaxAttempts))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	return &Sink{cfg: cfg}, nil
}

// entry is one message on its way.
type entry struct {
	idx  int // in the Write call
	key  string
	data []byte
}

// Write writes msgs and returns nil when every one was written, or a
// *sinks.WriteError naming the ones that were not.
func (s *Sink) Write(ctx context.Context, msgs []record.Message) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.writes.Add(1)
	s.mu.Unlock()
	defer s.writes.Done()
	if len(msgs) == 0 {
		return nil
	}
	errs := make([]error, len(msgs))
	failed := false
	// Rounds: the n-th message of each key goes in round n.
	var rounds [][]entry
	nth := map[string]int{}
	blocked := map[string]error{} // keys with a message that failed
	for i, m := range msgs {
		k := partitionKey(m.Key)
		if err, ok := blocked[k]; ok {
			errs[i] = fmt.Errorf("not sent: an earlier message of its key is too large: %w", err)
			continue
		}
		if len(k)+len(m.Value) > maxRecordBytes {
			errs[i] = fmt.Errorf("message %d: %d bytes: %w", i, len(k)+len(m.Value), ErrTooLarge)
			blocked[k] = errs[i]
			failed = true
			continue
		}
		r := nth[k]
		nth[k]++
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], entry{idx: i, key: k, data: m.Value})
	}
	for ri, round := range rounds {
		todo := round[:0:0]
		for _, e := range round {
			if err, ok := blocked[e.key]; ok {
				errs[e.idx] = fmt.Errorf("not sent: an earlier message of its key failed: %w", err)
				continue
			}
			todo = append(todo, e)
		}
		for _, req := range split(todo) {
			for _, f := range s.put(ctx, req) {
				errs[f.e.idx] = fmt.Errorf("round %d: %w", ri+1, f.err)
				blocked[f.e.key] = f.err
				failed = true
			}
		}
	}
	if failed {
		return &sinks.WriteError{Errs: errs}
	}
	return nil
}

// split cuts entries into requests of at most 500 entries and 5 MB.
func split(es []entry) [][]entry {
	var out [][]entry
	var cur []entry
	bytes := 0
	for _, e := range es {
		n := len(e.key) + len(e.data)
		if len(cur) == maxEntries || len(cur) > 0 && bytes+n > maxRequestBytes {
			out = append(out, cur)
			cur, bytes = nil, 0
		}
		cur = append(cur, e)
		bytes += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

type failure struct {
	e   entry
	err error
}

// put sends one request's entries, retrying the ones that failed (and the
// whole request on a throttling or transient error) up to MaxAttempts, and
// returns the entries that could not be written.
func (s *Sink) put(ctx context.Context, es []entry) []failure {
	var last map[int]error // entry index in es → last error
	for attempt := 1; ; attempt++ {
		in := &kinesis.PutRecordsInput{Records: make([]types.PutRecordsRequestEntry, len(es))}
		if s.cfg.StreamARN != "" {
			in.StreamARN = aws.String(s.cfg.StreamARN)
		} else {
			in.StreamName = aws.String(s.cfg.Stream)
		}
		for i, e := range es {
			in.Records[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(e.key), Data: e.data}
		}
		out, err := s.cfg.API.PutRecords(ctx, in)
		var retry []entry
		last = map[int]error{}
		switch {
		case err != nil:
			if !retryable(err) || ctx.Err() != nil {
				return failAll(es, fmt.Errorf("kinesis sink: PutRecords to %s: %w", s.name(), err))
			}
			retry = es
			for i := range es {
				last[i] = err
			}
		case len(out.Records) != len(es):
			return failAll(es, fmt.Errorf("kinesis sink: PutRecords to %s answered %d entries for %d", s.name(), len(out.Records), len(es)))
		default:
			for i, r := range out.Records {
				if r.ErrorCode == nil {
					continue
				}
				last[len(retry)] = fmt.Errorf("kinesis sink: %s: %s", aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
				retry = append(retry, es[i])
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt >= s.cfg.MaxAttempts || !sleep(ctx, backoff(attempt, s.cfg.Backoff)) {
			fs := make([]failure, len(retry))
			for i, e := range retry {
				err := last[i]
				if ctx.Err() != nil {
					err = errors.Join(err, ctx.Err())
				}
				fs[i] = failure{e: e, err: fmt.Errorf("after %d attempts: %w", attempt, err)}
			}
			return fs
		}
		es = retry
	}
}

func failAll(es []entry, err error) []failure {
	fs := make([]failure, len(es))
	for i, e := range es {
		fs[i] = failure{e: e, err: err}
	}
	return fs
}

func (s *Sink) name() string {
	if s.cfg.StreamARN != "" {
		return s.cfg.StreamARN
	}
	return s.cfg.Stream
}

// retryable reports a whole-request error worth repeating: throttling, a
// server-side fault, or the network.
func retryable(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
			"KMSThrottlingException", "InternalFailure", "ServiceUnavailable":
			return true
		}
		return ae.ErrorFault() == smithy.FaultServer
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func backoff(n int, base time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	return d/2 + mrand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// partitionKey is the message key as Kinesis takes it (see the package
// doc).
func partitionKey(k []byte) string {
	if len(k) == 0 {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	if utf8.Valid(k) && utf8.RuneCount(k) <= maxKeyChars {
		return string(k)
	}
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:])
}

// Close waits for the writes in flight and refuses new ones. It does not
// close the API client. Safe to call twice.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.writes.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kinesis sink: close: %w", ctx.Err())
	}
}
