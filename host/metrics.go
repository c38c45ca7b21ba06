package host

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// collector exposes a Host's pipelines as Prometheus metrics. It keeps no
// counters of its own: at every scrape it reads the pipelines' Stats, their
// breakers and their lanes. Labels are bounded: pipeline, breaker, kind,
// topic and partition; never a key or an offset.
type collector struct {
	h *Host
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(h *Host) *collector { return &collector{h: h} }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append([]string{"pipeline"}, labels...), nil)
}

var (
	mRecordsIn     = desc("weir_records_in_total", "Records delivered by the source.")
	mCompleted     = desc("weir_records_completed_total", "Records complete: handled, or dead-lettered.")
	mOutputs       = desc("weir_outputs_total", "Messages written to sinks.")
	mFailures      = desc("weir_failures_total", "Per-record failures reported by the handler (every attempt counts), by failure class.", "class")
	mDLQ           = desc("weir_dlq_records_total", "Records written to the dead-letter queue.")
	mRetries       = desc("weir_retries_total", "Records sent to the handler again.")
	mBatches       = desc("weir_batches_total", "Batches started.")
	mHandlerErrors = desc("weir_handler_errors_total", "Handler calls that failed as a whole, by failure class (timeout, crash, ...).", "class")
	mDuplicates    = desc("weir_duplicates_dropped_total", "Records dropped as already handled (idempotency marks).")
	mCommits       = desc("weir_commits_total", "Successful source commits.")
	mRestarts      = desc("weir_plugin_restarts_total", "Handler plugin processes restarted after a crash or a timeout.")
	mRebalances    = desc("weir_rebalances_total", "Partition lifecycle events: assigned, revoked, lost.", "kind")
	mInflight      = desc("weir_inflight_bytes", "Bytes delivered by the source and not yet complete.")
	mMaxInflight   = desc("weir_max_inflight_bytes", "The in-flight budget past which partitions pause (max_inflight_bytes).")
	mPaused        = desc("weir_paused_partitions", "Partitions paused at the source now (backpressure or an open breaker).")
	mParked        = desc("weir_parked_batches", "Batches holding back keys while retrying records.")
	mInstances     = desc("weir_plugin_instances", "Handler plugin processes configured.")
	mBreaker       = desc("weir_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", "breaker")
	mCall          = desc("weir_handler_call_seconds", "Handler call latency, per batch call.")
	mBatchSize     = desc("weir_batch_records", "Records per batch, at dispatch.")
	mBatchSeconds  = desc("weir_batch_seconds", "Time from a batch's dispatch to its last record complete (retries, sink and DLQ writes included).")
	mLanes         = desc("weir_assigned_partitions", "Partitions owned by this host now.")
	mPartPaused    = desc("weir_partition_paused", "1 while the partition is paused at the source.", "topic", "partition")
	mUp            = desc("weir_pipeline_running", "1 while the pipeline is running.")
	mInstancesUp   = desc("weir_plugin_instances_up", "Handler plugin processes running now.")
	mSourceUp      = desc("weir_source_connected", "1 while the latest poll of the source's offsets succeeded (admin.lag_interval).")
	mLag           = desc("weir_lag_records", "Records between the first one not complete and the end of the partition's log (drainable + blocked).", "topic", "partition")
	mLagDrainable  = desc("weir_lag_drainable_records", "Lag that more workers could drain: not fetched yet, queued, or on a first attempt. Scale on this.", "topic", "partition")
	mLagBlocked    = desc("weir_lag_blocked_records", "Lag held behind an open breaker or retrying records (and their keys): more workers would not drain it.", "topic", "partition")
	mLagMillis     = desc("weir_lag_millis", "Kinesis shards: how far behind the shard's newest record its reader was at its latest read (MillisBehindLatest; Kinesis reports no record count).", "topic", "partition")
	mThrottled     = desc("weir_kinesis_throttled_total", "Kinesis reads (GetRecords) refused for throughput and backed off.")
	mOldest        = desc("weir_oldest_unfinished_seconds", "Age now of the oldest record delivered to the partition's lane and not complete, as of the latest lag measurement (admin.lag_interval; 0: none).", "topic", "partition")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mRecordsIn, mCompleted, mOutputs, mFailures, mDLQ, mRetries, mBatches,
		mHandlerErrors, mDuplicates, mCommits, mRestarts, mRebalances, mInflight, mMaxInflight, mPaused, mParked,
		mInstances, mBreaker, mCall, mBatchSize, mBatchSeconds, mLanes, mPartPaused, mUp, mInstancesUp, mSourceUp, mLag, mLagDrainable, mLagBlocked, mLagMillis, mThrottled, mOldest, mUpgrades, mVersion} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; it is called at every scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.h.mu.Lock()
	pls := append([]*pipeline(nil), c.h.pipelines...)
	states := make(map[string]string, len(c.h.states))
	for k, v := range c.h.states {
		states[k] = v
	}
	c.h.mu.Unlock()
	for _, pl := range pls {
		name := pl.cfg.Name
		s := pl.stats
		counter := func(d *prometheus.Desc, v int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{name}, labels...)...)
		}
		gauge := func(d *prometheus.Desc, v int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), append([]string{name}, labels...)...)
		}
		counter(mRecordsIn, s.RecordsIn.Load())
		counter(mCompleted, s.Completed.Load())
		counter(mOutputs, s.Outputs.Load())
		for i := range numClasses {
			class := plugins.ErrorClass(i).String()
			counter(mFailures, s.failuresBy[i].Load(), class)
			counter(mHandlerErrors, s.handlerErrorsBy[i].Load(), class)
		}
		counter(mDLQ, s.DLQ.Load())
		counter(mRetries, s.Retries.Load())
		counter(mBatches, s.Batches.Load())
		counter(mDuplicates, s.Duplicates.Load())
		counter(mCommits, s.Commits.Load())
		if t, ok := pl.src.(interface{ Throttled() int64 }); ok {
			counter(mThrottled, t.Throttled())
		}
		var restarts int64
		if pl.restarts != nil {
			restarts = pl.restarts()
		}
		counter(mRestarts, restarts)
		counter(mRebalances, s.Assigned.Load(), "assigned")
		counter(mRebalances, s.Revoked.Load(), "revoked")
		counter(mRebalances, s.Lost.Load(), "lost")
		gauge(mInflight, s.InflightBytes.Load())
		gauge(mMaxInflight, pl.cfg.MaxInflightBytes)
		gauge(mPaused, s.Paused.Load())
		gauge(mParked, s.Parked.Load())
		gauge(mInstances, int64(pl.cfg.Handler.Instances))
		if pl.alive != nil {
			up, _ := pl.alive()
			gauge(mInstancesUp, int64(up))
		}
		if _, ok := pl.src.(sources.OffsetReporter); ok {
			var connected int64
			if pl.sourceErr() == nil {
				connected = 1
			}
			gauge(mSourceUp, connected)
		}
		now := time.Now()
		for p, l := range pl.partitionLags() {
			ch <- prometheus.MustNewConstMetric(mOldest, prometheus.GaugeValue, l.OldestAge(now).Seconds(), name, p.Stream, p.ID)
			if !l.BehindAt.IsZero() {
				gauge(mLagMillis, l.MillisBehind, p.Stream, p.ID)
			}
			if !l.Known {
				continue
			}
			gauge(mLag, l.Lag, p.Stream, p.ID)
			gauge(mLagDrainable, l.Drainable, p.Stream, p.ID)
			gauge(mLagBlocked, l.Blocked, p.Stream, p.ID)
		}
		var up int64
		if states[name] == StateRunning {
			up = 1
		}
		gauge(mUp, up)
		for _, b := range pl.breakers() {
			gauge(mBreaker, int64(b.cb.State()), b.name) // gobreaker: 0 closed, 1 half-open, 2 open
		}
		pl.collectUpgrades(ch)
		count, sum, buckets := s.callHistogram()
		ch <- prometheus.MustNewConstHistogram(mCall, count, sum, buckets, name)
		count, sum, buckets = s.batchSize.snapshot()
		ch <- prometheus.MustNewConstHistogram(mBatchSize, count, sum, buckets, name)
		count, sum, buckets = s.batchSeconds.snapshot()
		ch <- prometheus.MustNewConstHistogram(mBatchSeconds, count, sum, buckets, name)

		// Copy under the lock, send after: a slow scrape must not hold up
		// the lanes.
		pl.mu.Lock()
		parts := make(map[record.Partition]int64, len(pl.lanes))
		for p := range pl.lanes {
			if pl.paused[p] {
				parts[p] = 1
			} else {
				parts[p] = 0
			}
		}
		pl.mu.Unlock()
		gauge(mLanes, int64(len(parts)))
		for p, paused := range parts {
			gauge(mPartPaused, paused, p.Stream, p.ID)
		}
	}
}
