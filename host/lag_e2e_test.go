package host_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/loadtest"
)

// laneLag returns the lag of the only lane in /status, and whether there
// is exactly one lane with a lag measured after the request began.
func laneLag(t *testing.T, base string) (host.LaneStatus, bool) {
	t.Helper()
	asked := time.Now()
	st := status(t, base)
	if len(st.Pipelines) != 1 || len(st.Pipelines[0].Lanes) != 1 {
		return host.LaneStatus{}, false
	}
	l := st.Pipelines[0].Lanes[0]
	return l, l.Lag.Known && !l.Lag.At.Before(asked.Add(-time.Second))
}

// A slow handler leaves a backlog that more workers would drain: while it
// works through it, the lag is all drainable, none blocked, the oldest
// unfinished record ages, and the lag goes back to 0 at the end.
func TestLagBehindASlowHandlerIsDrainable(t *testing.T) {
	const n = 300
	e := newEnv(t, 1)
	e.produce(0, n, 10)
	cfg := e.configWith(`{ plugin: "builtin:echo", instances: 1, env: { WEIR_ECHO_SINK: out, WEIR_SLEEP: 100ms } }`, "")
	cfg.Pipelines[0].Batch.MaxRecords = 10 // 30 batches of 100ms: 3s of backlog
	r, base := e.startWithAdmin(cfg, "h1")

	var seen host.LaneStatus
	waitFor(t, func() bool {
		l, ok := laneLag(t, base)
		seen = l
		return ok && r.completed() > 0 && l.Lag.Lag > 0 && l.OldestSeconds > 0
	}, "/status to show lag while the slow handler works")
	if lag := seen.Lag; lag.Drainable != lag.Lag || lag.Blocked != 0 || lag.BlockedBy != "" || lag.End != n {
		t.Errorf("lag behind a slow handler: %+v; want all of it drainable, end %d", lag, n)
	}
	_, m := get(t, base+"/metrics")
	series := `{partition="0",pipeline="e2e",topic="` + e.in + `"}`
	if d, b := metricValue(t, m, "weir_lag_drainable_records"+series), metricValue(t, m, "weir_lag_blocked_records"+series); d == 0 || b != 0 {
		t.Errorf("metrics behind a slow handler: drainable %v blocked %v; want drainable > 0, blocked 0", d, b)
	}
	if lag := metricValue(t, m, "weir_lag_records"+series); lag == 0 {
		t.Error("weir_lag_records is 0 behind a slow handler")
	}

	waitFor(t, func() bool { return r.completed() == n }, "every record to complete")
	waitFor(t, func() bool {
		l, ok := laneLag(t, base)
		return ok && l.Lag.Lag == 0 && l.OldestSeconds == 0
	}, "the lag to go back to 0")
}

// A key parked on a record that keeps failing retryably holds back its own
// later records and, through the commit, every record after it; the other
// keys complete. None of that is work for more workers: the whole lag is
// blocked, none drainable, and the pipeline stays ready (a parked key is
// not an outage).
func TestLagBehindAParkedKeyIsBlocked(t *testing.T) {
	const n, stuck = 200, 5
	e := newEnv(t, 1)
	err := loadtest.Produce(context.Background(), e.cl, e.in, n, func(i int) *kgo.Record {
		if i < stuck {
			return &kgo.Record{Key: []byte("parked"), Value: []byte("stuck-" + strconv.Itoa(i))}
		}
		return &kgo.Record{Key: []byte("k" + strconv.Itoa(i%10)), Value: []byte(strconv.Itoa(i))}
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.configWith(`{ plugin: "builtin:echo", instances: 2, env: { WEIR_ECHO_SINK: out, WEIR_RETRY_ON: stuck } }`,
		"    dlq: { kafka: { topic: "+e.out+"-dlq } }\n")
	cfg.Pipelines[0].Retry.MaxAttempts = 1000
	cfg.Pipelines[0].Retry.MaxBackoff = 50 * time.Millisecond
	cfg.Pipelines[0].ShutdownTimeout = time.Second
	// Once the other keys are done, the parked key's retries are the only
	// calls, all failing retryably, which the handler breaker would take
	// for an outage (tested elsewhere): keep it out of this test.
	cfg.Pipelines[0].Breaker.MinRequests = 1 << 30
	r, base := e.startWithAdmin(cfg, "h1")

	waitFor(t, func() bool { return r.completed() == n-stuck }, "every record but the parked key's to complete")
	var seen host.LaneStatus
	waitFor(t, func() bool {
		l, ok := laneLag(t, base)
		seen = l
		return ok && l.Lag.BlockedBy == "retrying records" && l.Lag.Blocked == l.Lag.Lag
	}, "/status to show the lag blocked behind the parked key")
	if lag := seen.Lag; lag.Lag != n || lag.Next != 0 || lag.Drainable != 0 {
		t.Errorf("lag behind a parked key: %+v; want %d, all blocked (the commit waits at offset 0)", lag, n)
	}
	_, m := get(t, base+"/metrics")
	series := `{partition="0",pipeline="e2e",topic="` + e.in + `"}`
	if d, b := metricValue(t, m, "weir_lag_drainable_records"+series), metricValue(t, m, "weir_lag_blocked_records"+series); d != 0 || b != n {
		t.Errorf("metrics behind a parked key: drainable %v blocked %v; want 0 and %d", d, b, n)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s with a parked key; want ready", code, body)
	}
}
