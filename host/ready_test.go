package host

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weirhq/weir/host/config"
)

// /readyz (Host.Status) is unready while no handler process of a pipeline
// is up, or while its source cannot reach the broker, and ready when both
// are back; one process of several down is not unready.
func TestReadinessFollowsPluginsAndSource(t *testing.T) {
	cfg := testPipelineConfig()
	hs := newHarness(t, cfg, handlerFunc(nil), false)
	var up atomic.Int64
	up.Store(2)
	hs.pl.alive = func() (int, int) { return int(up.Load()), cfg.Handler.Instances }
	h := New(&config.File{Pipelines: []config.Pipeline{*cfg}}, Options{HostID: "h"})
	h.pipelines = []*pipeline{hs.pl}
	h.setState(cfg.Name, StateRunning)

	check := func(wantReady bool, wantReason string) {
		t.Helper()
		st := h.Status()
		if st.Ready != wantReady || !strings.Contains(st.Reason, wantReason) {
			t.Fatalf("ready %v (%q); want %v with %q", st.Ready, st.Reason, wantReady, wantReason)
		}
	}
	check(true, "")
	up.Store(1)
	check(true, "")
	if got := h.Status().Pipelines[0].Plugin.Up; got != 1 {
		t.Errorf("plugin up = %d, want 1", got)
	}
	up.Store(0)
	check(false, "pipeline test: no handler process is up (0 of 4)")
	up.Store(2)
	check(true, "")

	hs.pl.setSourceErr(errors.New("broker unreachable"))
	check(false, "pipeline test: source not connected: broker unreachable")
	if s := h.Status().Pipelines[0].Source; s.Connected || s.Error != "broker unreachable" {
		t.Errorf("source status %+v", s)
	}
	hs.pl.setSourceErr(nil)
	check(true, "")
}
