package loadtest

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Report is the result of one load test (what `weir loadtest --json`
// prints).
type Report struct {
	Records    int     `json:"records"`
	ValueSize  int     `json:"value_bytes"`
	Keys       int     `json:"keys"`
	Partitions int     `json:"partitions"`
	Rate       float64 `json:"rate"` // asked for; 0 = as fast as possible
	Handler    string  `json:"handler"`
	Ordering   string  `json:"ordering"`
	Brokers    string  `json:"brokers"`
	Embedded   bool    `json:"embedded_broker"`
	InputTopic string  `json:"input_topic"`
	// OutputTopic is where outputs were verified ("" when only counts were:
	// the handler has no outputs).
	OutputTopic string `json:"output_topic,omitempty"`

	// DurationS runs from the first record produced to the last one
	// complete (verified in the output topic, or counted complete by the
	// host when there are no outputs to read).
	DurationS      float64 `json:"duration_s"`
	ProduceS       float64 `json:"produce_s"`
	RecordsPerS    float64 `json:"records_per_s"`
	MBPerS         float64 `json:"mb_per_s"`
	Completed      int64   `json:"completed"`
	Outputs        int64   `json:"outputs"`
	Batches        int64   `json:"batches"`
	DLQ            int64   `json:"dlq"`
	Retries        int64   `json:"retries"`
	PluginRestarts int64   `json:"plugin_restarts"`
	CommittedToEnd bool    `json:"committed_to_end"`

	// LatencyBasis says what latency measures.
	LatencyBasis string       `json:"latency_basis"`
	Verification Verification `json:"verification"`
	Lost         int64        `json:"lost"`
	Duplicated   int64        `json:"duplicated"`
	Reordered    int64        `json:"reordered"`
	Resources    Resources    `json:"resources"`
	// Throughput is records complete per second over time.
	Throughput []RatePoint `json:"throughput,omitempty"`
	OK         bool        `json:"ok"`
	Problems   []string    `json:"problems,omitempty"`
}

// RatePoint is the rate at which records were produced and completed
// during one sampling interval.
type RatePoint struct {
	AtS       float64 `json:"at_s"`
	Produced  float64 `json:"produced_per_s"`
	Completed float64 `json:"completed_per_s"`
}

// WriteTable prints r for a terminal.
func (r *Report) WriteTable(w io.Writer) {
	v := &r.Verification
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "  %s\t"+f+"\n", append([]any{k}, a...)...) }
	fmt.Fprintf(tw, "weir loadtest: %d records of %d bytes, %d keys, %d partitions, handler %s, ordering %s\n",
		r.Records, r.ValueSize, r.Keys, r.Partitions, r.Handler, r.Ordering)
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%.0f records/s", r.Rate)
	}
	row("produce rate", "%s (took %.2fs)", rate, r.ProduceS)
	row("throughput", "%.0f records/s  %.1f MB/s  (%.2fs)", r.RecordsPerS, r.MBPerS, r.DurationS)
	if v.Latency.Count > 0 {
		row("latency", "p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms", v.Latency.P50, v.Latency.P90, v.Latency.P99, v.Latency.Max)
		row("", "(%s)", r.LatencyBasis)
	} else {
		row("latency", "n/a (%s)", r.LatencyBasis)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	row("peak RSS", "%.0f MiB  (weir %.0f MiB + %d plugin processes %.0f MiB)",
		mib(r.Resources.PeakRSSBytes), mib(r.Resources.PeakRSSSelfBytes), r.Resources.Children, mib(r.Resources.PeakRSSChildrenBytes))
	row("CPU", "%.1f s  (weir %.1f s, plugins %.1f s)", r.Resources.CPUSeconds, r.Resources.CPUSelfSeconds, r.Resources.CPUChildrenSeconds)
	row("completed", "%d  (batches %d, outputs %d, dlq %d, retries %d, plugin restarts %d)",
		r.Completed, r.Batches, r.Outputs, r.DLQ, r.Retries, r.PluginRestarts)
	order := ""
	if !v.OrderChecked {
		order = " (ordering none: not a failure)"
	}
	if r.OutputTopic != "" {
		row("verified", "%d outputs in %s: lost %d, duplicated %d, reordered %d%s, unexpected %d",
			v.Received, r.OutputTopic, r.Lost, r.Duplicated, r.Reordered, order, v.Unexpected)
	} else {
		row("verified", "counts only (the handler has no outputs): lost %d", r.Lost)
	}
	row("committed", "%v", r.CommittedToEnd)
	verdict := "OK"
	if !r.OK {
		verdict = "FAILED"
	}
	row("result", "%s", verdict)
	for _, p := range r.Problems {
		row("", "%s", p)
	}
	tw.Flush()
}
