// Package sinks defines where a pipeline's outputs are written. A sink writes
// a slice of messages and reports which of them failed; it flushes on Close.
package sinks

import (
	"context"
	"errors"
	"fmt"

	"github.com/weirhq/weir/record"
)

// Sink writes messages to a destination.
type Sink interface {
	// Write writes msgs and returns once each is acknowledged by the
	// destination or failed. A nil error means every message was written. A
	// *WriteError says which ones failed; any other error means all failed.
	// Write is safe for concurrent use; messages of one call that share a key
	// are written in order.
	Write(ctx context.Context, msgs []record.Message) error
	// Close flushes and releases the sink. It is safe to call twice.
	Close(ctx context.Context) error
}

// WriteError reports per-message failures of one Write call.
type WriteError struct {
	// Errs has one entry per message given to Write; nil where it was written.
	Errs []error
}

func (e *WriteError) Error() string {
	n := 0
	var first error
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	return fmt.Sprintf("%d of %d messages not written: %v", n, len(e.Errs), first)
}

// Unwrap returns the per-message errors, so errors.Is sees through them.
func (e *WriteError) Unwrap() []error { return e.Errs }

// Failed returns, for a Write error, which messages were not written: every
// one for an error that is not a *WriteError.
func Failed(err error, n int) []bool {
	failed := make([]bool, n)
	if err == nil {
		return failed
	}
	var we *WriteError
	if errors.As(err, &we) && len(we.Errs) == n {
		for i, e := range we.Errs {
			failed[i] = e != nil
		}
		return failed
	}
	for i := range failed {
		failed[i] = true
	}
	return failed
}
