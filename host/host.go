// Package host is weir's runtime: it builds each configured pipeline (its
// source, handler pool, sinks and DLQ), runs lanes per claimed partition,
// retries and dead-letters failures, and commits progress. See
// ../shared/DESIGN.md for the flow and the delivery semantics.
package host

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host/checkpoint"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/kzlog"
	kafkasink "github.com/weirhq/weir/sinks/kafka"
	"github.com/weirhq/weir/sinks/stdout"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// Options are the parts of a Host that do not come from the config file.
type Options struct {
	// Logger receives every log line; sub-loggers add pipeline, partition
	// and batch fields. Default: no logging.
	Logger zerolog.Logger
	// HostID names this process in DLQ envelopes and logs. Default
	// hostname-pid.
	HostID string
	// KafkaBrokers, if set, replaces the config file's kafka.brokers (the
	// quickstart uses it to point at the broker it started).
	KafkaBrokers []string
	// OnEvent, if set, is called on partition lifecycle events and commits,
	// from the goroutine that caused them. It must not block.
	OnEvent func(Event)
	// KafkaOpts are appended to every Kafka client's options (tests use them
	// to shorten heartbeats).
	KafkaOpts []kgo.Opt
	// KinesisCredentials, if set, replaces the AWS SDK's default credential
	// chain for Kinesis sources (tests pass static ones for kinesalite).
	KinesisCredentials aws.CredentialsProvider
	// LoadConfig, if set, reads the config file again for Reload (SIGHUP,
	// POST /admin/reload); nil: Reload only rolls the handlers.
	LoadConfig func() (*config.File, error)
	// AdminAddr, if set, replaces the config file's admin.addr ("off"
	// disables the admin server; "127.0.0.1:0" picks a free port, see
	// Host.AdminAddr).
	AdminAddr string
}

// Host runs the pipelines of one config file.
type Host struct {
	cfg  *config.File
	opts Options

	mu        sync.Mutex
	pipelines []*pipeline
	brokers   []string
	// states maps a pipeline's name to its run state (see PipelineStatus).
	states    map[string]string
	adminAddr string
	// sup runs the pipelines once Run has built them; reloads go through it.
	sup *supervisor
}

// New returns a Host for cfg, which must have been produced by config.Load
// or config.Parse (so it is validated and has its defaults).
func New(cfg *config.File, opts Options) *Host {
	if opts.HostID == "" {
		name, _ := os.Hostname()
		opts.HostID = name + "-" + strconv.Itoa(os.Getpid())
	}
	return &Host{cfg: cfg, opts: opts, states: map[string]string{}}
}

// Pipeline run states, as reported by Status and /readyz.
const (
	StateStarting = "starting" // building: plugins, connections
	StateRunning  = "running"
	StateStopped  = "stopped" // returned without an error
	StateFailed   = "failed"
)

func (h *Host) setState(name, state string) {
	h.mu.Lock()
	h.states[name] = state
	h.mu.Unlock()
}

// storeConfig maps the config file's redis section and a pipeline's
// idempotency section onto the checkpoint store's configuration.
func (h *Host) storeConfig(pc *config.Pipeline, addr string) checkpoint.Config {
	r := h.cfg.Redis
	c := checkpoint.Config{
		Addr: addr, Username: r.Username, Password: r.Password, DB: r.DB,
		SentinelMaster: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs, ClusterAddrs: r.ClusterAddrs,
		KeyPrefix: r.KeyPrefix, Pipeline: pc.Name,
		TTL: pc.Idempotency.TTL, ClaimTTL: pc.Idempotency.ClaimTTL,
	}
	if r.TLS {
		c.TLS = redisTLS(r)
	}
	switch pc.Idempotency.Key {
	case "position":
		c.Mode = checkpoint.ModePosition
	default:
		c.Mode, c.Template = checkpoint.ModeTemplate, pc.Idempotency.Key
	}
	return c
}

// Stats returns a snapshot of each running pipeline's counters.
func (h *Host) Stats() []Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Snapshot, len(h.pipelines))
	for i, pl := range h.pipelines {
		out[i] = pl.stats.Snapshot()
		out[i].Pipeline = pl.cfg.Name
		if pl.restarts != nil {
			out[i].PluginRestarts = pl.restarts()
		}
	}
	return out
}

// Brokers returns the Kafka seed brokers in use (the embedded broker's
// address when it was started), once Run has started them.
func (h *Host) Brokers() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.brokers
}

// Run starts every pipeline and blocks until ctx is done (then it shuts down
// gracefully: stops fetching, finishes in-flight batches within each
// pipeline's shutdown_timeout, commits, stops plugins) or a pipeline fails
// (then the others are stopped the same way and the error is returned).
func (h *Host) Run(ctx context.Context) error {
	log := h.opts.Logger
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()

	brokers := h.cfg.Kafka.Brokers
	if len(h.opts.KafkaBrokers) > 0 {
		brokers = h.opts.KafkaBrokers
	} else if h.cfg.Kafka.Embedded() {
		emb, err := kafkasrc.StartEmbedded()
		if err != nil {
			return fmt.Errorf("starting the embedded kafka broker: %w", err)
		}
		cleanup = append(cleanup, emb.Close)
		brokers = emb.Addrs()
		log.Info().Strs("brokers", brokers).Msg("embedded kafka broker started (in-process; data is lost on exit)")
	}
	redisAddr := h.cfg.Redis.Addr
	if h.cfg.Redis.Embedded() {
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("starting the embedded redis: %w", err)
		}
		cleanup = append(cleanup, mr.Close)
		redisAddr = mr.Addr()
		log.Info().Str("addr", redisAddr).Msg("embedded redis started (in-process; data is lost on exit)")
	}
	h.mu.Lock()
	h.brokers = brokers
	h.mu.Unlock()
	if stop := h.startAdmin(); stop != nil {
		cleanup = append(cleanup, stop)
	}
	conn := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(h.cfg.Kafka.ClientID),
		// franz-go's info level narrates every group step; keep it for
		// --log-level debug and show its warnings otherwise.
		kgo.WithLogger(kzlog.New(log.Level(max(log.GetLevel(), zerolog.WarnLevel)).With().Str("component", "kafka").Logger())),
		// A paused partition resumes on the next fetch, which franz-go
		// sends only once the fetch in flight returns: bound how long an
		// idle long-poll can delay that (kafka.fetch_max_wait). At 500ms, a
		// pipeline resumed after backpressure drained its lanes and sat
		// idle for most of it. At 50ms the bench's weir row still spent
		// its last tenth of the records in 50 ms steps, lanes resumed one
		// after another behind long-polls of drained partitions (1.05-1.18
		// million records/s; 1.41-1.75 million at 10ms).
		kgo.FetchMaxWait(h.cfg.Kafka.FetchMaxWait),
	}
	sec, err := KafkaSecurityOpts(h.cfg.Kafka, log)
	if err != nil {
		return err
	}
	conn = append(conn, sec...)
	conn = append(conn, h.opts.KafkaOpts...)
	if err := checkKafkaAuth(ctx, h.cfg.Kafka, conn, 30*time.Second); err != nil {
		return err
	}
	if h.cfg.Kafka.Embedded() && len(h.opts.KafkaBrokers) == 0 {
		// The in-process broker starts empty: create the source topics so
		// that a producer (kcat, a test) can write to them.
		var topics []string
		for _, p := range h.cfg.Pipelines {
			if p.Source.Kafka != nil {
				topics = append(topics, p.Source.Kafka.Topics...)
			}
		}
		if err := kafkasrc.EnsureTopics(ctx, conn, -1, topics...); err != nil {
			return fmt.Errorf("creating source topics on the embedded broker: %w", err)
		}
	}

	return h.supervise(ctx, conn, redisAddr)
}

// build creates a pipeline and what it owns. closeFn releases those parts
// and is valid even when err is not nil.
func (h *Host) build(ctx context.Context, pc *config.Pipeline, conn []kgo.Opt, redisAddr string) (pl *pipeline, closeFn func(), err error) {
	log := h.opts.Logger.With().Str("pipeline", pc.Name).Logger()
	var closers []func()
	closeFn = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}

	// The handler's processes start (spawned, handshaken, described) while
	// the rest is set up; a step that fails before the handler is waited
	// for below stops it once it has started.
	type started struct {
		rh  *rollingHandler
		err error
	}
	handlerC := make(chan started, 1)
	go func() {
		rh, err := h.startHandler(ctx, pc, log)
		handlerC <- started{rh, err}
	}()
	handlerTaken := false
	defer func() {
		if handlerTaken {
			return
		}
		if s := <-handlerC; s.rh != nil {
			cctx, cancel := context.WithTimeout(context.Background(), pc.ShutdownTimeout)
			defer cancel()
			_ = s.rh.Close(cctx)
		}
	}()

	// The Kafka source is made first: under exactly-once the sinks write
	// through its transaction.
	exactlyOnce := pc.Delivery == config.DeliveryExactlyOnce
	var kafkaSrc *kafkasrc.Source
	if pc.Source.Kafka != nil {
		group := []kgo.Opt{
			kgo.SessionTimeout(h.cfg.Kafka.SessionTimeout),
			kgo.HeartbeatInterval(h.cfg.Kafka.HeartbeatInterval),
		}
		srcCfg := kafkasrc.Config{
			// conn last, so that tests' KafkaOpts win
			Client: append(group, conn...), Topics: pc.Source.Kafka.Topics, Group: pc.Source.Kafka.Group,
			Start: pc.Source.Kafka.Start, Logger: log, FetchMaxBytes: fetchMaxBytes(pc),
			FetchMaxPartitionBytes: fetchMaxPartitionBytes(pc),
		}
		if exactlyOnce {
			srcCfg.TransactionalID = "weir." + pc.Name + "." + h.opts.HostID
			srcCfg.TransactionTimeout = transactionTimeout(pc)
		}
		var err error
		if kafkaSrc, err = kafkasrc.New(srcCfg); err != nil {
			return nil, closeFn, fmt.Errorf("creating the kafka source: %w", err)
		}
	}

	// One producer per cluster the pipeline writes to: the shared one, and
	// any other a sink or the DLQ names with brokers.
	producers := map[string]*kgo.Client{}
	producer := func(brokers []string, topic string) (*kgo.Client, error) {
		opts := conn
		if len(brokers) > 0 {
			opts = append(append([]kgo.Opt{}, conn...), kgo.SeedBrokers(brokers...))
		}
		key := strings.Join(brokers, ",")
		cl := producers[key]
		if cl == nil {
			var err error
			cl, err = kgo.NewClient(append(append([]kgo.Opt{}, opts...),
				kgo.ProducerLinger(kafkasink.DefaultLinger), kgo.AllowAutoTopicCreation())...)
			if err != nil {
				return nil, fmt.Errorf("creating the kafka producer: %w", err)
			}
			producers[key] = cl
			closers = append(closers, cl.Close)
		}
		// Create the topic if it is missing. A cluster that does not answer
		// now is not fatal: writes to it hold their batches (and the
		// commit) and retry until it does.
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := kafkasrc.EnsureTopics(ectx, opts, -1, topic); err != nil {
			log.Warn().Err(err).Str("topic", topic).Strs("brokers", brokers).Msg("could not check or create an output topic; writes to it will wait and retry")
		}
		return cl, nil
	}

	// kafkaSink writes to a topic through the cluster's producer or, under
	// exactly-once, inside the source's transaction.
	kafkaSink := func(ks *config.KafkaSink) (*kafkasink.Sink, error) {
		if exactlyOnce {
			ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := kafkasrc.EnsureTopics(ectx, conn, -1, ks.Topic); err != nil {
				log.Warn().Err(err).Str("topic", ks.Topic).Msg("could not check or create an output topic; writes to it will wait and retry")
			}
			return kafkasink.NewWithProducer(kafkaSrc.TxnProducer(), ks.Topic)
		}
		cl, err := producer(ks.Brokers, ks.Topic)
		if err != nil {
			return nil, err
		}
		return kafkasink.NewWithClient(cl, ks.Topic)
	}
	sinkMap := make(map[string]Sink, len(pc.Sinks))
	for name, s := range pc.Sinks {
		switch {
		case s.Kafka != nil:
			k, err := kafkaSink(s.Kafka)
			if err != nil {
				return nil, closeFn, fmt.Errorf("sink %s: %w", name, err)
			}
			closers = append(closers, func() { _ = k.Close(context.Background()) })
			sinkMap[name] = k
		case s.Kinesis != nil:
			k, err := h.kinesisSink(ctx, s.Kinesis)
			if err != nil {
				return nil, closeFn, fmt.Errorf("sink %s: %w", name, err)
			}
			closers = append(closers, func() { _ = k.Close(context.Background()) })
			sinkMap[name] = k
		case s.Stdout != nil:
			k, err := stdout.New(stdout.Config{Writer: os.Stdout})
			if err != nil {
				return nil, closeFn, fmt.Errorf("sink %s: %w", name, err)
			}
			closers = append(closers, func() { _ = k.Close(context.Background()) })
			sinkMap[name] = k
		}
	}
	var dlqSink Sink
	switch {
	case pc.DLQ != nil && pc.DLQ.Kafka != nil:
		k, err := kafkaSink(pc.DLQ.Kafka)
		if err != nil {
			return nil, closeFn, fmt.Errorf("dlq: %w", err)
		}
		closers = append(closers, func() { _ = k.Close(context.Background()) })
		dlqSink = k
	case pc.DLQ != nil && pc.DLQ.Kinesis != nil:
		k, err := h.kinesisSink(ctx, pc.DLQ.Kinesis)
		if err != nil {
			return nil, closeFn, fmt.Errorf("dlq: %w", err)
		}
		closers = append(closers, func() { _ = k.Close(context.Background()) })
		dlqSink = kinesisDLQ{k}
	}

	var marks Marks
	if !pc.Idempotency.Off() {
		store, err := checkpoint.New(ctx, h.storeConfig(pc, redisAddr))
		if err != nil {
			return nil, closeFn, fmt.Errorf("idempotency store: %w", err)
		}
		closers = append(closers, func() { _ = store.Close() })
		marks = store
		log.Info().Str("key", pc.Idempotency.Key).Dur("ttl", pc.Idempotency.TTL).Msg("idempotency marks and checkpoints in redis")
	}

	handler := <-handlerC
	handlerTaken = true
	if handler.err != nil {
		return nil, closeFn, fmt.Errorf("starting handler %s: %w", pc.Handler.Plugin, handler.err)
	}
	pool := handler.rh
	closers = append(closers, func() {
		cctx, cancel := context.WithTimeout(context.Background(), pc.ShutdownTimeout)
		defer cancel()
		_ = pool.Close(cctx)
	})

	var src Source
	var txn Transactor
	info := pool.Info()
	ready := log.Info().Str("handler", info.Name).Str("version", info.Version).Int("instances", pc.Handler.Instances)
	switch {
	case pc.Source.Kinesis != nil:
		ks, closeLeases, err := h.kinesisSource(ctx, pc, redisAddr, log)
		closers = append(closers, closeLeases)
		if err != nil {
			return nil, closeFn, err
		}
		src = ks
		ready = ready.Str("stream", pc.Source.Kinesis.Stream)
	default:
		src = kafkaSrc
		if exactlyOnce {
			txn = kafkaSrc
		}
		ready = ready.Strs("topics", pc.Source.Kafka.Topics).Str("group", pc.Source.Kafka.Group)
	}
	ready.Msg("pipeline ready")
	pl = newPipeline(pc, h.opts.Logger, pipelineDeps{
		txn: txn, src: src, handler: pool, info: info, sinks: sinkMap, dlq: dlqSink, marks: marks,
		hostID: h.opts.HostID, onEvent: h.opts.OnEvent, lagInterval: h.cfg.Admin.LagInterval,
	})
	pl.restarts = pool.Restarts
	pl.alive = pool.Alive
	return pl, closeFn, nil
}

// transactionTimeout is how long the broker keeps an exactly-once
// pipeline's transaction open before aborting it: long enough for the
// barrier to wait out a batch (handler.timeout and some) twice over, plus
// a commit interval; at most Kafka's default transaction.max.timeout.ms.
func transactionTimeout(pc *config.Pipeline) time.Duration {
	return min(2*(pc.Handler.Timeout+10*time.Second)+pc.CommitInterval, 15*time.Minute)
}
