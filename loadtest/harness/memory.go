package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// MemoryOptions configure Memory. Zero values take the defaults.
type MemoryOptions struct {
	// Exe is the weir executable to run (`weir run`); required.
	Exe        string
	Records    int           // waiting in the topic, default 1,000,000
	Size       int           // value bytes, default 100
	Partitions int           // default 8
	Keys       int           // default 1,000
	Duration   time.Duration // how long weir runs, default 30s
	// Sleep is how long the builtin noop handler takes per batch, so that
	// the records wait on it (default 50ms).
	Sleep time.Duration
	// MaxInflightBytes is the pipeline's max_inflight_bytes (default
	// weir's, 64 MiB).
	MaxInflightBytes int64
	// Log, if set, receives a line as each step starts.
	Log io.Writer
}

// MemoryHeadroomBudget is what the performance budget allows a weir process
// beyond its pipelines' max_inflight_bytes.
const MemoryHeadroomBudget = 64 << 20

// MemoryReport is what Memory measured.
type MemoryReport struct {
	Records          int     `json:"records"`
	Size             int     `json:"value_bytes"`
	Partitions       int     `json:"partitions"`
	Seconds          float64 `json:"seconds"`
	Sleep            string  `json:"handler_sleep"`
	MaxInflightBytes int64   `json:"max_inflight_bytes"`
	// BudgetBytes is MaxInflightBytes + 64 MiB.
	BudgetBytes int64 `json:"budget_bytes"`
	// PeakRSSBytes is the weir process's peak resident set (VmHWM).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// MedianRSSBytes is the median of its resident set sampled every
	// 100 ms once it had started.
	MedianRSSBytes int64 `json:"median_rss_bytes"`
	// Ratio is PeakRSSBytes / BudgetBytes: at most 1 is within budget.
	Ratio float64 `json:"ratio"`
	// HandlersPeakRSSBytes is the largest sum of the handler processes'
	// resident sets seen (user code, not in the budget).
	HandlersPeakRSSBytes int64 `json:"handlers_peak_rss_bytes"`
	// Committed is how many records the group committed when weir had
	// stopped: the run made progress, and stopped cleanly.
	Committed    int64 `json:"committed"`
	WithinBudget bool  `json:"within_budget"`
}

// Memory measures a weir process's memory when the input is produced far
// faster than the handler takes it: it seeds a topic with Records records on
// an in-process broker, then runs `weir run` (o.Exe, a process of its own,
// so that its resident set is weir's alone) over it for o.Duration with the
// builtin noop handler sleeping o.Sleep per batch, samples the process's
// resident set, stops it with SIGTERM, and reports the peak against the
// budget, max_inflight_bytes + 64 MiB.
func Memory(ctx context.Context, o MemoryOptions) (*MemoryReport, error) {
	if o.Exe == "" {
		return nil, errors.New("memory: no weir executable to run")
	}
	if o.Records == 0 {
		o.Records = 1_000_000
	}
	if o.Size == 0 {
		o.Size = 100
	}
	if o.Partitions == 0 {
		o.Partitions = 8
	}
	if o.Keys == 0 {
		o.Keys = 1000
	}
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.Sleep == 0 {
		o.Sleep = 50 * time.Millisecond
	}
	if o.MaxInflightBytes == 0 {
		o.MaxInflightBytes = 64 << 20
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", a...)
		}
	}

	emb, err := kafkasrc.StartEmbedded()
	if err != nil {
		return nil, fmt.Errorf("starting the in-process kafka broker: %w", err)
	}
	defer emb.Close()
	brokers := emb.Addrs()
	sfx := suffix()
	in, out, group := "memory-"+sfx+"-in", "memory-"+sfx+"-out", "memory-"+sfx
	if err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, int32(o.Partitions), in, out); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	gen := loadtest.NewGenerator(o.Size, o.Keys)
	logf("seeding %d records of %d bytes into %s (%d partitions) ...", o.Records, gen.Size(), in, o.Partitions)
	if err := loadtest.ProduceGenerated(ctx, cl, in, gen, o.Records, 0, nil); err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "weir-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "memory.yaml")
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%q] }
admin: { addr: "" }
pipelines:
  - name: memory
    source: { kafka: { topics: [%q], group: %q, start: earliest } }
    handler: { plugin: "builtin:noop", env: { WEIR_SLEEP: %q } }
    max_inflight_bytes: %d
    sinks: { out: { kafka: { topic: %q } } }
`, brokers[0], in, group, o.Sleep.String(), o.MaxInflightBytes, out)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		return nil, err
	}

	logf("running %s run for %s (noop handler sleeping %s per batch) ...", o.Exe, o.Duration, o.Sleep)
	cmd := exec.CommandContext(ctx, o.Exe, "run", "-c", cfgPath, "--log-level", "warn", "--log-format", "json")
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=") // weir's own soft limit, not one inherited
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	if o.Log == nil {
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.Exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	pid := cmd.Process.Pid
	var samples []int64
	var handlersPeak, peak int64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(o.Duration)
sampling:
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("weir run exited after %s: %v", time.Since(start).Round(time.Millisecond), err)
		case <-ctx.Done():
			<-exited
			return nil, ctx.Err()
		case <-deadline:
			break sampling
		case <-tick.C:
		}
		if rss := loadtest.StatusBytes(pid, "VmRSS:"); rss > 0 {
			samples = append(samples, rss)
		}
		peak = max(peak, loadtest.StatusBytes(pid, "VmHWM:"))
		var sum int64
		for _, c := range loadtest.Children(pid) {
			sum += loadtest.StatusBytes(c, "VmRSS:")
		}
		handlersPeak = max(handlersPeak, sum)
	}
	peak = max(peak, loadtest.StatusBytes(pid, "VmHWM:"))
	seconds := time.Since(start).Seconds()
	logf("stopping weir run (SIGTERM) ...")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("stopping weir run: %w", err)
	}
	if err := <-exited; err != nil {
		return nil, fmt.Errorf("weir run did not stop cleanly: %w", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	committed, err := committedRecords(cctx, kadm.NewClient(cl), group, in)
	if err != nil {
		return nil, err
	}
	budget := o.MaxInflightBytes + MemoryHeadroomBudget
	rep := &MemoryReport{Records: o.Records, Size: gen.Size(), Partitions: o.Partitions, Seconds: seconds,
		Sleep: o.Sleep.String(), MaxInflightBytes: o.MaxInflightBytes, BudgetBytes: budget,
		PeakRSSBytes: peak, MedianRSSBytes: medianInt(samples), HandlersPeakRSSBytes: handlersPeak,
		Ratio: float64(peak) / float64(budget), Committed: committed}
	rep.WithinBudget = peak > 0 && peak <= budget && committed > 0
	return rep, nil
}

// committedRecords sums the group's committed offsets over topic.
func committedRecords(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	offs, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return 0, fmt.Errorf("reading %s's committed offsets: %w", group, err)
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n, nil
}

func medianInt(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// WriteTable prints r for a terminal.
func (r *MemoryReport) WriteTable(w io.Writer) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "records waiting\t%d × %d B, %d partitions\n", r.Records, r.Size, r.Partitions)
	fmt.Fprintf(tw, "handler\tbuiltin noop, %s per batch\n", r.Sleep)
	fmt.Fprintf(tw, "ran\t%.1f s, %d records committed\n", r.Seconds, r.Committed)
	fmt.Fprintf(tw, "budget\t%s (max_inflight_bytes %s + 64 MiB)\n", mib(r.BudgetBytes), mib(r.MaxInflightBytes))
	fmt.Fprintf(tw, "weir peak RSS\t%s (VmHWM)\n", mib(r.PeakRSSBytes))
	fmt.Fprintf(tw, "weir median RSS\t%s\n", mib(r.MedianRSSBytes))
	fmt.Fprintf(tw, "ratio to budget\t%.2f\n", r.Ratio)
	fmt.Fprintf(tw, "handler processes peak RSS\t%s (not in the budget)\n", mib(r.HandlersPeakRSSBytes))
	fmt.Fprintf(tw, "within budget\t%v\n", r.WithinBudget)
	tw.Flush()
}
