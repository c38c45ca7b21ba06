// Package sdk turns a Go function into a weir handler plugin.
//
// A handler is a program whose main calls Serve. The host (weir run) starts
// it as a separate process, sends it batches of records of one partition, in
// order, and writes what it returns to the pipeline's sinks; records it
// marks as failed are retried or dead-lettered. The simplest handlers work
// one record at a time through PerRecord:
//
//	package main
//
//	import (
//		"bytes"
//		"context"
//
//		"github.com/weirhq/weir/plugins/sdk"
//		"github.com/weirhq/weir/record"
//	)
//
//	func main() {
//		sdk.Serve(sdk.Options{Name: "upper", Version: "1.0.0"}, sdk.PerRecord(upper))
//	}
//
//	// upper emits each record's value in upper case to the sink "out".
//	func upper(ctx context.Context, r record.Record) ([]sdk.Out, error) {
//		if len(r.Value) == 0 {
//			return nil, sdk.Invalidf("empty value") // dead-lettered, never retried
//		}
//		return []sdk.Out{{Sink: "out", Key: r.Key, Value: bytes.ToUpper(r.Value), Headers: r.Headers}}, nil
//	}
//
// Build it (go build -o bin/upper .) and point a pipeline at it with
// handler: { plugin: ./bin/upper }. A handler that needs the whole batch
// (to call a bulk API once, say) is a Func instead, adding to a Result with
// Output and Fail.
//
// Whatever the handler writes to os.Stderr or os.Stdout is logged by the
// host, line by line, with the plugin's name. Stdout must not be written
// before Serve is called: go-plugin's handshake uses it.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// Options describe a handler to the host (plugins.Info).
type Options struct {
	// Name of the handler, e.g. "iot". Required.
	Name string
	// Version of the handler, e.g. "1.2.0"; it is recorded in DLQ envelopes.
	Version string
	// BorrowRecords promises that the handler keeps nothing of a batch
	// once its Func (or RecordFunc) has returned: not the batch, its
	// records, nor their keys, values, headers or header values. Copy what
	// you keep (bytes.Clone). Outputs may still refer to the records: they
	// are encoded before the Func's return is answered. In exchange the
	// records come without a copy, straight from the memory the host wrote
	// them to, decoded into storage the next batch reuses: less CPU and no
	// garbage per batch. Bytes kept past the return change under the
	// handler. Off by default.
	BorrowRecords bool
}

// Func handles one batch: b.Records are the records of one partition, in
// order. It reports outputs and per-record failures on res. Returning an
// error fails the whole batch (res is then discarded): use it for failures
// that concern every record, like a database being down (wrap it with
// Retryable). ctx is done when the host stops waiting (b.Deadline).
type Func func(ctx context.Context, b *plugins.Batch, res *Result) error

// Result collects a handler's answer to one batch. It is not safe for
// concurrent use.
type Result struct {
	plugins.Result
}

// Output emits a message to sink, attributed to record i of the batch. The
// slices are kept, not copied; pass the input record's headers as
// r.Headers... to forward them.
func (r *Result) Output(i int, sink string, key, value []byte, headers ...record.Header) {
	r.Outputs = append(r.Outputs, plugins.Output{
		Index:   i,
		Sink:    sink,
		Message: record.Message{Key: key, Value: value, Headers: headers},
	})
}

// Fail marks record i of the batch as failed. Non-retryable failures go to
// the dead-letter queue at once; retryable ones are retried with backoff.
func (r *Result) Fail(i int, class plugins.ErrorClass, retryable bool, msg string) {
	r.Failures = append(r.Failures, plugins.Failure{Index: i, Message: msg, Retryable: retryable, Class: class})
}

// FailErr marks record i as failed by err, taking class and retryability
// from it (plugins.ClassOf, plugins.IsRetryable): an error made with
// Invalid is ClassInvalidInput and not retried, one made with Retryable is
// ClassTransient and retried, any other error is unclassified and retried.
func (r *Result) FailErr(i int, err error) {
	r.Fail(i, plugins.ClassOf(err), plugins.IsRetryable(err), err.Error())
}

// New returns fn as a plugins.Handler. Serve uses it; the weir binary uses
// it to build in handlers (see plugins/builtin).
func New(opts Options, fn Func) plugins.Handler {
	return &handler{info: plugins.Info{Name: opts.Name, Version: opts.Version, ProtocolVersion: plugins.ProtocolVersion},
		fn: fn, borrow: opts.BorrowRecords}
}

type handler struct {
	info   plugins.Info
	fn     Func
	borrow bool
}

// BorrowsRecords implements plugins.RecordBorrower.
func (h *handler) BorrowsRecords() bool { return h.borrow }

func (h *handler) Describe(context.Context) (plugins.Info, error) { return h.info, nil }

func (h *handler) Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
	res := &Result{}
	if err := h.fn(ctx, b, res); err != nil {
		return nil, err
	}
	return &res.Result, nil
}

// Serve serves fn as a weir handler plugin and returns when the host closes
// it; call it from main and return. Run by hand rather than by weir, the
// program prints that it is a plugin and exits with status 1. Serve panics if
// opts.Name is empty.
func Serve(opts Options, fn Func) {
	if opts.Name == "" {
		panic("sdk.Serve: Options.Name is required")
	}
	plugins.Serve(New(opts, fn))
}

// Out is one output of a RecordFunc: a message for the named sink.
type Out struct {
	// Sink names one of the pipeline's sinks.
	Sink    string
	Key     []byte
	Value   []byte
	Headers []record.Header
	// Timestamp of the message; zero lets the sink choose.
	Timestamp time.Time
}

// RecordFunc handles one record and returns its outputs (none is fine: the
// record is then consumed without output). A returned error fails this
// record only; its class and retryability come from the error (see
// Result.FailErr), and outputs returned with an error are dropped.
type RecordFunc func(ctx context.Context, r record.Record) ([]Out, error)

// PerRecord returns a Func that calls fn for each record of the batch in
// order. A record whose fn returns an error, or panics, fails alone: a panic
// becomes a non-retryable ClassHandler failure of that record, with the
// stack written to stderr (which the host logs), and the batch goes on. If
// ctx ends, the batch fails as a whole with ctx's error.
func PerRecord(fn RecordFunc) Func {
	return func(ctx context.Context, b *plugins.Batch, res *Result) error {
		for i := range b.Records {
			if err := ctx.Err(); err != nil {
				return err
			}
			outs, err := callRecord(ctx, fn, &b.Records[i])
			if err != nil {
				if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
					return err
				}
				res.FailErr(i, err)
				continue
			}
			if need := len(res.Outputs) + len(outs); need > cap(res.Outputs) && len(res.Outputs) >= i {
				// Every record so far had an output: room for as many
				// per record to the end of the batch, at once rather
				// than by doubling (which clears and copies each array).
				res.Outputs = slices.Grow(res.Outputs, len(outs)*(len(b.Records)-i))
			}
			for _, o := range outs {
				res.Outputs = append(res.Outputs, plugins.Output{
					Index:   i,
					Sink:    o.Sink,
					Message: record.Message{Key: o.Key, Value: o.Value, Headers: o.Headers, Timestamp: o.Timestamp},
				})
			}
		}
		return nil
	}
}

// callRecord calls fn, turning a panic into a ClassHandler error.
func callRecord(ctx context.Context, fn RecordFunc, r *record.Record) (outs []Out, err error) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "panic handling record at %s %s: %v\n%s", r.Partition, r.Position, v, debug.Stack())
			outs, err = nil, &plugins.Error{Class: plugins.ClassHandler, Err: fmt.Errorf("panic: %v", v)}
		}
	}()
	return fn(ctx, *r)
}

// Invalid marks err as the record's own fault (malformed input): the record
// is dead-lettered at once with class invalid_input and never retried.
// Invalid(nil) is nil.
func Invalid(err error) error {
	return plugins.NewError(plugins.ClassInvalidInput, false, err)
}

// Invalidf is Invalid(fmt.Errorf(format, args...)).
func Invalidf(format string, args ...any) error {
	return Invalid(fmt.Errorf(format, args...))
}

// Retryable marks err as transient (a dependency that may recover): the
// record, or the batch if the Func returned it, is retried with backoff,
// class transient. Retryable(nil) is nil.
func Retryable(err error) error {
	return plugins.NewError(plugins.ClassTransient, true, err)
}
