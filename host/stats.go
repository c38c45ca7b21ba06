package host

import (
	"sync/atomic"
	"time"
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
	callNanos     atomic.Int64
	calls         atomic.Int64
}

func (s *Stats) observeCall(d time.Duration) {
	s.callNanos.Add(int64(d))
	s.calls.Add(1)
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
	}
	if n := s.calls.Load(); n > 0 {
		snap.MeanCallMs = float64(s.callNanos.Load()) / float64(n) / 1e6
	}
	return snap
}
