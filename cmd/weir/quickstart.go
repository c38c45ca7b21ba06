package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// quickstartSummary is what `weir quickstart --json` prints.
type quickstartSummary struct {
	Seeded        int     `json:"seeded"`
	RecordsIn     int64   `json:"records_in"`
	Outputs       int64   `json:"outputs"`
	Failed        int64   `json:"failed"`
	DLQ           int64   `json:"dlq"`
	Retries       int64   `json:"retries"`
	Batches       int64   `json:"batches"`
	DurationS     float64 `json:"duration_s"`
	RecordsPerS   float64 `json:"records_per_s"`
	Committed     bool    `json:"committed_to_end"`
	Accounted     bool    `json:"all_accounted_for"`
	Brokers       string  `json:"brokers"`
	SourceTopic   string  `json:"source_topic"`
	OutputTopic   string  `json:"output_topic"`
	DLQTopic      string  `json:"dlq_topic"`
	ReplayCommand string  `json:"replay_command"`
	HandlerPlugin string  `json:"handler"`
}

func newQuickstartCmd(g *globalFlags) *cobra.Command {
	var (
		records    int
		partitions int
		asJSON     bool
		keep       bool
	)
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run the IoT example end to end on an in-process Kafka, and summarize",
		Long: `Quickstart starts an in-process Kafka broker (franz-go's kfake) and Redis
(miniredis), seeds it with synthetic sensor readings (about 1% malformed),
and runs the IoT pipeline of examples/iot/weir.yaml over them with its handler
as a real plugin subprocess. It ends with a summary that accounts for every
record: an output in readings-enriched, or an envelope in the DLQ topic.
Exit status 0 when every record was accounted for and committed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if records < 1 || partitions < 1 {
				return errors.New("--records and --partitions must be at least 1")
			}
			if !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn" // keep the terminal for the progress line
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			return quickstart(cmd.Context(), quickstartOpts{
				records: records, partitions: partitions, json: asJSON, keep: keep,
				out: cmd.OutOrStdout(), progress: os.Stderr,
			}, log)
		},
	}
	cmd.Flags().IntVar(&records, "records", 100000, "sensor readings to seed")
	cmd.Flags().IntVar(&partitions, "partitions", 8, "partitions of the source topic")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the in-process broker up after the summary (until SIGINT), to inspect and replay the DLQ against it")
	return cmd
}

type quickstartOpts struct {
	records, partitions int
	json                bool
	keep                bool
	out                 io.Writer
	progress            *os.File
}

func quickstart(ctx context.Context, o quickstartOpts, log zerolog.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.Parse("examples/iot/weir.yaml", iot.Config,
		config.WithBuiltins(builtinNames()...),
		config.WithLookupEnv(func(string) (string, bool) { return "", false }))
	if err != nil {
		return fmt.Errorf("the embedded example config is invalid: %w", err)
	}
	pc := &cfg.Pipelines[0]
	src, group := pc.Source.Kafka.Topics[0], pc.Source.Kafka.Group
	outTopic, dlqTopic := pc.Sinks["enriched"].Kafka.Topic, pc.DLQ.Kafka.Topic

	emb, err := kafkasrc.StartEmbedded(kafkasrc.WithTopic(src, int32(o.partitions)))
	if err != nil {
		return fmt.Errorf("starting the in-process kafka broker: %w", err)
	}
	defer emb.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...), kgo.DefaultProduceTopic(src), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("creating the seeding client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	tty := !o.json && isatty.IsTerminal(o.progress.Fd())
	if tty {
		fmt.Fprintf(o.progress, "seeding %d sensor readings into %s (%d partitions) on %s ...\n", o.records, src, o.partitions, emb.Addrs()[0])
	}
	if err := loadtest.Produce(ctx, cl, src, o.records, func(i int) *kgo.Record {
		key, value := iot.Generate(1, i, 100)
		return &kgo.Record{Key: key, Value: value}
	}); err != nil {
		return err
	}

	// The status page on admin.addr, or on a free port if another process
	// has it: the quickstart shows where.
	cfg.Admin.Addr = adminAddrOrFree(cfg.Admin.Addr)
	h := host.New(cfg, host.Options{Logger: log, KafkaBrokers: emb.Addrs()})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	start := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(runCtx) }()

	var snap host.Snapshot
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastProgress, lastDone := time.Now(), int64(0)
	pageShown := false
wait:
	for {
		select {
		case err := <-runErr:
			if tty {
				fmt.Fprintln(o.progress)
			}
			if err == nil {
				err = errors.New("pipeline stopped before every record was handled")
			}
			return err
		case <-ctx.Done():
			stop()
			<-runErr
			return ctx.Err()
		case <-tick.C:
		}
		if s := h.Stats(); len(s) > 0 {
			snap = s[0]
		}
		if snap.Completed > lastDone {
			lastDone, lastProgress = snap.Completed, time.Now()
		} else if time.Since(lastProgress) > 2*time.Minute {
			stop()
			<-runErr
			return fmt.Errorf("no progress for 2 minutes at %d of %d records", snap.Completed, o.records)
		}
		if addr := h.AdminAddr(); tty && addr != "" && !pageShown {
			pageShown = true
			fmt.Fprintf(o.progress, "\r\033[Kstatus page: http://%s/\n", addr)
		}
		if tty {
			el := time.Since(start).Seconds()
			fmt.Fprintf(o.progress, "\r\033[K%7d / %d records · %d outputs · %d dead-lettered · %.0f records/s",
				snap.Completed, o.records, snap.Outputs, snap.DLQ, float64(snap.Completed)/el)
		}
		if snap.Completed >= int64(o.records) {
			break wait
		}
	}
	elapsed := time.Since(start)
	stop()
	if err := <-runErr; err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if tty {
		fmt.Fprintln(o.progress)
	}
	if s := h.Stats(); len(s) > 0 {
		snap = s[0]
	}

	sum := quickstartSummary{
		Seeded: o.records, RecordsIn: snap.RecordsIn, Failed: snap.Failures, Retries: snap.Retries, Batches: snap.Batches,
		DurationS: elapsed.Seconds(), RecordsPerS: float64(o.records) / elapsed.Seconds(),
		Brokers: emb.Addrs()[0], SourceTopic: src, OutputTopic: outTopic, DLQTopic: dlqTopic, HandlerPlugin: pc.Handler.Plugin,
	}
	// Count from the broker, not from our own counters.
	if sum.Outputs, err = loadtest.Count(ctx, adm, outTopic); err != nil {
		return err
	}
	if sum.DLQ, err = loadtest.Count(ctx, adm, dlqTopic); err != nil {
		return err
	}
	lags, err := loadtest.Uncommitted(ctx, adm, group, src)
	if err != nil {
		return err
	}
	sum.Committed = len(lags) == 0
	sum.ReplayCommand = fmt.Sprintf("weir dlq replay --brokers %s --topic %s", sum.Brokers, dlqTopic)
	sum.Accounted = sum.Outputs+sum.DLQ == int64(o.records)

	if o.json {
		enc := json.NewEncoder(o.out)
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		printSummary(o.out, sum, group)
	}
	if !sum.Accounted || !sum.Committed {
		if !o.json {
			fmt.Fprintf(o.out, "NOT all records accounted for (uncommitted partitions: %v)\n", lags)
		}
		return exitError{1}
	}
	if o.keep {
		return keepRunning(ctx, o, cfg, emb.Addrs(), sum, log)
	}
	return nil
}

// adminAddrOrFree returns addr if it can be listened on now, else a free
// loopback port ("127.0.0.1:0"); "off" stays off.
func adminAddrOrFree(addr string) string {
	if addr == "" || addr == "off" {
		return addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	ln.Close()
	return addr
}

// keepRunning keeps the broker up and the pipeline running on it (with its
// status page) until SIGINT or SIGTERM, so that a user can produce more
// readings, watch them on the page, and inspect and replay the DLQ.
func keepRunning(ctx context.Context, o quickstartOpts, cfg *config.File, brokers []string, sum quickstartSummary, log zerolog.Logger) error {
	sig, stopSig := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSig()
	cfg.Admin.Addr = adminAddrOrFree(cfg.Admin.Addr)
	h := host.New(cfg, host.Options{Logger: log, KafkaBrokers: brokers})
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(sig) }()
	page := "off (admin.addr could not listen; see the log)"
	for range 50 {
		if addr := h.AdminAddr(); addr != "" {
			page = "http://" + addr + "/"
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(o.progress, "\nThe in-process broker stays up at %s, and the pipeline keeps running on it, until you press Ctrl-C.\n"+
		"  status page: %s\n  produce more: kcat -P -b %s -t %s -k d-1 <<< '{\"device_id\":\"d-1\",\"temperature\":21.5,\"unit\":\"C\"}'\n"+
		"  the DLQ:      %s --dry-run\n",
		sum.Brokers, page, sum.Brokers, sum.SourceTopic, strings.Replace(sum.ReplayCommand, "weir ", "go run ./cmd/weir ", 1))
	if err := <-runErr; err != nil && sig.Err() == nil {
		return fmt.Errorf("the pipeline kept running after the summary stopped: %w", err)
	}
	return nil
}

func printSummary(w io.Writer, s quickstartSummary, group string) {
	fmt.Fprintf(w, `
weir quickstart: %d sensor readings through the iot-ingest pipeline
  handler      %s (a plugin subprocess)
  records in   %d
  outputs      %d  -> %s
  dead-letter  %d  -> %s  (malformed readings, with the reason in weir.* headers)
  retries      %d
  batches      %d
  committed    %v  (group %s at the end of %s)
  took         %.2fs  (%.0f records/s)
  accounted    %v  (outputs + dead-lettered = seeded)
`, s.Seeded, s.HandlerPlugin, s.RecordsIn, s.Outputs, s.OutputTopic, s.DLQ, s.DLQTopic, s.Retries, s.Batches,
		s.Committed, group, s.SourceTopic, s.DurationS, s.RecordsPerS, s.Accounted)
	fmt.Fprintf(w, `
Next:
  - the %d dead-lettered readings keep their key, value and headers, plus the
    reason in weir.* headers. Against a broker that outlives this process
    (quickstart --keep, weir run, or docker compose up), look at them and,
    after a fix, replay them:
      weir dlq inspect --brokers BROKERS --topic %s
      weir dlq replay  --brokers BROKERS --topic %s --dry-run
      weir dlq replay  --brokers BROKERS --topic %s
  - run the pipeline from its file against your own broker:
      KAFKA_BROKERS=localhost:9092 go run ./cmd/weir run -c examples/iot/weir.yaml
`, s.DLQ, s.DLQTopic, s.DLQTopic, s.DLQTopic)
}
