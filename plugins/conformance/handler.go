// Package conformance is the handler protocol's conformance suite: one set
// of tests that every handler implementation (the Go SDK, the Python and
// TypeScript SDKs, any other) must pass through the real host-side Pool.
//
// Each SDK ships a conformance handler with the agreed behaviour: it echoes
// each record (key, value, headers) to the sink "out", except a record whose
// value is
//
//	FAIL:<class>:<retryable>       fails that record with that class and flag
//	BATCHFAIL:<class>:<retryable>  fails the whole batch so (a BatchError)
//	CRASH                          exits the process (status 3)
//	SLEEP:<ms>                     sleeps that long, then echoes
//
// where <class> is an error class name (invalid_input, transient, handler)
// and <retryable> is true or false. It describes itself as name
// "conformance", version "1.0.0". With WEIR_CONFORMANCE_NOOP=1 in its
// environment it emits nothing (the no-op handler of the benchmark).
//
// Run runs the suite against one such handler, started as the given
// plugins.PoolConfig says; Benchmark measures records/s of its no-op mode.
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/sdk"
)

// The Describe answer every conformance handler gives.
const (
	HandlerName    = "conformance"
	HandlerVersion = "1.0.0"
)

// EnvNoop makes a conformance handler emit nothing when set to "1".
const EnvNoop = "WEIR_CONFORMANCE_NOOP"

// Sink is the sink a conformance handler echoes to.
const Sink = "out"

// GoHandler is the Go SDK's conformance handler. It reads EnvNoop when
// called, which is in the plugin process. Serve it from a test binary's
// TestMain with plugins.ServeBuiltinIfRequested(conformance.Builtins()).
func GoHandler() plugins.Handler {
	opts := sdk.Options{Name: HandlerName, Version: HandlerVersion}
	if os.Getenv(EnvNoop) == "1" {
		return sdk.New(opts, func(context.Context, *plugins.Batch, *sdk.Result) error { return nil })
	}
	return sdk.New(opts, handle)
}

// Builtins maps BuiltinName to GoHandler, for ServeBuiltinIfRequested.
func Builtins() map[string]plugins.Handler {
	return map[string]plugins.Handler{BuiltinName: GoHandler()}
}

// BuiltinName is the builtin name GoTarget starts.
const BuiltinName = "conformance"

var classByName = map[string]plugins.ErrorClass{}

func init() {
	for c := plugins.ClassUnspecified; c <= plugins.ClassBadReply; c++ {
		classByName[c.String()] = c
	}
}

// parseFail parses "<class>:<retryable>".
func parseFail(s string) (plugins.ErrorClass, bool, error) {
	name, flag, ok := strings.Cut(s, ":")
	class, known := classByName[name]
	if !ok || !known {
		return 0, false, fmt.Errorf("bad failure spec %q", s)
	}
	return class, flag == "true", nil
}

func handle(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
	for i := range b.Records {
		r := &b.Records[i]
		v := string(r.Value)
		switch {
		case v == "CRASH":
			os.Stderr.WriteString("conformance: CRASH record; exiting\n")
			os.Exit(3)
		case strings.HasPrefix(v, "SLEEP:"):
			ms, _ := strconv.Atoi(v[len("SLEEP:"):])
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case strings.HasPrefix(v, "FAIL:"):
			class, retryable, err := parseFail(v[len("FAIL:"):])
			if err != nil {
				return err
			}
			res.Fail(i, class, retryable, v)
			continue
		case strings.HasPrefix(v, "BATCHFAIL:"):
			class, retryable, err := parseFail(v[len("BATCHFAIL:"):])
			if err != nil {
				return err
			}
			return plugins.NewError(class, retryable, fmt.Errorf("%s", bytes.Clone(r.Value)))
		}
		res.Output(i, Sink, r.Key, r.Value, r.Headers...)
	}
	return nil
}
