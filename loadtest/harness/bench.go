package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// BenchOptions configure Bench. Zero values take the defaults.
type BenchOptions struct {
	Records    int   // per size, default 1,000,000
	Sizes      []int // value bytes, default 100 and 1024
	Partitions int   // default 8
	Keys       int   // default 1,000
	// Redis is the address of the Redis holding the idempotency marks of
	// measurement 4; "" starts a redis-server from PATH for the run (or,
	// when there is none, miniredis in process: "embedded").
	Redis string
	// Only, if not empty, names the weir measurements to run (by the
	// names MeasureNoop, MeasureNoopKey, MeasureIdempote or their short
	// forms "partition", "key", "redis"); the limit always runs, since
	// every ratio is to it. For iterating and profiling one measurement.
	Only []string
	// Rounds repeats the whole sequence of measurements on each topic,
	// each round with its own limit, so that a shared machine's noise
	// shows in the spread of the ratios. Default 1.
	Rounds int
	Logger zerolog.Logger
	// Log, if set, receives a line as each measurement starts and ends.
	Log io.Writer
}

// Measurement names, in the order Bench runs them.
const (
	MeasureRaw      = "franz-go consumer (limit)"
	MeasureNoop     = "weir noop, ordering partition"
	MeasureNoopKey  = "weir noop, ordering key"
	MeasureIdempote = "weir noop + redis marks (position)"
)

// BenchRow is one measurement.
type BenchRow struct {
	Size    int    `json:"value_bytes"`
	Round   int    `json:"round"`
	Name    string `json:"measurement"`
	Records int64  `json:"records"`
	// Seconds runs from creating the client (or starting the host: group
	// join and plugin processes included) to the last record complete.
	Seconds     float64 `json:"seconds"`
	RecordsPerS float64 `json:"records_per_s"`
	MBPerS      float64 `json:"mb_per_s"`
	Ratio       float64 `json:"ratio"` // to the franz-go consumer of the same size
	// CPUSeconds is the CPU time (user+system) this process and its
	// exited children used during the measurement: the in-process broker
	// serving the fetches, the client or host, and weir's plugin
	// processes (not the redis-server, which runs for the whole bench).
	// Less sensitive than the rates to other load on the machine.
	CPUSeconds         float64 `json:"cpu_s"`
	CPUMicrosPerRecord float64 `json:"cpu_us_per_record"`
	OK                 bool    `json:"ok"` // every record consumed (and, for weir, committed)
}

// BenchReport is what Bench measured.
type BenchReport struct {
	Records    int        `json:"records"`
	Partitions int        `json:"partitions"`
	Keys       int        `json:"keys"`
	Redis      string     `json:"redis"`
	CPUs       int        `json:"cpus"`
	GoVersion  string     `json:"go_version"`
	Rounds     int        `json:"rounds"`
	Rows       []BenchRow `json:"rows"`
	OK         bool       `json:"ok"`
}

// Bench seeds one topic per value size on one in-process broker and
// measures, on each, with a fresh consumer group per measurement: a plain
// franz-go consumer-group client draining it (the limit), weir with the
// noop plugin handler under ordering partition, then key, then with
// idempotency marks in Redis. Rates run from the client's (or host's) start
// to the last record complete; ratios are to the limit.
func Bench(ctx context.Context, o BenchOptions) (*BenchReport, error) {
	if o.Records == 0 {
		o.Records = 1_000_000
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{100, 1024}
	}
	if o.Partitions == 0 {
		o.Partitions = 8
	}
	if o.Keys == 0 {
		o.Keys = 1000
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.Records < 1 || o.Partitions < 1 || o.Keys < 1 || o.Rounds < 1 {
		return nil, errors.New("records, partitions, keys and rounds must be at least 1")
	}
	measures, err := selectMeasurements(o.Only)
	if err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", a...)
		}
	}
	rep := &BenchReport{Records: o.Records, Partitions: o.Partitions, Keys: o.Keys, Rounds: o.Rounds,
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OK: true}

	redisAddr := o.Redis
	if redisAddr == "" && slices.Contains(measures, MeasureIdempote) {
		addr, stop, err := startRedisServer()
		switch {
		case errors.Is(err, exec.ErrNotFound):
			redisAddr = "embedded"
			logf("redis-server is not on PATH: measuring marks in miniredis (in process)")
		case err != nil:
			return nil, err
		default:
			defer stop()
			redisAddr = addr
		}
	}
	rep.Redis = redisAddr

	emb, err := kafkasrc.StartEmbedded()
	if err != nil {
		return nil, fmt.Errorf("starting the in-process kafka broker: %w", err)
	}
	defer emb.Close()
	brokers := emb.Addrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	sfx := suffix()
	for _, size := range o.Sizes {
		topic := fmt.Sprintf("bench-%s-%d", sfx, size)
		if err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, int32(o.Partitions), topic); err != nil {
			return nil, err
		}
		gen := loadtest.NewGenerator(size, o.Keys)
		logf("seeding %d records of %d bytes into %s (%d partitions, %d keys) ...", o.Records, gen.Size(), topic, o.Partitions, o.Keys)
		if err := loadtest.ProduceGenerated(ctx, cl, topic, gen, o.Records, 0, nil); err != nil {
			return nil, err
		}
		for round := 1; round <= o.Rounds; round++ {
			if o.Rounds > 1 {
				logf("  round %d of %d", round, o.Rounds)
			}
			var limit float64
			for i, m := range measures {
				logf("  %s ...", m)
				group := fmt.Sprintf("%s-r%d-m%d", topic, round, i+1)
				var row BenchRow
				// Each measurement starts from a collected heap, so that
				// none pays for the garbage of the seeding or of the one
				// before it (the first limit of a run was slowed by the
				// seeding's, by a quarter at times).
				runtime.GC()
				cpuSelf0, cpuChildren0 := loadtest.CPUTimes()
				switch m {
				case MeasureRaw:
					row, err = benchConsumer(ctx, brokers, topic, group, o.Records)
				case MeasureNoop, MeasureNoopKey:
					ord := config.OrderingPartition
					if m == MeasureNoopKey {
						ord = config.OrderingKey
					}
					row, err = benchWeir(ctx, o.Logger, brokers, topic, group, string(ord), o.Records, "", "")
				case MeasureIdempote:
					row, err = benchWeir(ctx, o.Logger, brokers, topic, group, string(config.OrderingPartition), o.Records, redisAddr, "weir-bench:"+group+":")
				}
				if err != nil {
					return nil, fmt.Errorf("%s, %d-byte records: %w", m, size, err)
				}
				row.Size, row.Name, row.Round = gen.Size(), m, round
				cpuSelf, cpuChildren := loadtest.CPUTimes()
				row.CPUSeconds = cpuSelf - cpuSelf0 + cpuChildren - cpuChildren0
				if row.Records > 0 {
					row.CPUMicrosPerRecord = row.CPUSeconds * 1e6 / float64(row.Records)
				}
				row.MBPerS = row.RecordsPerS * float64(gen.Size()) / 1e6
				if m == MeasureRaw {
					limit = row.RecordsPerS
				}
				if limit > 0 {
					row.Ratio = row.RecordsPerS / limit
				}
				rep.OK = rep.OK && row.OK
				rep.Rows = append(rep.Rows, row)
				logf("  %s: %.0f records/s (%.2f of the limit)", m, row.RecordsPerS, row.Ratio)
			}
		}
		// Free the broker's memory before the next size.
		if _, err := adm.DeleteTopics(ctx, topic); err != nil {
			logf("deleting %s: %v", topic, err)
		}
	}
	return rep, nil
}

// shortNames are the short forms BenchOptions.Only accepts.
var shortNames = map[string]string{"partition": MeasureNoop, "key": MeasureNoopKey, "redis": MeasureIdempote}

// selectMeasurements returns the measurements to run, in order: the limit,
// then those of only (all when only is empty).
func selectMeasurements(only []string) ([]string, error) {
	all := []string{MeasureRaw, MeasureNoop, MeasureNoopKey, MeasureIdempote}
	if len(only) == 0 {
		return all, nil
	}
	want := map[string]bool{MeasureRaw: true}
	for _, name := range only {
		if long, ok := shortNames[name]; ok {
			name = long
		}
		if !slices.Contains(all, name) {
			return nil, fmt.Errorf("measurement %q: want partition, key or redis", name)
		}
		want[name] = true
	}
	return slices.DeleteFunc(all, func(m string) bool { return !want[m] }), nil
}

// benchConsumer drains topic with a plain franz-go consumer-group client.
func benchConsumer(ctx context.Context, brokers []string, topic, group string, n int) (BenchRow, error) {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return BenchRow{}, err
	}
	defer cl.Close()
	var count int64
	deadline := time.Now().Add(10 * time.Minute)
	for count < int64(n) {
		if time.Now().After(deadline) {
			return BenchRow{}, fmt.Errorf("consumed %d of %d records in 10 minutes", count, n)
		}
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return BenchRow{}, err
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintln(os.Stderr, "bench consumer:", err)
			}
		})
		count += int64(fs.NumRecords())
	}
	d := time.Since(start)
	return BenchRow{Records: count, Seconds: d.Seconds(), RecordsPerS: float64(count) / d.Seconds(), OK: count == int64(n)}, nil
}

// benchWeir runs the noop pipeline over topic until every record is
// complete.
func benchWeir(ctx context.Context, log zerolog.Logger, brokers []string, topic, group, ordering string, n int, redisAddr, prefix string) (BenchRow, error) {
	y := pipelineYAML(topic, group+"-out", group, "noop", ordering, 0, 0, redisAddr, prefix)
	cfg, err := config.Parse("bench.yaml", []byte(y), config.WithBuiltins(BuiltinNames()...))
	if err != nil {
		return BenchRow{}, fmt.Errorf("the generated pipeline config is invalid: %w", err)
	}
	h := host.New(cfg, host.Options{Logger: log, KafkaBrokers: brokers})
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(runCtx) }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var (
		end      time.Time
		snap     host.Snapshot
		lastDone int64
		lastMove = time.Now()
	)
	for {
		select {
		case err := <-runErr:
			if err == nil {
				err = errors.New("pipeline stopped before every record was complete")
			}
			return BenchRow{}, err
		case <-ctx.Done():
			stop()
			<-runErr
			return BenchRow{}, ctx.Err()
		case <-tick.C:
		}
		if s := h.Stats(); len(s) > 0 {
			snap = s[0]
		}
		now := time.Now()
		if snap.Completed > lastDone {
			lastDone, lastMove = snap.Completed, now
		} else if now.Sub(lastMove) > 2*time.Minute {
			stop()
			<-runErr
			return BenchRow{}, fmt.Errorf("no progress for 2 minutes at %d of %d records", snap.Completed, n)
		}
		if snap.Completed >= int64(n) {
			end = now
			break
		}
	}
	stop()
	if err := <-runErr; err != nil {
		return BenchRow{}, fmt.Errorf("shutting down: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return BenchRow{}, err
	}
	defer cl.Close()
	lags, err := loadtest.Uncommitted(cctx, kadm.NewClient(cl), group, topic)
	if err != nil {
		return BenchRow{}, err
	}
	d := end.Sub(start)
	return BenchRow{Records: snap.Completed, Seconds: d.Seconds(),
		RecordsPerS: float64(snap.Completed) / d.Seconds(), OK: len(lags) == 0 && snap.Completed == int64(n)}, nil
}

// WriteTable prints r for a terminal.
func (r *BenchReport) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "weir bench: %d records per size, %d partitions, %d keys; %d CPUs, %s; redis %s\n\n",
		r.Records, r.Partitions, r.Keys, r.CPUs, r.GoVersion, r.Redis)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SIZE\tROUND\tMEASUREMENT\tRECORDS/S\tMB/S\tRATIO\tSECONDS\tCPU µS/REC\tOK\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%d B\t%d\t%s\t%.0f\t%.1f\t%.2f\t%.2f\t%.2f\t%v\t\n", row.Size, row.Round, row.Name, row.RecordsPerS, row.MBPerS, row.Ratio, row.Seconds, row.CPUMicrosPerRecord, row.OK)
	}
	tw.Flush()
	if r.Rounds < 2 {
		return
	}
	fmt.Fprintf(w, "\nratios over %d rounds (median, min-max):\n\n", r.Rounds)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SIZE\tMEASUREMENT\tMEDIAN\tMIN\tMAX\t")
	type group struct {
		size int
		name string
	}
	var order []group
	ratios := map[group][]float64{}
	for _, row := range r.Rows {
		g := group{row.Size, row.Name}
		if _, ok := ratios[g]; !ok {
			order = append(order, g)
		}
		ratios[g] = append(ratios[g], row.Ratio)
	}
	for _, g := range order {
		rs := ratios[g]
		slices.Sort(rs)
		fmt.Fprintf(tw, "%d B\t%s\t%.2f\t%.2f\t%.2f\t\n", g.size, g.name, median(rs), rs[0], rs[len(rs)-1])
	}
	tw.Flush()
}

// median of sorted, non-empty xs.
func median(xs []float64) float64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// startRedisServer starts redis-server from PATH on a free loopback port,
// without persistence, and returns its address and a function that stops
// it. exec.ErrNotFound when there is no redis-server.
func startRedisServer() (string, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, exec.ErrNotFound
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "weir-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("starting redis-server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rc.Ping(ctx).Err()
		cancel()
		if err == nil {
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer PING within 10s: %w", addr, err)
		}
	}
}
