package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	kinesissink "github.com/weirhq/weir/sinks/kinesis"
	kinesissrc "github.com/weirhq/weir/sources/kinesis"
)

func newDLQCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay a dead-letter topic",
		Long: `A pipeline's DLQ topic holds the records that failed for good, each with
its original key, value and headers plus weir.* headers saying where it came
from and why it failed. "weir dlq inspect" summarizes a DLQ topic; "weir dlq
replay" sends its records back to where they came from, once the cause is
fixed.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDLQInspectCmd(g), newDLQReplayCmd(g))
	return cmd
}

// dlqFlags are the flags both subcommands take.
type dlqFlags struct {
	brokers     []string
	topic       string
	stream      string
	kinRegion   string
	kinEndpoint string
	json        bool
	config      string
}

func (f *dlqFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.brokers, "brokers", nil, "Kafka seed brokers, comma-separated (default: $KAFKA_BROKERS)")
	cmd.Flags().StringVar(&f.topic, "topic", "", "the DLQ topic (a Kafka DLQ; this or --stream)")
	cmd.Flags().StringVar(&f.stream, "stream", "", "the DLQ stream (a Kinesis DLQ, dlq.kinesis; this or --topic)")
	cmd.Flags().StringVar(&f.kinRegion, "kinesis-region", "", "AWS region of the Kinesis streams (default: the pipeline's whose dlq is --stream in --config, else the AWS SDK's)")
	cmd.Flags().StringVar(&f.kinEndpoint, "kinesis-endpoint", "", "Kinesis endpoint (kinesalite, LocalStack; default: as for --kinesis-region, else the region's)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the result as one JSON object")
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "take the Kafka connection (brokers, tls, sasl), the Redis of a Kinesis replay and a Kinesis DLQ's region and endpoint from this weir config file; flags override it")
}

// target checks that exactly one of --topic and --stream is given.
func (f *dlqFlags) target() error {
	switch {
	case f.topic == "" && f.stream == "":
		return errors.New("--topic (a Kafka DLQ) or --stream (a Kinesis DLQ): one is required")
	case f.topic != "" && f.stream != "":
		return errors.New("--topic and --stream: give one DLQ, not both")
	}
	return nil
}

// kinesis returns a Kinesis client for --stream and the streams replayed
// records go back to: --kinesis-region and --kinesis-endpoint, else those
// of the pipeline of cfg (may be nil) whose dlq is --stream.
func (f *dlqFlags) kinesis(ctx context.Context, cfg *config.File) (*kinesis.Client, error) {
	region, endpoint := f.kinRegion, f.kinEndpoint
	if cfg != nil {
		for _, p := range cfg.Pipelines {
			if k := p.DLQ; k != nil && k.Kinesis != nil && (&config.KinesisSource{Stream: k.Kinesis.Stream}).StreamName() == f.stream {
				region = cmp.Or(region, k.Kinesis.Region)
				endpoint = cmp.Or(endpoint, k.Kinesis.Endpoint)
				break
			}
		}
	}
	return kinesissrc.NewClient(ctx, kinesissrc.ClientConfig{Region: region, Endpoint: endpoint})
}

// connection returns the seed brokers and the client options (TLS, SASL)
// of --config, if given, with --brokers overriding its brokers.
func (f *dlqFlags) connection(cmd *cobra.Command, log zerolog.Logger) ([]string, []kgo.Opt, error) {
	if f.config == "" {
		bs, err := f.seeds()
		return bs, nil, err
	}
	cfg, err := loadConfig(f.config, cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	return f.connectionOf(cfg, log)
}

// connectionOf is connection with --config loaded already as cfg.
func (f *dlqFlags) connectionOf(cfg *config.File, log zerolog.Logger) ([]string, []kgo.Opt, error) {
	opts, err := host.KafkaSecurityOpts(cfg.Kafka, log)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.config, err)
	}
	bs := f.brokers
	if len(bs) == 0 {
		bs = cfg.Kafka.Brokers
	}
	if len(bs) == 0 || cfg.Kafka.Embedded() && len(f.brokers) == 0 {
		return nil, nil, fmt.Errorf("--brokers: required (%s has no kafka.brokers to reach from here)", f.config)
	}
	return bs, opts, nil
}

// seeds returns --brokers, or $KAFKA_BROKERS.
func (f *dlqFlags) seeds() ([]string, error) {
	bs := f.brokers
	if len(bs) == 0 {
		for _, b := range strings.Split(os.Getenv("KAFKA_BROKERS"), ",") {
			if b = strings.TrimSpace(b); b != "" {
				bs = append(bs, b)
			}
		}
	}
	if len(bs) == 0 {
		return nil, errors.New("--brokers: required (or set KAFKA_BROKERS)")
	}
	return bs, nil
}

// quietLogs keeps the terminal for results: warnings and errors only,
// unless --log-level was given.
func quietLogs(cmd *cobra.Command, g *globalFlags) {
	if !cmd.Flags().Changed("log-level") {
		g.logLevel = "warn"
	}
}

func newDLQInspectCmd(g *globalFlags) *cobra.Command {
	var (
		f       dlqFlags
		samples int
	)
	cmd := &cobra.Command{
		Use:   "inspect --brokers B --topic T | --stream S",
		Short: "Summarize a DLQ topic or stream: counts by pipeline, source and error class, and samples",
		Long: `Inspect reads the whole DLQ topic, from the start of each partition to its
end at the time of the call (read_committed), without a consumer group and
without committing anything, so it can run at any time. It reports how many
records failed, by pipeline, by source topic/partition and by error class,
the first and last failure time, and a few sample records with their key, the
start of their value and every header. Records that are not weir envelopes
are counted and listed by offset.

A Kinesis DLQ (dlq.kinesis) is inspected with --stream instead of --topic:
every shard is read from its oldest record to its tip at the time of the
call, and each record's data is decoded as a weir envelope. Region and
endpoint come from --kinesis-region and --kinesis-endpoint, or from the
pipeline of --config whose dlq is that stream; credentials from the AWS
SDK's chain.

It prints tables, or one JSON object with --json.`,
		Example: `  weir dlq inspect --brokers localhost:9092 --topic iot-ingest.dlq
  weir dlq inspect --config weir.yaml --stream clicks-dlq
  weir dlq inspect --brokers localhost:9092 --topic iot-ingest.dlq --json | jq .by_error_class`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.target(); err != nil {
				return err
			}
			if samples < 0 {
				return fmt.Errorf("--samples: %d must be at least 0", samples)
			} else if samples == 0 {
				samples = -1 // none
			}
			quietLogs(cmd, g)
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.stream != "" {
				var cfg *config.File
				if f.config != "" {
					if cfg, err = loadConfig(f.config, cmd.ErrOrStderr()); err != nil {
						return err
					}
				}
				api, err := f.kinesis(ctx, cfg)
				if err != nil {
					return err
				}
				rep, err := dlq.InspectKinesis(ctx, dlq.KinesisInspectConfig{API: api, Stream: f.stream, Samples: samples, Logger: log})
				if err != nil {
					return err
				}
				if f.json {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(rep)
				}
				return rep.WriteText(cmd.OutOrStdout())
			}
			brokers, opts, err := f.connection(cmd, log)
			if err != nil {
				return err
			}
			in, err := dlq.NewInspector(dlq.InspectConfig{Brokers: brokers, Topic: f.topic, Samples: samples, Logger: log, Client: opts})
			if err != nil {
				return err
			}
			rep, err := in.Inspect(ctx)
			if err != nil {
				return err
			}
			if f.json {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(rep)
			}
			return rep.WriteText(cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&samples, "samples", dlq.DefaultSamples, "sample records to show: the first of each pipeline and error class, then the latest (0: none)")
	return cmd
}

func newDLQReplayCmd(g *globalFlags) *cobra.Command {
	var (
		f                       dlqFlags
		cfg                     dlq.ReplayConfig
		since, until, key, rate string
		redisAddr               string
	)
	cmd := &cobra.Command{
		Use:   "replay --brokers B --topic T | --stream S",
		Short: "Send DLQ records back to their original topic (or --to another)",
		Long: `Replay reads the DLQ topic up to its end at the start of the run (it does
not wait for more) and re-produces each selected record to the topic it came
from (weir.source.stream), or to --to: its original key, value, headers and
timestamp, every weir.* header removed, plus weir.replay-count (one more than
before) and weir.replay.source-position (stream/partition/offset of the record
that failed), from which a pipeline derives the original's idempotency key.
A record of a Kinesis pipeline (its weir.source.partition is a shard id)
goes back to its stream with PutRecords, its key as partition key
(--kinesis-region, --kinesis-endpoint; credentials from the AWS SDK's
chain). Kinesis records have no headers, so its weir.replay-count does not
travel with it: from a topic, --max-replays cannot stop it looping; from a
Kinesis DLQ (--stream), a ledger in Redis counts its replays instead.
Records go through an idempotent producer, at most --rate per second.

Resumable. Replay reads with a consumer group and commits the offsets of each
batch once every record of it is acknowledged by the broker, never before. A
second run of the same replay continues where the first stopped (after
Ctrl-C, or with the records dead-lettered since) and replays nothing twice.

Every record it reads is committed in its group: the replayed ones, those the
filters skipped, those refused, and those that are not weir envelopes. So
that skipping a record with one filter does not hide it from a replay with
another filter, the default group depends on the filters and on --to:
  weir-replay.<topic>          no filter, no --to
  weir-replay.<topic>.<hash>   otherwise (the same filters give the same hash)
A replay with other filters therefore starts from the beginning of the topic
and, if the filters overlap, replays again what an earlier one replayed; the
weir.replay.source-position header lets the pipeline recognize those. Name a
group with --group to share progress between different filters.

Filters (all must match): --pipeline and --error-class match weir.pipeline and
weir.error.class exactly; --since (inclusive) and --until (exclusive) bound the
last failure time (weir.failure.last), as RFC 3339 times or dates (UTC);
--key is a regular expression over the record's key.

A record already replayed --max-replays times (weir.replay-count) is refused:
counted, listed and committed, never produced, so a record that keeps failing
cannot loop. --dry-run reads from where the group stands and reports what
would be replayed, without producing, committing or joining the group.

A Kinesis DLQ (dlq.kinesis) is replayed with --stream instead of --topic:
each shard is read from its checkpoint to its tip at the start of the run,
parents before children. Records of Kinesis pipelines go back to their
stream (key as partition key, value only), records of Kafka pipelines to
their topic and partition (--brokers), and every record to --to (a Kafka
topic) when given. Progress is a sequence number per shard, kept in Redis
(--redis, or the redis section of --config) under the group's name and
written once every record of a batch is acknowledged; a lock in Redis
refuses a second replay of the same group while one runs. Ctrl-C finishes
and checkpoints the batch in hand, so the same command run again continues
with the next record.

A progress bar shows on a terminal; a summary ends the run (replayed, skipped
by filter, refused, not envelopes), as one JSON object with --json.`,
		Example: `  weir dlq replay --brokers localhost:9092 --topic iot-ingest.dlq --dry-run
  weir dlq replay --brokers localhost:9092 --topic iot-ingest.dlq --error-class invalid_input --since 2026-11-26T06:00:00Z
  weir dlq replay --brokers localhost:9092 --topic iot-ingest.dlq --key '^d-17$' --to sensor-readings-staging --rate 100/s
  weir dlq replay --config weir.yaml --stream clicks-dlq --error-class invalid_input`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.target(); err != nil {
				return err
			}
			var err error
			if f.config == "" && f.stream == "" {
				if cfg.Brokers, err = f.seeds(); err != nil {
					return err
				}
			}
			cfg.Topic = f.topic
			if cfg.Filter.Since, err = parseTimeFlag("--since", since); err != nil {
				return err
			}
			if cfg.Filter.Until, err = parseTimeFlag("--until", until); err != nil {
				return err
			}
			if key != "" {
				if cfg.Filter.Key, err = regexp.Compile(key); err != nil {
					return fmt.Errorf("--key: %q is not a regular expression: %w", key, err)
				}
			}
			if cfg.Rate, err = parseRate(rate); err != nil {
				return err
			}
			if cfg.MaxReplays < 1 {
				return fmt.Errorf("--max-replays: %d must be at least 1", cfg.MaxReplays)
			}
			if !cfg.Filter.Since.IsZero() && !cfg.Filter.Until.IsZero() && !cfg.Filter.Since.Before(cfg.Filter.Until) {
				return fmt.Errorf("--since %s is not before --until %s", since, until)
			}
			quietLogs(cmd, g)
			if cfg.Logger, err = g.logger(os.Stderr); err != nil {
				return err
			}
			if f.config != "" && f.stream == "" {
				if cfg.Brokers, cfg.Client, err = f.connection(cmd, cfg.Logger); err != nil {
					return err
				}
			}
			var bar *progressBar
			if !f.json && isatty.IsTerminal(os.Stderr.Fd()) {
				bar = &progressBar{w: os.Stderr, dryRun: cfg.DryRun}
				cfg.Progress = bar.update
			}
			// Records of Kinesis pipelines go back to their stream; the
			// AWS client is made only if one is met.
			cfg.Kinesis = &kinesissink.Streams{API: func(ctx context.Context) (kinesissink.API, error) {
				return kinesissrc.NewClient(ctx, kinesissrc.ClientConfig{Region: f.kinRegion, Endpoint: f.kinEndpoint})
			}}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var (
				sum    *dlq.ReplaySummary
				runErr error
			)
			if f.stream != "" {
				var closeFn func()
				sum, runErr, closeFn, err = replayKinesis(ctx, cmd, &f, cfg, redisAddr)
				defer closeFn()
				if err != nil {
					return err
				}
			} else {
				rp, err := dlq.NewReplayer(cfg)
				if err != nil {
					return err
				}
				sum, runErr = rp.Run(ctx)
			}
			if bar != nil {
				bar.finish()
			}
			if f.json {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(sum); err != nil {
					return err
				}
			} else if err := sum.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if runErr != nil && ctx.Err() != nil {
				return fmt.Errorf("interrupted; what was replayed is committed, run the same command again to continue: %w", runErr)
			}
			return runErr
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&cfg.To, "to", "", "replay every record to this topic instead of its original one (it must exist)")
	fl.StringSliceVar(&cfg.ToBrokers, "to-brokers", nil, "seed brokers of the cluster to replay to, when the DLQ is on another one (default: --brokers)")
	fl.StringVar(&redisAddr, "redis", "", "host:port of the Redis that keeps a Kinesis DLQ replay's progress (default: the redis section of --config)")
	fl.StringVar(&cfg.Filter.Pipeline, "pipeline", "", "replay only records of this pipeline (weir.pipeline)")
	fl.StringVar(&cfg.Filter.ErrorClass, "error-class", "", "replay only records of this error class (weir.error.class)")
	fl.StringVar(&since, "since", "", "replay only records that last failed at or after this time: RFC 3339 or a date (UTC)")
	fl.StringVar(&until, "until", "", "replay only records that last failed before this time: RFC 3339 or a date (UTC)")
	fl.StringVar(&key, "key", "", "replay only records whose key matches this regular expression")
	fl.StringVar(&rate, "rate", "0", "at most this many records per second (N, N/s, N/m or N/h); 0: unlimited")
	fl.BoolVar(&cfg.DryRun, "dry-run", false, "report what would be replayed; produce nothing, commit nothing")
	fl.StringVar(&cfg.Group, "group", "", "consumer group (Kinesis DLQ: name of the checkpoints in Redis) that records progress (default: weir-replay.<topic or stream>, plus a hash of the filters and --to when given)")
	fl.IntVar(&cfg.MaxReplays, "max-replays", dlq.DefaultMaxReplays, "refuse records already replayed this many times (weir.replay-count)")
	return cmd
}

// parseTimeFlag parses an RFC 3339 time or a date (midnight UTC); "" is
// the zero time.
func parseTimeFlag(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s: %q is not a time; want RFC 3339 (2026-11-26T06:00:00Z) or a date (2026-11-26)", name, s)
}

// parseRate parses N, N/s, N/m or N/h into records per second.
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	per := map[string]float64{"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || per == 0 || n < 0 || math.IsNaN(n) || n > 1e9 {
		return 0, fmt.Errorf("--rate: %q is not a rate; want N, N/s, N/m or N/h with N >= 0 (0: unlimited)", s)
	}
	return n / per, nil
}

// progressBar draws a replay's progress on one terminal line, at most ten
// times a second.
type progressBar struct {
	w      io.Writer
	dryRun bool
	last   time.Time
	p      dlq.ReplayProgress
}

func (b *progressBar) update(p dlq.ReplayProgress) {
	b.p = p
	if time.Since(b.last) < 100*time.Millisecond && p.Read < p.Total {
		return
	}
	b.last = time.Now()
	b.draw()
}

func (b *progressBar) draw() {
	verb := "replayed"
	if b.dryRun {
		verb = "would replay"
	}
	if b.p.Total == 0 { // a Kinesis DLQ: its length is not known ahead
		fmt.Fprintf(b.w, "\r\033[Kread %d · %s %d · skipped %d · refused %d · not envelopes %d",
			b.p.Read, verb, b.p.Replayed, b.p.SkippedByFilter, b.p.Refused, b.p.Invalid)
		return
	}
	const width = 30
	frac := 1.0
	if b.p.Total > 0 {
		frac = float64(b.p.Read) / float64(b.p.Total)
	}
	fill := int(frac * width)
	fmt.Fprintf(b.w, "\r\033[K[%s%s] %3.0f%% %d/%d · %s %d · skipped %d · refused %d · not envelopes %d",
		strings.Repeat("#", fill), strings.Repeat("-", width-fill), frac*100, b.p.Read, b.p.Total,
		verb, b.p.Replayed, b.p.SkippedByFilter, b.p.Refused, b.p.Invalid)
}

// finish draws the last state and ends the line, if anything was drawn.
func (b *progressBar) finish() {
	if !b.last.IsZero() {
		b.draw()
		fmt.Fprintln(b.w)
	}
}

// replayKinesis replays the Kinesis DLQ stream f.stream with the options
// of cfg (filters, rate, --to, ...). Its progress is kept in Redis:
// --redis, else the redis section of --config. Kafka (records of Kafka
// pipelines, or --to) is reached with --brokers, --config or
// $KAFKA_BROKERS, when given. err is a set-up error; runErr the run's.
// closeFn releases the clients; it is never nil.
func replayKinesis(ctx context.Context, cmd *cobra.Command, f *dlqFlags, cfg dlq.ReplayConfig, redisAddr string) (sum *dlq.ReplaySummary, runErr error, closeFn func(), err error) {
	var closers []func()
	closeFn = func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	var file *config.File
	if f.config != "" {
		if file, err = loadConfig(f.config, cmd.ErrOrStderr()); err != nil {
			return nil, nil, closeFn, err
		}
	}
	api, err := f.kinesis(ctx, file)
	if err != nil {
		return nil, nil, closeFn, err
	}
	kcfg := dlq.KinesisReplayConfig{API: api, Stream: f.stream, Group: cfg.Group, To: cfg.To, Filter: cfg.Filter,
		Rate: cfg.Rate, MaxReplays: cfg.MaxReplays, DryRun: cfg.DryRun, Progress: cfg.Progress, Logger: cfg.Logger,
		Kinesis: &kinesissink.Streams{API: func(context.Context) (kinesissink.API, error) { return api, nil }}}
	switch {
	case redisAddr != "":
		cl := redis.NewClient(&redis.Options{Addr: redisAddr})
		closers = append(closers, func() { _ = cl.Close() })
		kcfg.Checkpoints = &dlq.RedisCheckpoints{Client: cl, Prefix: "weir:"}
	case file != nil && file.Redis.Configured():
		ck, closeRedis, err := host.ReplayCheckpoints(file)
		if err != nil {
			return nil, nil, closeFn, fmt.Errorf("--config: %w; give --redis", err)
		}
		closers = append(closers, func() { _ = closeRedis() })
		kcfg.Checkpoints = ck
	case !cfg.DryRun:
		return nil, nil, closeFn, errors.New("--redis: required to replay a Kinesis DLQ (or --config with a redis section): " +
			"the replay keeps its progress, a sequence number per shard, in Redis, so that a run stopped by Ctrl-C or a crash " +
			"continues where it stopped and two replays of one DLQ cannot run at once")
	}
	// Kafka, for records of Kafka pipelines and --to.
	brokers, opts := f.brokers, []kgo.Opt(nil)
	if file != nil && len(file.Kafka.Brokers) > 0 && !file.Kafka.Embedded() {
		if brokers, opts, err = f.connectionOf(file, cfg.Logger); err != nil {
			return nil, nil, closeFn, err
		}
	} else if len(brokers) == 0 {
		brokers, _ = f.seeds()
	}
	if len(brokers) > 0 {
		kcl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(dlq.ClientID)},
			dlq.ReplayProducerOpts(cfg.To)...), opts...)...)
		if err != nil {
			return nil, nil, closeFn, fmt.Errorf("creating the kafka producer: %w", err)
		}
		closers = append(closers, kcl.Close)
		kcfg.Kafka = kcl
	} else if cfg.To != "" {
		return nil, nil, closeFn, errors.New("--to: a Kafka topic; give --brokers (or --config, or set KAFKA_BROKERS)")
	}
	rp, err := dlq.NewKinesisReplayer(kcfg)
	if err != nil {
		return nil, nil, closeFn, err
	}
	sum, runErr = rp.Run(ctx)
	return sum, runErr, closeFn, nil
}
