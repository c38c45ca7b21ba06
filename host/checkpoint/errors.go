package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/record"
)

var (
	// ErrFenced means a write carried a generation older than the one stored
	// for its partition: another owner has taken the partition, and the
	// caller must drop its lane without committing. The error is a
	// *FencedError.
	ErrFenced = errors.New("checkpoint: fenced")

	// ErrUnavailable means Redis could not be reached or could not serve
	// the call (connection refused or reset, timeout, server loading, a
	// replica that became read-only after a failover, authentication
	// refused). The call may or may not have taken effect; every write of
	// this package can be repeated. The host's breaker counts these.
	ErrUnavailable = errors.New("checkpoint: redis unavailable")

	// ErrClosed is returned by calls on a Store after Close.
	ErrClosed = errors.New("checkpoint: store closed")

	// ErrNoKey means a record lacks the field its pipeline's idempotency
	// key template names; the error is a *KeyError. The record can never
	// be handled with a mark: a non-retryable failure.
	ErrNoKey = errors.New("checkpoint: record has no idempotency key")
)

// IsUnavailable reports whether err says that Redis was unreachable or
// could not serve the call (errors.Is(err, ErrUnavailable)).
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// FencedError is a write refused because the partition's stored generation
// is newer than the writer's. errors.Is(err, ErrFenced) is true.
type FencedError struct {
	Partition record.Partition
	// Generation is the refused writer's.
	Generation int64
	// Current is the partition's stored generation, its current owner's.
	Current int64
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("fenced: generation %d is older than generation %d of the partition's current owner",
		e.Generation, e.Current)
}

// Is makes errors.Is(err, ErrFenced) true.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// KeyError is a record whose idempotency key cannot be made: the field the
// template names is missing or unusable. errors.Is(err, ErrNoKey) is true.
type KeyError struct {
	// Template is the template's text, e.g. "header:message-id".
	Template string
	// Reason says what is wrong with the record.
	Reason string
}

func (e *KeyError) Error() string {
	return "idempotency key " + strconv.Quote(e.Template) + ": " + e.Reason
}

// Is makes errors.Is(err, ErrNoKey) true.
func (e *KeyError) Is(target error) bool { return target == ErrNoKey }

// unavailableError wraps a Redis or network error that means Redis is
// unavailable, keeping the cause for errors.Is and errors.As.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return "redis unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// fencedPrefix starts the error reply of a script that refused a write.
const fencedPrefix = "FENCED "

// classify turns what go-redis returned into this package's taxonomy: a
// *FencedError, an unavailable error, ErrClosed, or err as it is.
func classify(err error, part record.Partition, gen int64) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := strings.TrimPrefix(rerr.Error(), "ERR ")
		if rest, ok := strings.CutPrefix(msg, fencedPrefix); ok {
			cur, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return &FencedError{Partition: part, Generation: gen, Current: cur}
		}
		for _, p := range unavailableReplies {
			if strings.HasPrefix(msg, p) {
				return &unavailableError{err}
			}
		}
		return err
	}
	switch {
	case errors.Is(err, redis.ErrClosed):
		return ErrClosed
	case errors.Is(err, context.Canceled):
		return err // the caller gave up; says nothing about Redis
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return &unavailableError{err}
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return &unavailableError{err}
	}
	return err
}

// unavailableReplies are the error replies of a server that cannot serve
// now: it is starting, a replica after a failover, without a master, out of
// memory, busy with a script, or refusing our credentials.
var unavailableReplies = []string{
	"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
	"BUSY", "OOM", "max number of clients", "NOAUTH", "WRONGPASS", "NOPERM",
}
