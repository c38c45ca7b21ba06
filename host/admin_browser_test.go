package host_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testenv"
)

// pageState is what the browser test reads off the rendered status page.
type pageState struct {
	Ready string `json:"ready"`
	Rate  int    `json:"rate"`
	Lanes []struct {
		Partition string `json:"partition"`
		Known     bool   `json:"known"`
		Lag       int64  `json:"lag"`
		Drainable int64  `json:"drainable"`
		Blocked   int64  `json:"blocked"`
		Text      string `json:"text"`
	} `json:"lanes"`
	Total int64 `json:"total"`
}

const readPage = `(() => {
  const rate = document.querySelector('.rate');
  const total = document.querySelector('.lagtotal');
  const ready = document.getElementById('ready'); // null until the page has loaded
  return {
    ready: ready ? ready.textContent : '',
    rate: rate ? Number(rate.dataset.rate) : -1,
    total: total ? Number(total.dataset.lag) : -1,
    lanes: [...document.querySelectorAll('tr.lane')].map(tr => ({
      partition: tr.dataset.partition, known: tr.dataset.known === '1',
      lag: Number(tr.dataset.lag), drainable: Number(tr.dataset.drainable), blocked: Number(tr.dataset.blocked),
      text: tr.innerText,
    })),
  };
})()`

// The status page in a real browser: headless Chromium loads it from a host
// whose pipeline is working through a backlog, and the page shows live
// numbers from /status: a throughput above 0 and the lag of each of the
// three partitions, drainable (a slow handler is nobody's outage). A
// screenshot, status-page.png, is left in $WEIR_TEST_ARTIFACTS (default:
// weir-test-artifacts in the system's temporary directory; the test logs
// the path).
func TestStatusPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test runs in the full pass")
	}
	b := testenv.StartChromium(t, 1200, 900)
	const n = 3000
	e := newEnv(t, 3)
	e.produce(0, n, 30)
	// One handler process, 10 records per batch, 100ms per batch: about
	// 100 records/s, so the backlog lasts half a minute.
	cfg := e.configWith(`{ plugin: "builtin:echo", instances: 1, env: { WEIR_ECHO_SINK: out, WEIR_SLEEP: 100ms } }`, "")
	cfg.Pipelines[0].Batch.MaxRecords = 10
	cfg.Pipelines[0].ShutdownTimeout = 2 * time.Second
	r, base := e.startWithAdmin(cfg, "h1")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.Navigate(ctx, base+"/"); err != nil {
		t.Fatal(err)
	}
	var st pageState
	loaded := time.Now()
	deadline := loaded.Add(60 * time.Second)
	for {
		if err := b.Eval(ctx, readPage, &st); err != nil {
			t.Fatal(err)
		}
		live := st.Rate > 0 && len(st.Lanes) == 3
		for _, l := range st.Lanes {
			live = live && l.Known && l.Lag > 0
		}
		// a few seconds of history, so the throughput is drawn as a line
		if live && time.Since(loaded) > 4*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not show live numbers within 60s: %+v (completed %d)", st, r.completed())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if st.Ready != "ready" {
		t.Errorf("page says %q, want ready", st.Ready)
	}
	var sum int64
	for _, l := range st.Lanes {
		sum += l.Lag
		if l.Drainable != l.Lag || l.Blocked != 0 {
			t.Errorf("partition %s: lag %d drainable %d blocked %d; want all drainable behind a slow handler", l.Partition, l.Lag, l.Drainable, l.Blocked)
		}
		if l.Lag > n {
			t.Errorf("partition %s: lag %d is more than the %d records produced", l.Partition, l.Lag, n)
		}
	}
	if st.Total != sum {
		t.Errorf("pipeline lag %d, want the sum of the partitions' %d", st.Total, sum)
	}
	t.Logf("page: %d rec/s, lag %d over %d partitions", st.Rate, st.Total, len(st.Lanes))

	png, err := b.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	path := filepath.Join(testenv.ArtifactDir(t), "status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
