package sdk_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/sdk"
	"github.com/weirhq/weir/record"
)

func batch(values ...string) *plugins.Batch {
	b := &plugins.Batch{Pipeline: "p", Stream: "s", Partition: "0", Attempt: 1}
	for i, v := range values {
		b.Records = append(b.Records, record.Record{
			Key:      []byte{byte('a' + i)},
			Value:    []byte(v),
			Headers:  []record.Header{{Key: "h", Value: []byte(v)}},
			Position: record.Position{Offset: int64(100 + i)},
		})
	}
	return b
}

// perRecord maps a value to its fate: "panic", "invalid", "retry", "plain",
// "none" (no outputs), "two" (two outputs), anything else one output.
func perRecord(_ context.Context, r record.Record) ([]sdk.Out, error) {
	switch v := string(r.Value); v {
	case "panic":
		var m map[string]int
		m["boom"]++ // a nil-map panic, like a real bug
		return nil, nil
	case "invalid":
		return nil, sdk.Invalidf("value %q is not a reading", v)
	case "retry":
		return []sdk.Out{{Sink: "dropped"}}, sdk.Retryable(errors.New("cache unavailable"))
	case "plain":
		return nil, errors.New("something failed")
	case "none":
		return nil, nil
	case "two":
		return []sdk.Out{{Sink: "a", Value: r.Value}, {Sink: "b", Value: r.Value}}, nil
	default:
		return []sdk.Out{{Sink: "out", Key: r.Key, Value: r.Value, Headers: r.Headers}}, nil
	}
}

func TestPerRecord(t *testing.T) {
	h := sdk.New(sdk.Options{Name: "t", Version: "1"}, sdk.PerRecord(perRecord))
	res, err := h.Handle(context.Background(), batch("ok", "panic", "invalid", "retry", "plain", "none", "two", "last"))
	if err != nil {
		t.Fatalf("a record's failure failed the batch: %v", err)
	}
	type out struct {
		index int
		sink  string
	}
	var outs []out
	for _, o := range res.Outputs {
		outs = append(outs, out{o.Index, o.Sink})
	}
	wantOuts := []out{{0, "out"}, {6, "a"}, {6, "b"}, {7, "out"}}
	if len(outs) != len(wantOuts) {
		t.Fatalf("outputs %v, want %v", outs, wantOuts)
	}
	for i := range wantOuts {
		if outs[i] != wantOuts[i] {
			t.Errorf("output %d = %v, want %v", i, outs[i], wantOuts[i])
		}
	}
	if o := res.Outputs[0]; string(o.Key) != "a" || string(o.Value) != "ok" || len(o.Headers) != 1 {
		t.Errorf("first output %+v", o)
	}
	want := []struct {
		index     int
		class     plugins.ErrorClass
		retryable bool
		msg       string
	}{
		// The panic fails its record only, as a handler bug.
		{1, plugins.ClassHandler, false, "panic: assignment to entry in nil map"},
		{2, plugins.ClassInvalidInput, false, `value "invalid" is not a reading`},
		{3, plugins.ClassTransient, true, "cache unavailable"},
		{4, plugins.ClassUnspecified, true, "something failed"},
	}
	if len(res.Failures) != len(want) {
		t.Fatalf("failures %+v, want %d", res.Failures, len(want))
	}
	for i, w := range want {
		f := res.Failures[i]
		if f.Index != w.index || f.Class != w.class || f.Retryable != w.retryable || !strings.Contains(f.Message, w.msg) {
			t.Errorf("failure %d = %+v, want index %d class %v retryable %v message ~%q", i, f, w.index, w.class, w.retryable, w.msg)
		}
	}
}

// A PerRecord handler with an output for every record gets its outputs'
// room at once: the result's outputs are allocated once, not regrown.
func TestPerRecordAllocatesOutputsOnce(t *testing.T) {
	values := make([]string, 1000)
	for i := range values {
		values[i] = "v"
	}
	b := batch(values...)
	outs := []sdk.Out{{Sink: "out"}}
	h := sdk.New(sdk.Options{Name: "t", Version: "1"}, sdk.PerRecord(func(context.Context, record.Record) ([]sdk.Out, error) {
		return outs, nil
	}))
	var res *plugins.Result
	allocs := testing.AllocsPerRun(10, func() {
		var err error
		if res, err = h.Handle(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	})
	if len(res.Outputs) != len(values) {
		t.Fatalf("%d outputs, want %d", len(res.Outputs), len(values))
	}
	// The result and its outputs, and one more under the race detector;
	// growing the outputs by doubling takes 13.
	if allocs > 3 {
		t.Errorf("%v allocations per batch of %d records with an output each, want 2", allocs, len(values))
	}
}

func TestPerRecordStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	fn := sdk.PerRecord(func(ctx context.Context, r record.Record) ([]sdk.Out, error) {
		calls++
		if calls == 2 {
			cancel()
			return nil, ctx.Err()
		}
		return nil, nil
	})
	h := sdk.New(sdk.Options{Name: "t"}, fn)
	_, err := h.Handle(ctx, batch("a", "b", "c"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the batch failed with Canceled", err)
	}
	if calls != 2 {
		t.Errorf("%d calls, want 2", calls)
	}
}

func TestBatchFunc(t *testing.T) {
	h := sdk.New(sdk.Options{Name: "bulk", Version: "2.0.0"}, func(_ context.Context, b *plugins.Batch, res *sdk.Result) error {
		for i, r := range b.Records {
			if string(r.Value) == "bad" {
				res.Fail(i, plugins.ClassInvalidInput, false, "bad value")
				continue
			}
			res.Output(i, "out", r.Key, r.Value, r.Headers...)
		}
		res.FailErr(0, sdk.Retryable(errors.New("also")))
		return nil
	})
	info, err := h.Describe(context.Background())
	if err != nil || info != (plugins.Info{Name: "bulk", Version: "2.0.0", ProtocolVersion: plugins.ProtocolVersion}) {
		t.Errorf("Describe = %+v, %v", info, err)
	}
	res, err := h.Handle(context.Background(), batch("x", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Index != 0 || string(res.Outputs[0].Headers[0].Value) != "x" {
		t.Errorf("outputs %+v", res.Outputs)
	}
	wantFailures := []plugins.Failure{
		{Index: 1, Message: "bad value", Class: plugins.ClassInvalidInput},
		{Index: 0, Message: "also", Retryable: true, Class: plugins.ClassTransient},
	}
	if len(res.Failures) != 2 || res.Failures[0] != wantFailures[0] || res.Failures[1] != wantFailures[1] {
		t.Errorf("failures %+v, want %+v", res.Failures, wantFailures)
	}

	// A Func's error fails the batch and keeps its class.
	h = sdk.New(sdk.Options{Name: "down"}, func(context.Context, *plugins.Batch, *sdk.Result) error {
		return sdk.Retryable(errors.New("database down"))
	})
	if _, err := h.Handle(context.Background(), batch("x")); plugins.ClassOf(err) != plugins.ClassTransient || !plugins.IsRetryable(err) {
		t.Errorf("err = %v, want retryable transient", err)
	}
}

func TestErrorHelpers(t *testing.T) {
	if sdk.Invalid(nil) != nil || sdk.Retryable(nil) != nil {
		t.Error("helpers of nil are not nil")
	}
	cause := errors.New("cause")
	inv := sdk.Invalid(cause)
	if !errors.Is(inv, cause) || plugins.ClassOf(inv) != plugins.ClassInvalidInput || plugins.IsRetryable(inv) {
		t.Errorf("Invalid: %v", inv)
	}
	ret := sdk.Retryable(cause)
	if !errors.Is(ret, cause) || plugins.ClassOf(ret) != plugins.ClassTransient || !plugins.IsRetryable(ret) {
		t.Errorf("Retryable: %v", ret)
	}
}

// Example is a complete handler: main serves one per-record function. (An
// example without output is compiled, not run: Serve takes over the
// process.)
func Example() {
	upper := func(_ context.Context, r record.Record) ([]sdk.Out, error) {
		if len(r.Value) == 0 {
			return nil, sdk.Invalidf("empty value") // dead-lettered, never retried
		}
		return []sdk.Out{{Sink: "out", Key: r.Key, Value: []byte(strings.ToUpper(string(r.Value))), Headers: r.Headers}}, nil
	}
	sdk.Serve(sdk.Options{Name: "upper", Version: "1.0.0"}, sdk.PerRecord(upper))
}
