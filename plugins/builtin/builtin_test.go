package builtin_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
	"github.com/weirhq/weir/record"
)

func TestHandlers(t *testing.T) {
	t.Setenv(builtin.EnvEchoSink, "copies")
	hs := builtin.Handlers()
	var names []string
	for name, h := range hs {
		names = append(names, name)
		info, err := h.Describe(context.Background())
		if err != nil || info.Name != name || info.ProtocolVersion != plugins.ProtocolVersion {
			t.Errorf("%s: Describe = %+v, %v", name, info, err)
		}
	}
	slices.Sort(names)
	if want := []string{"echo", "echo-crash", "echo-leak", "iot", "noop"}; !slices.Equal(names, want) {
		t.Errorf("handlers %v, want %v", names, want)
	}

	b := &plugins.Batch{Records: []record.Record{
		{Key: []byte("a"), Value: []byte("1"), Headers: []record.Header{{Key: "h", Value: []byte("x")}}},
		{Value: []byte("2")},
	}}
	res, err := hs["noop"].Handle(context.Background(), b)
	if err != nil || len(res.Outputs) != 0 || len(res.Failures) != 0 {
		t.Errorf("noop: %+v, %v", res, err)
	}
	res, err = hs["echo"].Handle(context.Background(), b)
	if err != nil || len(res.Outputs) != 2 {
		t.Fatalf("echo: %+v, %v", res, err)
	}
	if o := res.Outputs[0]; o.Index != 0 || o.Sink != "copies" || string(o.Key) != "a" || string(o.Value) != "1" ||
		len(o.Headers) != 1 || o.Headers[0].Key != "h" {
		t.Errorf("echo output %+v", o)
	}
	// Without WEIR_CRASH_ON, echo-crash is echo.
	if res, err := hs["echo-crash"].Handle(context.Background(), b); err != nil || len(res.Outputs) != 2 {
		t.Errorf("echo-crash: %+v, %v", res, err)
	}
}

// TestNoopSleep: with WEIR_SLEEP set, noop waits before answering, and
// gives up with the call's context.
func TestNoopSleep(t *testing.T) {
	t.Setenv(builtin.EnvSleep, "1h")
	noop := builtin.Handlers()["noop"]
	b := &plugins.Batch{Records: []record.Record{{Key: []byte("a"), Value: []byte("1")}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := noop.Handle(ctx, b)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("noop answered before its sleep: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("noop canceled during its sleep answered without error")
	}
	t.Setenv(builtin.EnvSleep, "1ms")
	if _, err := builtin.Handlers()["noop"].Handle(context.Background(), b); err != nil {
		t.Errorf("noop with a 1ms sleep: %v", err)
	}
}
