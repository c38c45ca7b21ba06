package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/loadtest/harness"
)

func newLoadtestCmd(g *globalFlags) *cobra.Command {
	var (
		o       harness.Options
		cfgPath string
		brokers string
		asJSON  bool
		html    string
		profile string
	)
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Push generated records through a pipeline and verify them end to end",
		Long: `Loadtest generates records into a topic (on an in-process broker unless
--brokers is given), runs a pipeline over them (the builtin echo or noop
handler as a plugin subprocess, or the first pipeline of --config) and
verifies the outputs: nothing lost, nothing duplicated, per-key order kept.
It reports throughput, end-to-end latency (the producer timestamp carried in
each value to the output record's timestamp, set by weir's sink when it
writes it), peak RSS of weir and its plugin processes, and CPU time.
Exit status 1 when anything was lost, duplicated or reordered.

With the noop handler there are no outputs: only the host's counts and the
committed offsets are verified, and latency is not measured. With --config,
the handler must emit one output per record carrying its value (like echo)
to --output-topic for the outputs to be verified.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Records < 1 || o.Keys < 1 || o.Partitions < 1 {
				return errors.New("--records, --keys and --partitions must be at least 1")
			}
			if !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn" // keep the terminal for the progress bar
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			o.Logger = log
			if brokers != "" {
				o.Brokers = strings.Split(brokers, ",")
			}
			if cfgPath != "" {
				if o.Config, err = loadConfig(cfgPath, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			stderr := cmd.ErrOrStderr()
			tty := false
			if f, ok := stderr.(*os.File); ok && !asJSON {
				tty = isatty.IsTerminal(f.Fd())
			}
			if tty {
				o.Progress = func(p harness.Progress) { loadtestProgress(stderr, p) }
			}
			stopProfile, err := startCPUProfile(profile)
			if err != nil {
				return err
			}
			rep, err := harness.Run(cmd.Context(), o)
			stopProfile()
			if tty {
				fmt.Fprint(stderr, "\r\033[K")
			}
			if err != nil {
				return err
			}
			if html != "" {
				if err := writeHTMLReport(html, rep); err != nil {
					return err
				}
			}
			if asJSON {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(rep); err != nil {
					return err
				}
			} else {
				rep.WriteTable(cmd.OutOrStdout())
			}
			if !rep.OK {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Records, "records", 100_000, "records to generate")
	f.Float64Var(&o.Rate, "rate", 0, "records per second to produce (0: as fast as possible)")
	f.IntVar(&o.Size, "size", 100, fmt.Sprintf("value size in bytes (at least %d)", loadtest.MinValueSize))
	f.IntVar(&o.Keys, "keys", 1000, "distinct keys")
	f.IntVar(&o.Partitions, "partitions", 8, "partitions of the input and output topics")
	f.StringVar(&o.Handler, "handler", "echo", "builtin handler: echo (outputs verified) or noop (counts verified)")
	f.StringVar(&cfgPath, "config", "", "run the first pipeline of this config file instead of a builtin handler")
	f.StringVar(&o.OutputTopic, "output-topic", "", "with --config: the topic whose outputs to verify")
	f.StringVar(&o.Ordering, "ordering", string(config.OrderingPartition), "ordering of the builtin pipeline: partition, key or none")
	f.DurationVar(&o.MaxWait, "max-wait", 0, "batch.max_wait of the builtin pipeline (default weir's)")
	f.IntVar(&o.Instances, "instances", 0, "handler.instances of the builtin pipeline (default weir's)")
	f.StringVar(&brokers, "brokers", "", "comma-separated brokers of an external Kafka (default: an in-process broker)")
	f.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	f.StringVar(&html, "html", "", "also write a self-contained HTML report with charts to this file")
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile of this process (host, broker, clients) to this file")
	cmd.AddCommand(newBenchCmd(g), newMemoryCmd())
	return cmd
}

// printReport writes rep to the command's output as one JSON object, or as
// a table after a blank line; the command then exits 1 unless ok.
func printReport(cmd *cobra.Command, rep interface{ WriteTable(io.Writer) }, asJSON, ok bool) error {
	if asJSON {
		if err := json.NewEncoder(cmd.OutOrStdout()).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(cmd.OutOrStdout())
		rep.WriteTable(cmd.OutOrStdout())
	}
	if !ok {
		return exitError{1}
	}
	return nil
}

func newMemoryCmd() *cobra.Command {
	var (
		o      harness.MemoryOptions
		asJSON bool
		limit  string
	)
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Measure weir's peak memory when records arrive far faster than the handler takes them",
		Long: `Memory seeds a topic on an in-process broker with --records records, then runs
this executable's "weir run" (a process of its own, so its resident set is
weir's alone) over it for --duration, with the builtin noop handler sleeping
--sleep per batch so the records wait on it. It samples the process's
resident set and prints its peak (VmHWM) against the budget,
max_inflight_bytes + 64 MiB, as a ratio. It exits 1 if the peak is over the
budget or nothing was committed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the weir executable: %w", err)
			}
			o.Exe = exe
			if limit != "" {
				n, err := config.ParseSize(limit)
				if err != nil {
					return fmt.Errorf("--max-inflight-bytes: %w", err)
				}
				o.MaxInflightBytes = n
			}
			if !asJSON {
				o.Log = cmd.ErrOrStderr()
			}
			rep, err := harness.Memory(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printReport(cmd, rep, asJSON, rep.WithinBudget)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Records, "records", 1_000_000, "records waiting in the topic")
	f.IntVar(&o.Size, "size", 100, "value size in bytes")
	f.IntVar(&o.Partitions, "partitions", 8, "partitions of the topic")
	f.DurationVar(&o.Duration, "duration", 30*time.Second, "how long weir runs")
	f.DurationVar(&o.Sleep, "sleep", 50*time.Millisecond, "how long the noop handler takes per batch")
	f.StringVar(&limit, "max-inflight-bytes", "", "the pipeline's max_inflight_bytes (default weir's, 64MiB)")
	f.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// loadtestProgress draws one line: a bar of the records complete, and rates.
func loadtestProgress(w io.Writer, p harness.Progress) {
	done := max(p.Completed, p.Verified)
	frac := min(float64(done)/float64(max(p.Total, 1)), 1)
	const width = 30
	n := int(frac * width)
	rate := float64(done) / max(p.Elapsed.Seconds(), 1e-3)
	fmt.Fprintf(w, "\r\033[K[%s%s] %3.0f%%  %d/%d complete  %d produced  %.0f records/s  %s",
		strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, done, p.Total, p.Produced, rate,
		p.Elapsed.Truncate(100*time.Millisecond))
}

func writeHTMLReport(path string, rep *loadtest.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	if err := loadtest.WriteHTML(f, rep); err != nil {
		f.Close()
		return fmt.Errorf("writing the HTML report %s: %w", path, err)
	}
	return f.Close()
}

func newBenchCmd(g *globalFlags) *cobra.Command {
	var (
		o            harness.BenchOptions
		asJSON       bool
		profile      string
		blockProfile string
		mutexProfile string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure weir against a plain franz-go consumer on one seeded topic",
		Long: `Bench seeds a topic per value size on one in-process broker and measures,
each with a fresh consumer group over the same topic:
  1. a plain franz-go consumer-group client draining it (the limit);
  2. weir with the builtin noop plugin handler, ordering partition;
  3. the same, ordering key;
  4. weir with idempotency marks in Redis (position keys): a redis-server
     from PATH started for the run, else miniredis in process.
It prints records/s of each and the ratio to (1). Rates count from the
client's start (group join; for weir also the plugin processes' start) to
the last record complete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn"
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			o.Logger = log
			if !asJSON {
				o.Log = cmd.ErrOrStderr()
			}
			stopProfile, err := startCPUProfile(profile)
			if err != nil {
				return err
			}
			stopContention := startContentionProfiles(blockProfile, mutexProfile)
			rep, err := harness.Bench(cmd.Context(), o)
			stopProfile()
			if perr := stopContention(); perr != nil && err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			return printReport(cmd, rep, asJSON, rep.OK)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Records, "records", 1_000_000, "records per value size")
	f.IntSliceVar(&o.Sizes, "sizes", []int{100, 1024}, "value sizes in bytes")
	f.IntVar(&o.Partitions, "partitions", 8, "partitions of the seeded topic")
	f.IntVar(&o.Keys, "keys", 1000, "distinct keys")
	f.StringVar(&o.Redis, "redis", "", "address of the Redis for measurement 4 (default: start redis-server from PATH)")
	f.BoolVar(&asJSON, "json", false, "print the results as one JSON object")
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile of this process (host, broker, clients) to this file")
	f.IntVar(&o.Rounds, "rounds", 1, "repeat the measurements this many times, each round against its own limit")
	f.StringSliceVar(&o.Only, "only", nil, "run only these weir measurements (partition, key, redis); the limit always runs")
	f.StringVar(&blockProfile, "blockprofile", "", "write a blocking profile of this process to this file")
	f.StringVar(&mutexProfile, "mutexprofile", "", "write a mutex contention profile of this process to this file")
	return cmd
}

// startContentionProfiles turns on the runtime's blocking and mutex
// profiling for the paths that are set, and returns the function that
// writes them.
func startContentionProfiles(blockPath, mutexPath string) func() error {
	if blockPath != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	}
	if mutexPath != "" {
		runtime.SetMutexProfileFraction(10)
	}
	return func() error {
		var errs []error
		for _, p := range []struct{ name, path string }{{"block", blockPath}, {"mutex", mutexPath}} {
			if p.path == "" {
				continue
			}
			f, err := os.Create(p.path)
			if err == nil {
				err = pprof.Lookup(p.name).WriteTo(f, 0)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("--%sprofile: %w", p.name, err))
			}
		}
		return errors.Join(errs...)
	}
}

// startCPUProfile starts profiling to path (nothing if empty) and returns
// the function that stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
