// Package builtin holds the handlers compiled into the weir binary, served
// by re-executing it as a plugin process (see plugins.ServeBuiltinIfRequested
// and PoolConfig.Builtin). A pipeline selects one with
// handler: { plugin: "builtin:NAME" }.
package builtin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/sdk"
	"github.com/weirhq/weir/record"
)

// Version is the version the builtin handlers report (except iot, which
// reports iot.Version).
const Version = "1.0.0"

// Environment variables read by builtin handlers (set them in the pipeline's
// handler.env).
const (
	// EnvEchoSink names the sink echo and echo-crash write to. Default "out".
	EnvEchoSink = "WEIR_ECHO_SINK"
	// EnvCrashOn is the byte string that makes echo-crash exit.
	EnvCrashOn = "WEIR_CRASH_ON"
	// EnvFailOn is a byte string: echo fails a record whose value contains
	// it as bad input (not retryable), a testing aid for the DLQ path.
	EnvFailOn = "WEIR_FAIL_ON"
	// EnvRetryWhile is a file path: while the file exists, echo fails every
	// record retryably (class transient), a testing aid that simulates a
	// downstream outage.
	EnvRetryWhile = "WEIR_RETRY_WHILE"
	// EnvSideEffects is a file path: echo appends a line "VALUE PID" to it
	// for every record it handles successfully, one write per batch, as the
	// record of a side effect that survives a crash (a testing aid for the
	// crash tests: which records had their side effect, how often, by which
	// process).
	EnvSideEffects = "WEIR_SIDEFX_FILE"
	// EnvRetryOn is a byte string: echo fails a record whose value
	// contains it retryably (class transient) while the other records of
	// its batch succeed, a testing aid for parked keys.
	EnvRetryOn = "WEIR_RETRY_ON"
	// EnvSleep is a Go duration echo and noop sleep at the start of every
	// batch, a testing aid for a slow handler (noop's: backpressure and
	// memory measurements).
	EnvSleep = "WEIR_SLEEP"
	// EnvStderr, if not empty, makes echo write a line to its stderr for
	// every batch, a testing aid for plugin logs.
	EnvStderr = "WEIR_STDERR"
	// EnvLeakOn is the byte string that makes echo-leak allocate memory
	// without bound, a testing aid for handler.memory_limit.
	EnvLeakOn = "WEIR_LEAK_ON"
	// EnvEchoVersion, if set, is the version echo, echo-crash and
	// echo-leak report instead of Version: a testing aid that makes one
	// binary serve as several versions of a handler (upgrade tests).
	EnvEchoVersion = "WEIR_ECHO_VERSION"
)

// LeakCap is how much echo-leak allocates before it gives up (and fails
// the batch with an error saying no memory limit stopped it), so a test of
// a limit that does not work fails instead of exhausting the machine.
const LeakCap = 1 << 30

// DefaultEchoSink is the sink echo writes to unless WEIR_ECHO_SINK is set.
const DefaultEchoSink = "out"

// Handlers returns the builtin handlers by name. The environment variables
// above are read when it is called, which is in the plugin process.
//
//   - noop: consumes every record, no outputs (for benchmarks: the cost of
//     weir itself).
//   - echo: one output per record to the sink WEIR_ECHO_SINK (default
//     "out") with the record's key, value and headers.
//   - echo-crash: a testing aid: echo, but the process exits with status 3
//     on the first record whose value contains WEIR_CRASH_ON (never if it
//     is empty), to exercise crash handling end to end.
//   - echo-leak: a testing aid: echo, but on a record whose value contains
//     WEIR_LEAK_ON (never if it is empty) it allocates and touches memory
//     without bound, as a leaking handler does, until the process dies (a
//     memory limit) or LeakCap is reached (then the batch fails).
//   - iot: the IoT example handler (package examples/iot).
//
// echo and echo-crash also honour WEIR_FAIL_ON, WEIR_RETRY_WHILE,
// WEIR_RETRY_ON, WEIR_SLEEP, WEIR_STDERR and WEIR_SIDEFX_FILE (testing aids, see the
// constants).
func Handlers() map[string]plugins.Handler {
	sink := os.Getenv(EnvEchoSink)
	if sink == "" {
		sink = DefaultEchoSink
	}
	crashOn := []byte(os.Getenv(EnvCrashOn))
	version := os.Getenv(EnvEchoVersion)
	if version == "" {
		version = Version
	}
	aids := testAids{failOn: []byte(os.Getenv(EnvFailOn)), retryWhile: os.Getenv(EnvRetryWhile), sideEffects: os.Getenv(EnvSideEffects),
		retryOn: []byte(os.Getenv(EnvRetryOn)), stderr: os.Getenv(EnvStderr) != ""}
	if d, err := time.ParseDuration(os.Getenv(EnvSleep)); err == nil {
		aids.sleep = d
	}
	return map[string]plugins.Handler{
		// noop and echo keep nothing of a batch (echo's outputs refer to
		// its records, and are encoded before it returns).
		"noop":       sdk.New(sdk.Options{Name: "noop", Version: Version, BorrowRecords: true}, delayed(aids.sleep, Noop)),
		"echo":       sdk.New(sdk.Options{Name: "echo", Version: version, BorrowRecords: true}, aids.wrap(Echo(sink, nil))),
		"echo-crash": sdk.New(sdk.Options{Name: "echo-crash", Version: version}, aids.wrap(Echo(sink, crashOn))),
		"echo-leak":  sdk.New(sdk.Options{Name: "echo-leak", Version: version}, aids.wrap(leak([]byte(os.Getenv(EnvLeakOn)), Echo(sink, nil)))),
		"iot":        iot.Handler(),
	}
}

// delayed makes fn sleep d (or until its call is canceled) before it runs.
func delayed(d time.Duration, fn sdk.Func) sdk.Func {
	if d <= 0 {
		return fn
	}
	return func(ctx context.Context, b *plugins.Batch, res *sdk.Result) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		return fn(ctx, b, res)
	}
}

// Noop is a handler that succeeds on every record without output.
func Noop(context.Context, *plugins.Batch, *sdk.Result) error { return nil }

// Echo returns a handler that emits each record unchanged to sink. If
// crashOn is not empty, the process exits with status 3 when a record's
// value contains it (a testing aid).
func Echo(sink string, crashOn []byte) sdk.Func {
	return func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		res.Outputs = slices.Grow(res.Outputs, len(b.Records)) // one output per record
		for i := range b.Records {
			r := &b.Records[i]
			if len(crashOn) > 0 && bytes.Contains(r.Value, crashOn) {
				os.Stderr.WriteString("echo-crash: record value contains WEIR_CRASH_ON; exiting\n")
				os.Exit(3)
			}
			res.Outputs = append(res.Outputs, plugins.Output{
				Index:   i,
				Sink:    sink,
				Message: record.Message{Key: r.Key, Value: r.Value, Headers: r.Headers},
			})
		}
		return nil
	}
}

// leak returns next, preceded by an unbounded allocation when a record's
// value contains on.
func leak(on []byte, next sdk.Func) sdk.Func {
	return func(ctx context.Context, b *plugins.Batch, res *sdk.Result) error {
		for i := range b.Records {
			if len(on) == 0 || !bytes.Contains(b.Records[i].Value, on) {
				continue
			}
			os.Stderr.WriteString("echo-leak: record value contains WEIR_LEAK_ON; allocating without bound\n")
			const chunk = 4 << 20
			for n := 0; n < LeakCap/chunk; n++ {
				c := make([]byte, chunk)
				for j := 0; j < chunk; j += 4096 {
					c[j] = 1 // touch every page: resident, not just mapped
				}
				leaked = append(leaked, c)
			}
			return fmt.Errorf("echo-leak: allocated %d MiB and no memory limit stopped it", LeakCap>>20)
		}
		return next(ctx, b, res)
	}
}

// leaked holds echo-leak's allocations for the life of the process.
var leaked [][]byte

// testAids are echo's testing switches (WEIR_FAIL_ON, WEIR_RETRY_WHILE,
// WEIR_SIDEFX_FILE).
type testAids struct {
	failOn      []byte
	retryWhile  string
	sideEffects string
	retryOn     []byte
	sleep       time.Duration
	stderr      bool
}

// wrap makes fn fail records as the switches say, and hand the others on.
func (a testAids) wrap(fn sdk.Func) sdk.Func {
	if len(a.failOn) == 0 && a.retryWhile == "" && a.sideEffects == "" && len(a.retryOn) == 0 && a.sleep == 0 && !a.stderr {
		return fn
	}
	return func(ctx context.Context, b *plugins.Batch, res *sdk.Result) error {
		if a.stderr {
			fmt.Fprintf(os.Stderr, "echo: handling %d records of %s/%s\n", len(b.Records), b.Stream, b.Partition)
		}
		if a.sleep > 0 {
			select {
			case <-time.After(a.sleep):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if a.retryWhile != "" {
			if _, err := os.Stat(a.retryWhile); err == nil {
				for i := range b.Records {
					res.Fail(i, plugins.ClassTransient, true, "downstream unavailable ("+a.retryWhile+" exists)")
				}
				return nil
			}
		}
		if err := fn(ctx, b, res); err != nil {
			return err
		}
		if len(a.failOn) == 0 && len(a.retryOn) == 0 {
			return a.recordSideEffects(b, nil)
		}
		bad := map[int]bool{}
		for i := range b.Records {
			switch v := b.Records[i].Value; {
			case len(a.failOn) > 0 && bytes.Contains(v, a.failOn):
				bad[i] = true
				res.Fail(i, plugins.ClassInvalidInput, false, "value contains "+strconv.Quote(string(a.failOn)))
			case len(a.retryOn) > 0 && bytes.Contains(v, a.retryOn):
				bad[i] = true
				res.Fail(i, plugins.ClassTransient, true, "value contains "+strconv.Quote(string(a.retryOn))+" (retry)")
			}
		}
		kept := res.Outputs[:0]
		for _, o := range res.Outputs {
			if !bad[o.Index] {
				kept = append(kept, o)
			}
		}
		res.Outputs = kept
		return a.recordSideEffects(b, bad)
	}
}

// recordSideEffects appends "VALUE PID" for each record of b not in bad to
// the side-effect file, in one write.
func (a testAids) recordSideEffects(b *plugins.Batch, bad map[int]bool) error {
	if a.sideEffects == "" {
		return nil
	}
	pid := strconv.Itoa(os.Getpid())
	var buf []byte
	for i := range b.Records {
		if !bad[i] {
			buf = append(buf, b.Records[i].Value...)
			buf = append(buf, ' ')
			buf = append(buf, pid...)
			buf = append(buf, '\n')
		}
	}
	f, err := os.OpenFile(a.sideEffects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return plugins.NewError(plugins.ClassTransient, true, err)
	}
	defer f.Close()
	if _, err := f.Write(buf); err != nil {
		return plugins.NewError(plugins.ClassTransient, true, err)
	}
	return nil
}
