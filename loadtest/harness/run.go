// Package harness runs weir under load: `weir loadtest` (Run) generates
// records into a topic, runs a pipeline over them and verifies the outputs
// end to end; `weir loadtest bench` (Bench) compares weir with a plain
// franz-go consumer on one seeded topic. It is apart from package loadtest
// because it imports host, and host's own tests import loadtest.
package harness

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/plugins/builtin"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// Options configure Run. The zero value of each field takes its default.
type Options struct {
	Records    int     // default 100,000
	Size       int     // value bytes, default 100 (at least loadtest.MinValueSize)
	Keys       int     // key cardinality, default 1,000
	Partitions int     // of the input (and output) topic, default 8
	Rate       float64 // records/s; 0 = as fast as possible
	// Handler is a builtin handler: "echo" (default; outputs are verified)
	// or "noop" (no outputs: only counts and commits are verified).
	Handler string
	// Ordering is partition (default), key or none.
	Ordering  string
	MaxWait   time.Duration // batch.max_wait, default weir's (50ms)
	Instances int           // handler.instances, default weir's (2)
	// Config, if set, is the pipeline to run instead of a builtin one: its
	// first pipeline, with records produced into its first source topic.
	// Outputs are verified in OutputTopic when set (the handler must emit
	// one output per record carrying the input value, like echo); else only
	// counts and commits are.
	Config      *config.File
	OutputTopic string
	// Brokers of an external Kafka; empty starts an in-process one.
	Brokers []string
	Logger  zerolog.Logger
	// Progress, if set, is called about five times a second.
	Progress func(Progress)
	// Stall ends the run when nothing completes for this long; default 2m.
	Stall time.Duration
}

// Progress is a load test's state while it runs.
type Progress struct {
	Total     int
	Produced  int64
	Completed int64 // by the host's counters
	Verified  int64 // distinct outputs seen (0 without outputs)
	Elapsed   time.Duration
}

func (o *Options) defaults() error {
	if o.Records == 0 {
		o.Records = 100_000
	}
	if o.Size == 0 {
		o.Size = 100
	}
	if o.Keys == 0 {
		o.Keys = 1000
	}
	if o.Partitions == 0 {
		o.Partitions = 8
	}
	if o.Handler == "" {
		o.Handler = "echo"
	}
	if o.Ordering == "" {
		o.Ordering = string(config.OrderingPartition)
	}
	if o.Stall == 0 {
		o.Stall = 2 * time.Minute
	}
	var errs []error
	if o.Records < 1 || o.Keys < 1 || o.Partitions < 1 || o.Size < 0 || o.Rate < 0 || o.Instances < 0 || o.MaxWait < 0 {
		errs = append(errs, errors.New("records, keys and partitions must be at least 1; size, rate, instances and max-wait not negative"))
	}
	if o.Config == nil && o.Handler != "echo" && o.Handler != "noop" {
		errs = append(errs, fmt.Errorf("handler %q: want echo or noop", o.Handler))
	}
	switch config.Ordering(o.Ordering) {
	case config.OrderingPartition, config.OrderingKey, config.OrderingNone:
	default:
		errs = append(errs, fmt.Errorf("ordering %q: want partition, key or none", o.Ordering))
	}
	return errors.Join(errs...)
}

// BuiltinNames lists the builtin handler names, for config.WithBuiltins.
func BuiltinNames() []string {
	var names []string
	for n := range builtin.Handlers() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// suffix makes topic and group names unique to a run.
func suffix() string { return strconv.FormatInt(time.Now().UnixNano()%1e10, 36) }

// pipelineYAML is a one-pipeline config over topic in with a builtin
// handler writing to sink "out" (topic out). redis, if not empty, is the
// address of the Redis holding idempotency marks.
func pipelineYAML(in, out, group, handler, ordering string, maxWait time.Duration, instances int, redis, redisPrefix string) string {
	var b strings.Builder
	b.WriteString("version: 1\nkafka: { brokers: [embedded] }\n")
	if redis != "" {
		fmt.Fprintf(&b, "redis: { addr: %q, key_prefix: %q }\n", redis, redisPrefix)
	}
	fmt.Fprintf(&b, "pipelines:\n  - name: loadtest\n")
	fmt.Fprintf(&b, "    source: { kafka: { topics: [%q], group: %q, start: earliest } }\n", in, group)
	if maxWait > 0 {
		fmt.Fprintf(&b, "    batch: { max_wait: %s }\n", maxWait)
	}
	fmt.Fprintf(&b, "    handler: { plugin: \"builtin:%s\", timeout: 30s", handler)
	if instances > 0 {
		fmt.Fprintf(&b, ", instances: %d", instances)
	}
	b.WriteString(" }\n")
	fmt.Fprintf(&b, "    ordering: %s\n", ordering)
	if redis != "" {
		b.WriteString("    idempotency: { key: position }\n")
	}
	fmt.Fprintf(&b, "    sinks: { out: { kafka: { topic: %q } } }\n", out)
	b.WriteString("    shutdown_timeout: 30s\n")
	return b.String()
}

// Run runs one load test. The error is for a test that could not run (no
// broker, a bad option, a pipeline that failed or stalled); a test that ran
// and found records lost, duplicated or reordered returns a Report with OK
// false.
func Run(ctx context.Context, o Options) (*loadtest.Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	gen := loadtest.NewGenerator(o.Size, o.Keys)
	sfx := suffix()
	in, out, group := "loadtest-"+sfx+"-in", "loadtest-"+sfx+"-out", "loadtest-"+sfx
	handlerName := o.Handler
	verifyOutputs := o.Handler == "echo"

	var cfg *config.File
	if o.Config != nil {
		cfg = o.Config
		pc := &cfg.Pipelines[0]
		if pc.Source.Kafka == nil || len(pc.Source.Kafka.Topics) == 0 {
			return nil, errors.New("the config's first pipeline has no Kafka source")
		}
		in, group = pc.Source.Kafka.Topics[0], pc.Source.Kafka.Group
		out, verifyOutputs = o.OutputTopic, o.OutputTopic != ""
		handlerName = pc.Handler.Plugin
		o.Ordering = string(pc.Ordering)
	} else {
		y := pipelineYAML(in, out, group, o.Handler, o.Ordering, o.MaxWait, o.Instances, "", "")
		var err error
		if cfg, err = config.Parse("loadtest.yaml", []byte(y), config.WithBuiltins(BuiltinNames()...)); err != nil {
			return nil, fmt.Errorf("the generated pipeline config is invalid: %w", err)
		}
	}

	brokers := o.Brokers
	if len(brokers) == 0 {
		emb, err := kafkasrc.StartEmbedded(kafkasrc.WithTopic(in, int32(o.Partitions)))
		if err != nil {
			return nil, fmt.Errorf("starting the in-process kafka broker: %w", err)
		}
		defer emb.Close()
		brokers = emb.Addrs()
	}
	topics := []string{in}
	if verifyOutputs {
		topics = append(topics, out)
	}
	if err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, int32(o.Partitions), topics...); err != nil {
		return nil, fmt.Errorf("creating topics: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(2*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return nil, fmt.Errorf("creating the producing client: %w", err)
	}
	defer cl.Close()

	rep := &loadtest.Report{
		Records: o.Records, ValueSize: gen.Size(), Keys: o.Keys, Partitions: o.Partitions, Rate: o.Rate,
		Handler: handlerName, Ordering: o.Ordering, Brokers: strings.Join(brokers, ","), Embedded: len(o.Brokers) == 0,
		InputTopic: in,
	}
	if verifyOutputs {
		rep.OutputTopic = out
		rep.LatencyBasis = "producer timestamp in the value -> output record's Kafka timestamp, set by weir's sink when it writes the output"
	} else {
		rep.LatencyBasis = "not measured: no outputs to read"
	}

	// The pipeline, ready (every partition assigned) before producing, so
	// its start-up is not counted as latency.
	var assigned atomic.Int64
	ready := make(chan struct{})
	var readyOnce sync.Once
	h := host.New(cfg, host.Options{Logger: o.Logger, KafkaBrokers: brokers, OnEvent: func(e host.Event) {
		if e.Kind == host.EventAssigned && assigned.Add(1) >= int64(o.Partitions) {
			readyOnce.Do(func() { close(ready) })
		}
	}})
	sampler := loadtest.StartProcSampler(100 * time.Millisecond)
	runCtx, stopHost := context.WithCancel(ctx)
	defer stopHost()
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(runCtx) }()
	select {
	case <-ready:
	case err := <-runErr:
		return nil, fmt.Errorf("pipeline stopped at start: %w", err)
	case <-time.After(30 * time.Second):
		o.Logger.Warn().Int64("assigned", assigned.Load()).Msg("not every partition was assigned within 30s; producing anyway")
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	start := time.Now()
	ver := loadtest.NewVerifier(o.Records, o.Ordering != string(config.OrderingNone), start)
	var verified atomic.Int64
	verDone := make(chan struct{})
	verCtx, stopVerifier := context.WithCancel(ctx)
	defer stopVerifier()
	var lastVerified atomic.Int64 // unix ns when the last expected record was seen
	if verifyOutputs {
		vcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(out),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(20*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("creating the verifying client: %w", err)
		}
		defer vcl.Close()
		go func() {
			defer close(verDone)
			for verCtx.Err() == nil {
				fs := vcl.PollFetches(verCtx)
				now := time.Now()
				fs.EachRecord(func(r *kgo.Record) { ver.Observe(r.Key, r.Value, r.Timestamp, now) })
				if u := ver.Unique(); u != verified.Load() {
					verified.Store(u)
					if u >= int64(o.Records) {
						lastVerified.CompareAndSwap(0, now.UnixNano())
					}
				}
			}
		}()
	} else {
		close(verDone)
	}

	var produced atomic.Int64
	prodErr := make(chan error, 1)
	var produceS atomic.Int64
	go func() {
		err := loadtest.ProduceGenerated(ctx, cl, in, gen, o.Records, o.Rate, &produced)
		produceS.Store(int64(time.Since(start)))
		prodErr <- err
	}()

	stats := func() host.Snapshot {
		if s := h.Stats(); len(s) > 0 {
			return s[0]
		}
		return host.Snapshot{}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var (
		snap         host.Snapshot
		lastDone     int64
		lastProgress = time.Now()
		prevAt       = start
		prevProduced int64
		prevDone     int64
		end          time.Time
		failure      error
	)
	done := func() bool {
		if verifyOutputs {
			return verified.Load() >= int64(o.Records)
		}
		return snap.Completed >= int64(o.Records)
	}
wait:
	for {
		select {
		case err := <-runErr:
			runErr <- err // read again below
			if err == nil {
				err = errors.New("pipeline stopped before every record was handled")
			}
			failure = err
			break wait
		case err := <-prodErr:
			if err != nil {
				failure = err
				break wait
			}
		case <-ctx.Done():
			failure = ctx.Err()
			break wait
		case <-tick.C:
		}
		snap = stats()
		now := time.Now()
		p, c := produced.Load(), snap.Completed
		if dt := now.Sub(prevAt).Seconds(); dt > 0 {
			rep.Throughput = append(rep.Throughput, loadtest.RatePoint{AtS: now.Sub(start).Seconds(),
				Produced: float64(p-prevProduced) / dt, Completed: float64(c-prevDone) / dt})
		}
		prevAt, prevProduced, prevDone = now, p, c
		progress := max(c, verified.Load())
		if progress > lastDone {
			lastDone, lastProgress = progress, now
		} else if now.Sub(lastProgress) > o.Stall {
			failure = fmt.Errorf("no progress for %s at %d of %d records", o.Stall, progress, o.Records)
			break wait
		}
		if o.Progress != nil {
			o.Progress(Progress{Total: o.Records, Produced: p, Completed: c, Verified: verified.Load(), Elapsed: now.Sub(start)})
		}
		if done() {
			end = now
			if ns := lastVerified.Load(); verifyOutputs && ns != 0 {
				end = time.Unix(0, ns)
			}
			break wait
		}
	}
	stopHost()
	stopErr := <-runErr
	if failure == nil && stopErr != nil {
		failure = fmt.Errorf("shutting down: %w", stopErr)
	}
	// Let the verifier catch late duplicates, then stop it.
	if verifyOutputs {
		time.Sleep(300 * time.Millisecond)
	}
	stopVerifier()
	<-verDone
	rep.Resources = sampler.Stop()
	if failure != nil {
		return nil, failure
	}

	snap = stats()
	elapsed := end.Sub(start)
	rep.DurationS = elapsed.Seconds()
	rep.ProduceS = time.Duration(produceS.Load()).Seconds()
	rep.RecordsPerS = float64(o.Records) / elapsed.Seconds()
	rep.MBPerS = float64(o.Records) * float64(gen.Size()) / elapsed.Seconds() / 1e6
	rep.Completed, rep.Outputs, rep.Batches, rep.DLQ, rep.Retries, rep.PluginRestarts =
		snap.Completed, snap.Outputs, snap.Batches, snap.DLQ, snap.Retries, snap.PluginRestarts

	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lags, err := loadtest.Uncommitted(cctx, kadm.NewClient(cl), group, in)
	if err != nil {
		return nil, err
	}
	rep.CommittedToEnd = len(lags) == 0
	if verifyOutputs {
		rep.Verification = ver.Result()
	} else {
		// Without outputs, the host's counters and the committed offsets
		// are all there is to check.
		rep.Verification = loadtest.Verification{Expected: int64(o.Records), Unique: min(snap.Completed, int64(o.Records)),
			Lost: max(int64(o.Records)-snap.Completed, 0), OrderChecked: false}
	}
	v := &rep.Verification
	rep.Lost, rep.Duplicated, rep.Reordered = v.Lost, v.Duplicated, v.Reordered
	rep.OK = v.OK() && rep.CommittedToEnd
	if !rep.CommittedToEnd {
		rep.Problems = append(rep.Problems, fmt.Sprintf("group %s not committed to the end of %s: %+v", group, in, lags))
	}
	if v.Lost > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d records lost, e.g. %v", v.Lost, v.LostSample))
	}
	if v.Duplicated > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d records duplicated, e.g. %v", v.Duplicated, v.DupSample))
	}
	if v.Reordered > 0 && v.OrderChecked {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d records out of order per key, e.g. %v", v.Reordered, v.ReorderSample))
	}
	if v.Unexpected > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d outputs that are not generated records, e.g. %v", v.Unexpected, v.UnexpectedSample))
	}
	return rep, nil
}
