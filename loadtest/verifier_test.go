package loadtest

import (
	"testing"
	"time"
)

// obs feeds the verifier record seq of g as an output written 3ms after it
// was produced.
func obs(v *Verifier, g *Generator, seq int64, produced time.Time) {
	val := g.AppendValue(nil, seq, produced)
	v.Observe(g.Key(seq), val, produced.Add(3*time.Millisecond), produced.Add(5*time.Millisecond))
}

func TestGeneratorValuesParseBack(t *testing.T) {
	g := NewGenerator(100, 7)
	now := time.Unix(1700000000, 123456789)
	r := g.Record(4242, now)
	if len(r.Value) != 100 || string(r.Key) != "k0" /* 4242 mod 7 = 0 */ || !r.Timestamp.Equal(now) {
		t.Fatalf("record: key %q, %d-byte value, timestamp %v", r.Key, len(r.Value), r.Timestamp)
	}
	seq, ns, err := ParseValue(r.Value)
	if err != nil || seq != 4242 || ns != now.UnixNano() {
		t.Fatalf("ParseValue = %d, %d, %v; want 4242, %d", seq, ns, err, now.UnixNano())
	}
	if got := NewGenerator(1, 1).Size(); got != MinValueSize {
		t.Fatalf("a value asked to be 1 byte is %d bytes, want the header's %d", got, MinValueSize)
	}
	for _, bad := range []string{"", "hello", "WL1 zzzzzzzzzzzzzzzz 0000000000000000 "} {
		if _, _, err := ParseValue([]byte(bad)); err == nil {
			t.Errorf("ParseValue(%q) did not fail", bad)
		}
	}
}

// A clean stream of every record, in order per key, verifies, with the
// latency measured to the output's timestamp.
func TestVerifierCleanStream(t *testing.T) {
	g := NewGenerator(64, 10)
	start := time.Now()
	v := NewVerifier(1000, true, start)
	for seq := int64(0); seq < 1000; seq++ {
		obs(v, g, seq, start.Add(time.Duration(seq)*time.Millisecond))
	}
	r := v.Result()
	if !r.OK() || r.Lost != 0 || r.Duplicated != 0 || r.Reordered != 0 || r.Unique != 1000 {
		t.Fatalf("clean stream not verified: %+v", r)
	}
	if r.Latency.Count != 1000 || r.Latency.P50 < 2.9 || r.Latency.P50 > 3.1 || r.Latency.Max < 2.9 || r.Latency.Max > 3.1 {
		t.Fatalf("latency of outputs written 3ms after production: %+v", r.Latency)
	}
	if r.LatencyAtRead != 0 || len(r.Timeline) == 0 {
		t.Fatalf("latency basis or timeline wrong: at-read %d, %d timeline points", r.LatencyAtRead, len(r.Timeline))
	}
}

// Each kind of problem in a synthetic stream is detected and counted once:
// record 5 lost, record 7 delivered twice, and record 30 (key k0, after
// record 40 of the same key) out of order.
func TestVerifierDetectsLossDuplicateAndReorder(t *testing.T) {
	g := NewGenerator(64, 10)
	start := time.Now()
	v := NewVerifier(100, true, start)
	for seq := int64(0); seq < 100; seq++ {
		switch seq {
		case 5: // lost
			continue
		case 30: // comes after 40 instead
			continue
		case 40:
			obs(v, g, 40, start)
			obs(v, g, 30, start)
			continue
		}
		obs(v, g, seq, start)
		if seq == 7 {
			obs(v, g, 7, start) // a duplicate
		}
	}
	obs(v, g, 7, start) // and a late one: still a duplicate, not a reorder
	v.Observe([]byte("x"), []byte("not ours"), start, start)

	r := v.Result()
	if r.OK() {
		t.Fatal("a stream with a loss, duplicates and a reorder verified OK")
	}
	if r.Lost != 1 || len(r.LostSample) != 1 || r.LostSample[0] != 5 {
		t.Errorf("lost %d %v, want 1 [5]", r.Lost, r.LostSample)
	}
	if r.Duplicated != 2 || r.DupSample[0] != 7 {
		t.Errorf("duplicated %d %v, want 2 [7 7]", r.Duplicated, r.DupSample)
	}
	if r.Reordered != 1 || r.ReorderSample[0] != "key k0: 30 after 40" {
		t.Errorf("reordered %d %v, want 1 [key k0: 30 after 40]", r.Reordered, r.ReorderSample)
	}
	if r.Unexpected != 1 {
		t.Errorf("unexpected %d, want 1", r.Unexpected)
	}
	if r.Received != 102 || r.Unique != 99 {
		t.Errorf("received %d unique %d, want 102 and 99", r.Received, r.Unique)
	}

	// Under ordering none, a reorder is counted but is not a failure.
	v = NewVerifier(2, false, start)
	obs(v, g, 1, start)
	obs(v, g, 0, start)
	if r := v.Result(); r.Reordered != 0 || !r.OK() {
		// keys differ (k1, k0): nothing is out of order per key
		t.Errorf("different keys counted as reordered: %+v", r)
	}
	v = NewVerifier(20, false, start)
	obs(v, g, 10, start)
	obs(v, g, 0, start)
	for seq := int64(1); seq < 20; seq++ {
		if seq != 10 {
			obs(v, g, seq, start)
		}
	}
	if r := v.Result(); r.Reordered != 1 || !r.OK() {
		t.Errorf("ordering none: reordered %d ok %v, want 1 and true", r.Reordered, r.OK())
	}
}

// An output stamped before it was produced (a handler that copied the
// input's timestamp) is measured to the time it was read.
func TestVerifierLatencyFallsBackToReadTime(t *testing.T) {
	g := NewGenerator(64, 1)
	start := time.Now()
	v := NewVerifier(1, true, start)
	v.Observe(g.Key(0), g.AppendValue(nil, 0, start), start.Add(-time.Second), start.Add(8*time.Millisecond))
	r := v.Result()
	if r.LatencyAtRead != 1 || r.Latency.Max < 7.9 || r.Latency.Max > 8.1 {
		t.Fatalf("at-read %d, max %.2f ms; want 1 and 8 ms", r.LatencyAtRead, r.Latency.Max)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.5, 5000 * time.Microsecond}, {.9, 9000 * time.Microsecond}, {.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.02 || d > 0.02 {
			t.Errorf("q%.2f = %v, want %v within 2%%", c.q, got, c.want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	var empty Histogram
	if empty.Quantile(.99) != 0 {
		t.Error("empty histogram has a p99")
	}
}

func TestTimelineStaysBounded(t *testing.T) {
	tl := timeline{width: 100 * time.Millisecond}
	for s := 0; s < 1000; s++ {
		tl.record(time.Duration(s)*time.Second, time.Millisecond)
	}
	pts := tl.points()
	if len(pts) > maxTimeline {
		t.Fatalf("%d timeline points, want at most %d", len(pts), maxTimeline)
	}
	var n uint64
	for _, p := range pts {
		n += p.Records
	}
	if n != 1000 {
		t.Fatalf("timeline holds %d records, want 1000", n)
	}
}
