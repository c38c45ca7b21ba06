package host

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/plugins"
)

// Stats counts what a pipeline did. Fields are updated atomically and may be
// read at any time; read them through Snapshot for a consistent-enough view.
type Stats struct {
	RecordsIn     atomic.Int64 // records delivered by the source
	Completed     atomic.Int64 // records complete: handled or dead-lettered
	Outputs       atomic.Int64 // messages written to sinks
	Failures      atomic.Int64 // per-record failures reported by the handler
	DLQ           atomic.Int64 // records written to the DLQ
	Retries       atomic.Int64 // records sent to the handler again
	Batches       atomic.Int64 // batches started
	HandlerErrors atomic.Int64 // calls that failed as a whole
	InflightBytes atomic.Int64 // bytes delivered and not yet complete
	Paused        atomic.Int64 // partitions paused for backpressure now
	Commits       atomic.Int64 // successful source commits
	Parked        atomic.Int64 // batches holding back keys while retrying records
	Duplicates    atomic.Int64 // records dropped as already handled (idempotency marks)
	Assigned      atomic.Int64 // partitions assigned (rebalance events)
	Revoked       atomic.Int64 // partitions revoked (rebalance events)
	Lost          atomic.Int64 // partitions lost (rebalance events)
	// failuresBy and handlerErrorsBy split Failures and HandlerErrors by
	// plugins.ErrorClass (index = class; unknown classes count as 0,
	// unspecified).
	failuresBy      [numClasses]atomic.Int64
	handlerErrorsBy [numClasses]atomic.Int64
	// batchSize and batchSeconds: records per batch, and the time from a
	// batch's dispatch to its last record complete (retries, sink writes
	// and DLQ included); batches abandoned on a stop are not observed.
	batchSize    histogram
	batchSeconds histogram
	callNanos    atomic.Int64
	calls        atomic.Int64
	// callBuckets[i] counts calls that took at most callBounds[i] (and more
	// than callBounds[i-1]); the last one counts the rest.
	callBuckets [len(callBounds) + 1]atomic.Int64
}

// callBounds are the upper bounds, in seconds, of the handler call latency
// histogram's buckets (weir_handler_call_seconds).
var callBounds = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// numClasses is the number of plugins.ErrorClass values: 0 to
// ClassBadReply.
const numClasses = int(plugins.ClassBadReply) + 1

func classIndex(c plugins.ErrorClass) int {
	if c < 0 || int(c) >= numClasses {
		return 0
	}
	return int(c)
}

// countFailure counts one per-record failure of class c.
func (s *Stats) countFailure(c plugins.ErrorClass) {
	s.Failures.Add(1)
	s.failuresBy[classIndex(c)].Add(1)
}

// countHandlerError counts one whole-batch failure of class c.
func (s *Stats) countHandlerError(c plugins.ErrorClass) {
	s.HandlerErrors.Add(1)
	s.handlerErrorsBy[classIndex(c)].Add(1)
}

// byClass returns the non-zero counts of cs by class name.
func byClass(cs *[numClasses]atomic.Int64) map[string]int64 {
	out := map[string]int64{}
	for i := range cs {
		if v := cs[i].Load(); v != 0 {
			out[plugins.ErrorClass(i).String()] = v
		}
	}
	return out
}

func (s *Stats) observeCall(d time.Duration) {
	s.callNanos.Add(int64(d))
	s.calls.Add(1)
	sec := d.Seconds()
	i := 0
	for i < len(callBounds) && sec > callBounds[i] {
		i++
	}
	s.callBuckets[i].Add(1)
}

// callHistogram returns the handler call latency histogram: the number of
// calls, the sum of their durations in seconds, and the cumulative count per
// upper bound (the shape of a Prometheus histogram).
func (s *Stats) callHistogram() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(callBounds))
	var cum uint64
	for i, b := range callBounds {
		cum += uint64(s.callBuckets[i].Load())
		buckets[b] = cum
	}
	count = cum + uint64(s.callBuckets[len(callBounds)].Load())
	return count, float64(s.callNanos.Load()) / 1e9, buckets
}

// countEvent counts a partition lifecycle event (a rebalance step).
func (s *Stats) countEvent(kind EventKind) {
	switch kind {
	case EventAssigned:
		s.Assigned.Add(1)
	case EventRevoked:
		s.Revoked.Add(1)
	case EventLost:
		s.Lost.Add(1)
	}
}

// Snapshot is a copy of Stats at one moment.
type Snapshot struct {
	Pipeline      string  `json:"pipeline"`
	RecordsIn     int64   `json:"records_in"`
	Completed     int64   `json:"completed"`
	Outputs       int64   `json:"outputs"`
	Failures      int64   `json:"failures"`
	DLQ           int64   `json:"dlq"`
	Retries       int64   `json:"retries"`
	Batches       int64   `json:"batches"`
	HandlerErrors int64   `json:"handler_errors"`
	InflightBytes int64   `json:"inflight_bytes"`
	Paused        int64   `json:"paused_partitions"`
	Commits       int64   `json:"commits"`
	Parked        int64   `json:"parked_batches"`
	Duplicates    int64   `json:"duplicates_dropped"`
	MeanCallMs    float64 `json:"mean_call_ms"`
	// FailuresByClass and HandlerErrorsByClass split Failures and
	// HandlerErrors by failure class (invalid_input, transient, handler,
	// timeout, crash, bad_reply, unspecified); classes at 0 are left out.
	FailuresByClass      map[string]int64 `json:"failures_by_class"`
	HandlerErrorsByClass map[string]int64 `json:"handler_errors_by_class"`
	// PluginRestarts counts handler processes restarted after a crash or a
	// timeout.
	PluginRestarts int64 `json:"plugin_restarts"`
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	snap := Snapshot{
		RecordsIn: s.RecordsIn.Load(), Completed: s.Completed.Load(), Outputs: s.Outputs.Load(),
		Failures: s.Failures.Load(), DLQ: s.DLQ.Load(), Retries: s.Retries.Load(),
		Batches: s.Batches.Load(), HandlerErrors: s.HandlerErrors.Load(),
		InflightBytes: s.InflightBytes.Load(), Paused: s.Paused.Load(), Commits: s.Commits.Load(), Parked: s.Parked.Load(), Duplicates: s.Duplicates.Load(),
		FailuresByClass: byClass(&s.failuresBy), HandlerErrorsByClass: byClass(&s.handlerErrorsBy),
	}
	if n := s.calls.Load(); n > 0 {
		snap.MeanCallMs = float64(s.callNanos.Load()) / float64(n) / 1e6
	}
	return snap
}

// histogram is a Prometheus-shaped histogram of atomic counters: safe for
// concurrent use, no lock, no allocation per observation. The zero value
// is not usable; see newHistograms.
type histogram struct {
	bounds  []float64
	buckets []atomic.Int64 // len(bounds)+1; the last counts the rest
	sum     atomic.Uint64  // math.Float64bits of the sum
}

// Bucket bounds of weir_batch_records and weir_batch_seconds.
var (
	batchSizeBounds    = []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}
	batchSecondsBounds = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
)

func (h *histogram) init(bounds []float64) {
	h.bounds, h.buckets = bounds, make([]atomic.Int64, len(bounds)+1)
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// snapshot returns the count, the sum and the cumulative count per bound.
func (h *histogram) snapshot() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for i, b := range h.bounds {
		cum += uint64(h.buckets[i].Load())
		buckets[b] = cum
	}
	return cum + uint64(h.buckets[len(h.bounds)].Load()), math.Float64frombits(h.sum.Load()), buckets
}

// newStats returns Stats with its histograms ready.
func newStats() *Stats {
	s := &Stats{}
	s.batchSize.init(batchSizeBounds)
	s.batchSeconds.init(batchSecondsBounds)
	return s
}
