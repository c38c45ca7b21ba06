package loadtest

import (
	"fmt"
	"time"
)

// Verifier checks the outputs of a load test against the records a
// Generator made (0..n-1): each must arrive exactly once, and the records of
// one key in increasing sequence order. It also measures end-to-end latency:
// from the producer timestamp carried in the value to the output record's
// timestamp, which a Kafka sink sets when it writes the output (Kafka
// CreateTime). An output stamped before it was produced (a handler that
// copied the input's timestamp) is measured to the time the Verifier read
// it instead, and counted in Verification.LatencyAtRead.
//
// Memory is one bit per expected record plus one entry per key. A Verifier
// is not safe for concurrent use: feed it from one goroutine.
type Verifier struct {
	n          int64
	checkOrder bool
	start      time.Time

	seen       []uint64
	unique     int64
	received   int64
	dups       int64
	reordered  int64
	unexpected int64
	atRead     int64
	last       map[string]int64

	lat      Histogram
	timeline timeline

	lostSample, dupSample []int64
	reorderSample         []string
	unexpectedSample      []string
}

// samples bounds the examples kept of each kind of problem.
const samples = 10

// NewVerifier expects records 0..n-1. With checkOrder false (ordering:
// none), records out of order per key are counted but are not a failure.
// start is time zero of the latency timeline.
func NewVerifier(n int, checkOrder bool, start time.Time) *Verifier {
	return &Verifier{
		n: int64(n), checkOrder: checkOrder, start: start,
		seen: make([]uint64, (n+63)/64), last: make(map[string]int64),
		timeline: timeline{width: 100 * time.Millisecond},
	}
}

// Observe checks one output: its key and value, the output record's
// timestamp (zero if unknown) and when it was read.
func (v *Verifier) Observe(key, value []byte, written, read time.Time) {
	v.received++
	seq, producedNs, err := ParseValue(value)
	if err != nil || seq < 0 || seq >= v.n {
		v.unexpected++
		if len(v.unexpectedSample) < samples {
			v.unexpectedSample = append(v.unexpectedSample, fmt.Sprintf("key %q value %.40q", key, value))
		}
		return
	}
	w, b := seq/64, uint64(1)<<(seq%64)
	if v.seen[w]&b != 0 {
		v.dups++
		if len(v.dupSample) < samples {
			v.dupSample = append(v.dupSample, seq)
		}
		return // a redelivery is a duplicate, not also a reorder
	}
	v.seen[w] |= b
	v.unique++
	if prev, ok := v.last[string(key)]; ok && seq < prev {
		v.reordered++
		if len(v.reorderSample) < samples {
			v.reorderSample = append(v.reorderSample, fmt.Sprintf("key %s: %d after %d", key, seq, prev))
		}
	} else {
		v.last[string(key)] = seq
	}
	end := written
	if end.IsZero() || end.UnixNano() < producedNs {
		end = read
		v.atRead++
	}
	d := time.Duration(end.UnixNano() - producedNs)
	v.lat.Record(d)
	v.timeline.record(end.Sub(v.start), d)
}

// Unique is how many distinct expected records were observed so far.
func (v *Verifier) Unique() int64 { return v.unique }

// Received is how many outputs were observed so far.
func (v *Verifier) Received() int64 { return v.received }

// Latency is the end-to-end latency distribution so far.
func (v *Verifier) Latency() *Histogram { return &v.lat }

// Verification is a Verifier's verdict.
type Verification struct {
	Expected   int64 `json:"expected"`
	Received   int64 `json:"received"`
	Unique     int64 `json:"unique"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	Reordered  int64 `json:"reordered"`
	// OrderChecked is false under ordering: none (Reordered is then
	// informational).
	OrderChecked bool  `json:"order_checked"`
	Unexpected   int64 `json:"unexpected"`
	// LatencyAtRead counts outputs whose latency was measured to the time
	// they were read, not to their sink write.
	LatencyAtRead int64     `json:"latency_at_read"`
	Latency       Latencies `json:"latency_ms"`
	// Samples of each problem, for diagnosis (at most 10 each).
	LostSample       []int64  `json:"lost_sample,omitempty"`
	DupSample        []int64  `json:"duplicated_sample,omitempty"`
	ReorderSample    []string `json:"reordered_sample,omitempty"`
	UnexpectedSample []string `json:"unexpected_sample,omitempty"`
	// Timeline is latency over time (by sink-write time from the start).
	Timeline []TimelinePoint `json:"timeline,omitempty"`
}

// OK reports whether nothing was lost, duplicated, unexpected or (when
// checked) reordered.
func (r *Verification) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Unexpected == 0 && (!r.OrderChecked || r.Reordered == 0)
}

// Latencies are percentiles of a latency distribution, in milliseconds.
type Latencies struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// LatenciesOf summarizes h.
func LatenciesOf(h *Histogram) Latencies {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latencies{Count: h.Count(), P50: ms(h.Quantile(.5)), P90: ms(h.Quantile(.9)),
		P99: ms(h.Quantile(.99)), Max: ms(h.Max()), Mean: ms(h.Mean())}
}

// Result returns the verdict so far; the records not observed yet count as
// lost.
func (v *Verifier) Result() Verification {
	r := Verification{
		Expected: v.n, Received: v.received, Unique: v.unique, Lost: v.n - v.unique,
		Duplicated: v.dups, Reordered: v.reordered, OrderChecked: v.checkOrder,
		Unexpected: v.unexpected, LatencyAtRead: v.atRead, Latency: LatenciesOf(&v.lat),
		DupSample: v.dupSample, ReorderSample: v.reorderSample, UnexpectedSample: v.unexpectedSample,
		Timeline: v.timeline.points(),
	}
	for seq := int64(0); seq < v.n && len(r.LostSample) < samples && r.Lost > 0; seq++ {
		if v.seen[seq/64]&(1<<(seq%64)) == 0 {
			r.LostSample = append(r.LostSample, seq)
		}
	}
	return r
}

// TimelinePoint is the latency of the outputs written in one interval.
type TimelinePoint struct {
	AtS     float64 `json:"at_s"` // start of the interval, seconds from the start
	WidthS  float64 `json:"width_s"`
	Records uint64  `json:"records"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

// maxTimeline bounds the intervals a timeline keeps; past it, neighbours
// merge and the interval doubles (so memory stays under 4 MiB).
const maxTimeline = 120

// timeline keeps a latency histogram per interval of output time.
type timeline struct {
	width   time.Duration
	buckets []*Histogram
}

func (t *timeline) record(at, d time.Duration) {
	at = max(at, 0)
	i := int(at / t.width)
	for i >= maxTimeline {
		t.halve()
		i = int(at / t.width)
	}
	for len(t.buckets) <= i {
		t.buckets = append(t.buckets, nil)
	}
	if t.buckets[i] == nil {
		t.buckets[i] = new(Histogram)
	}
	t.buckets[i].Record(d)
}

// halve merges neighbouring intervals.
func (t *timeline) halve() {
	merged := make([]*Histogram, (len(t.buckets)+1)/2)
	for i, b := range t.buckets {
		if b == nil {
			continue
		}
		if merged[i/2] == nil {
			merged[i/2] = b
		} else {
			merged[i/2].Merge(b)
		}
	}
	t.buckets, t.width = merged, 2*t.width
}

func (t *timeline) points() []TimelinePoint {
	var out []TimelinePoint
	for i, b := range t.buckets {
		p := TimelinePoint{AtS: (time.Duration(i) * t.width).Seconds(), WidthS: t.width.Seconds()}
		if b != nil {
			l := LatenciesOf(b)
			p.Records, p.P50, p.P99, p.Max = l.Count, l.P50, l.P99, l.Max
		}
		out = append(out, p)
	}
	return out
}
