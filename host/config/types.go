package config

import (
	"strings"
	"time"

	"github.com/weirhq/weir/sources"
)

// The schema. Each field's doc names its YAML key and its default; a field
// without a default is required unless its doc says it is optional.

// File is a parsed and validated weir configuration file. Load and Parse
// return it with every default applied; it is not modified afterwards and
// is safe to read from many goroutines.
type File struct {
	// Path is the name given to Parse, or the path given to Load; it is ""
	// only for a File built by hand.
	Path string
	// Version (YAML: version) is the schema version; required, must be 1.
	Version int
	// Kafka (YAML: kafka) is the shared Kafka connection; required when
	// any pipeline reads or writes Kafka.
	Kafka Kafka
	// Redis (YAML: redis) is the shared Redis connection; optional.
	Redis Redis
	// Admin (YAML: admin) is the admin HTTP server: metrics, health,
	// status. Optional; on by default, on loopback.
	Admin Admin
	// Pipelines (YAML: pipelines) are the pipelines, in file order; at
	// least one, with unique names.
	Pipelines []Pipeline
	// Warnings are problems that do not make the file invalid but weaken
	// its security (a plugin file others may write, TLS without
	// verification, a password sent in clear); set by Load and Parse, not
	// read from the file. weir validate and weir run print them.
	Warnings []*FieldError
}

// Kafka is the shared Kafka connection (YAML: kafka).
type Kafka struct {
	// Brokers (YAML: brokers) are seed brokers as host:port. The single
	// entry "embedded" starts franz-go's kfake broker inside the process;
	// it cannot be mixed with other brokers.
	Brokers []string
	// ClientID (YAML: client_id) is sent to the brokers. Default "weir".
	ClientID string
	// SessionTimeout (YAML: session_timeout) is how long the group waits
	// for a member that stopped heartbeating (it crashed) before giving its
	// partitions to the others. Default 45s.
	SessionTimeout time.Duration
	// HeartbeatInterval (YAML: heartbeat_interval) is how often a member
	// tells the group it is alive, and notices a rebalance. Default 3s;
	// less than SessionTimeout.
	HeartbeatInterval time.Duration
	// FetchMaxWait (YAML: fetch_max_wait) is how long a fetch waits at the
	// broker for records when its partitions have none. A partition the
	// host resumes after backpressure is fetched again only once the fetch
	// in flight returns, so this bounds how long a lane with room sits
	// idle; an idle consumer sends a fetch this often to each broker.
	// Default 10ms, the least franz-go allows; at most 5s.
	FetchMaxWait time.Duration
	// TLS (YAML: tls) connects to the brokers with TLS; nil: plaintext.
	// It applies to every Kafka client weir makes for the file: the
	// source, Kafka sinks and DLQ producers, on kafka.brokers and on any
	// cluster a sink or DLQ names with brokers.
	TLS *KafkaTLS
	// SASL (YAML: sasl) authenticates to the brokers; nil: no SASL. It
	// applies to the same clients as TLS.
	SASL *KafkaSASL
}

// KafkaTLS is TLS to the brokers (YAML: kafka.tls). An empty mapping
// (tls: {}) verifies the brokers against the system's roots.
type KafkaTLS struct {
	// CAFile (YAML: ca_file) is a PEM file of the CAs that sign the
	// brokers' certificates, instead of the system's roots. Optional.
	CAFile string
	// CertFile and KeyFile (YAML: cert_file, key_file) are a PEM client
	// certificate and its key, for brokers that require mutual TLS. Both or
	// neither.
	CertFile string
	KeyFile  string
	// ServerName (YAML: server_name) is the name the brokers' certificates
	// must carry; default: the host of each broker address.
	ServerName string
	// InsecureSkipVerify (YAML: insecure_skip_verify) accepts any broker
	// certificate: encryption without authentication of the broker, open to
	// a man in the middle. weir validate and weir run warn about it.
	// Default false.
	InsecureSkipVerify bool
}

// KafkaSASL is SASL authentication to the brokers (YAML: kafka.sasl).
type KafkaSASL struct {
	// Mechanism (YAML: mechanism) is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or
	// AWS_MSK_IAM; required. AWS_MSK_IAM signs with the credentials in
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, read
	// at each authentication, and takes no username or password.
	Mechanism string
	// Username (YAML: username) is required for PLAIN and SCRAM.
	Username string
	// Password (YAML: password) must come from the environment
	// (password: ${KAFKA_PASSWORD}); a literal password in the file is an
	// error. Set it or PasswordFile for PLAIN and SCRAM.
	Password string
	// PasswordFile (YAML: password_file) is a file holding the password
	// (a trailing newline is dropped), resolved against the config file's
	// directory; read by Load into Password.
	PasswordFile string
}

// SASL mechanisms (KafkaSASL.Mechanism).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLAWSMSKIAM   = "AWS_MSK_IAM"
)

// Embedded reports whether the connection is the in-process broker.
func (k Kafka) Embedded() bool { return len(k.Brokers) == 1 && k.Brokers[0] == "embedded" }

// Admin is the admin HTTP server (YAML: admin): /metrics (Prometheus),
// /healthz, /readyz, /status (JSON) and a live status page at /.
type Admin struct {
	// Addr (YAML: addr) is the host:port the server listens on. Default
	// "127.0.0.1:9464" (loopback only); "" or "off" disables the server.
	// Port 0 picks a free port.
	Addr string
	// LagInterval (YAML: lag_interval) is how often each pipeline asks the
	// broker for its partitions' end offsets to measure lag (the
	// weir_lag_* metrics, /status). Default 5s; at least 100ms.
	LagInterval time.Duration
}

// DefaultAdminAddr is where the admin server listens by default.
const DefaultAdminAddr = "127.0.0.1:9464"

// Off reports whether the admin server is disabled.
func (a Admin) Off() bool { return a.Addr == "" || a.Addr == "off" }

// Redis is the shared Redis connection (YAML: redis). The section is
// optional; when present, Addr is required.
type Redis struct {
	// Addr (YAML: addr) is host:port, or "embedded" for an in-process
	// miniredis.
	Addr string
	// Username and Password (YAML: username, password) authenticate (ACL).
	// Optional. The password must come from the environment
	// (password: ${REDIS_PASSWORD}); a literal password in the file is an
	// error.
	Username string
	Password string
	// PasswordFile (YAML: password_file) is a file holding the password
	// instead (a trailing newline is dropped), resolved against the config
	// file's directory; read by Load into Password.
	PasswordFile string
	// DB (YAML: db) is the database number. Default 0.
	DB int
	// KeyPrefix (YAML: key_prefix) is put before every key weir writes.
	// Default "weir:".
	KeyPrefix string
	// TLS (YAML: tls) connects with TLS, verifying the server against the
	// system's roots, or against CAFile. Default false.
	TLS bool
	// CAFile (YAML: ca_file) is a PEM file of the CAs that sign the
	// server's certificate, instead of the system's roots; setting it
	// turns TLS on. Optional.
	CAFile string
	// SentinelMaster and SentinelAddrs (YAML: sentinel_master,
	// sentinel_addrs) connect to the master Redis Sentinel names instead
	// of Addr; ClusterAddrs (YAML: cluster_addrs) connect to a Redis
	// Cluster. Set one of Addr, SentinelAddrs, ClusterAddrs.
	SentinelMaster string
	SentinelAddrs  []string
	ClusterAddrs   []string
}

// Embedded reports whether the connection is the in-process miniredis.
func (r Redis) Embedded() bool { return r.Addr == "embedded" }

// Configured reports whether the file names a Redis server.
func (r Redis) Configured() bool {
	return r.Addr != "" || len(r.SentinelAddrs) > 0 || len(r.ClusterAddrs) > 0
}

// Ordering says which records of a partition may be handled concurrently
// (YAML: ordering: partition | key | none).
type Ordering string

const (
	// OrderingPartition allows one batch in flight per partition (default).
	OrderingPartition Ordering = "partition"
	// OrderingKey keeps records of one key in order; different keys of a
	// partition run concurrently.
	OrderingKey Ordering = "key"
	// OrderingNone runs batches of a partition concurrently without order.
	OrderingNone Ordering = "none"
)

// Delivery says how a pipeline's outputs relate to its input positions
// (YAML: delivery: at_least_once | exactly_once).
type Delivery string

const (
	// DeliveryAtLeastOnce commits input positions after their outputs are
	// written (default). With idempotency marks in Redis, a record that
	// completed is not handled again after a crash (effectively once).
	DeliveryAtLeastOnce Delivery = "at_least_once"
	// DeliveryExactlyOnce writes outputs, dead letters and the input
	// offsets in one Kafka transaction per commit interval: consumers of
	// the outputs reading read_committed see each output once. Source,
	// sinks and DLQ must all be Kafka on the shared cluster, and
	// idempotency marks are off (the transaction replaces them).
	DeliveryExactlyOnce Delivery = "exactly_once"
)

// Pipeline is one source → handler → sinks flow (an item of YAML
// pipelines). Defaults returns its default values.
type Pipeline struct {
	// Name (YAML: name) identifies the pipeline in logs, metrics, DLQ
	// headers and idempotency keys; required, unique in the file, matching
	// ^[a-z0-9][a-z0-9_.-]*$.
	Name string
	// Source (YAML: source) is where records come from; required.
	Source Source
	// Batch (YAML: batch) says when a batch is closed.
	Batch Batch
	// Handler (YAML: handler) is the plugin that handles batches; required.
	Handler Handler
	// Ordering (YAML: ordering). Default OrderingPartition.
	Ordering Ordering
	// Delivery (YAML: delivery) is the pipeline's delivery guarantee.
	// Default DeliveryAtLeastOnce.
	Delivery Delivery
	// Retry (YAML: retry) says how failures are retried.
	Retry Retry
	// Breaker (YAML: breaker) guards the handler pool and each sink: on
	// systemic failure it opens, the pipeline's partitions pause at the
	// source, and after OpenFor one probe batch decides whether to resume.
	Breaker Breaker
	// Idempotency (YAML: idempotency) says how records are keyed so that
	// a record is handled once.
	Idempotency Idempotency
	// Sinks by name (YAML: sinks: {NAME: {KIND: ...}}); at least one.
	// Handler outputs name one of them. A name matches ^[A-Za-z0-9_.-]+$.
	Sinks map[string]Sink
	// DLQ (YAML: dlq) receives records that failed for good. nil: a record
	// that fails for good stops the pipeline instead (nothing is lost
	// silently). Its topic must not be a source topic of the pipeline.
	DLQ *DLQ
	// MaxInflightBytes (YAML: max_inflight_bytes, a size) bounds the bytes
	// of records read but not yet complete, each counting its key, value
	// and headers plus the host's own memory per record (320 bytes, see
	// host.RecordOverhead); past it, partitions are paused. `weir run`
	// sizes the Go runtime's memory limit from it. Default 64MiB; at least
	// Batch.MaxBytes.
	MaxInflightBytes int64
	// CommitInterval (YAML: commit_interval) is how often completed
	// positions are committed to the source (and checkpointed in Redis);
	// a revoke or shutdown always commits at once. Default 100ms. Records
	// completed since the last commit are redelivered after a crash:
	// dropped as done with idempotency on, handled again with it off.
	CommitInterval time.Duration
	// ShutdownTimeout (YAML: shutdown_timeout) bounds how long in-flight
	// batches may take to finish on shutdown or revoke. Default 30s.
	ShutdownTimeout time.Duration
}

// UsesKafka reports whether the pipeline reads or writes the shared Kafka
// connection (source, a sink or the DLQ).
func (p *Pipeline) UsesKafka() bool {
	if p.Source.Kafka != nil || p.DLQ != nil && p.DLQ.Kafka != nil {
		return true
	}
	for _, s := range p.Sinks {
		if s.Kafka != nil {
			return true
		}
	}
	return false
}

// Source says where a pipeline reads from (YAML: source: {KIND: ...}).
// Exactly one field is set.
type Source struct {
	// Kafka (YAML: kafka) reads Kafka topics.
	Kafka *KafkaSource
	// Kinesis (YAML: kinesis) reads a Kinesis stream, leasing its shards
	// in Redis; needs the redis section.
	Kinesis *KinesisSource
}

// KinesisSource reads a Kinesis stream (YAML: source.kinesis). Workers
// (weir run processes with the same pipeline name and Redis) share its
// shards through leases in Redis. Credentials come from the AWS SDK's
// default chain (environment, shared config and credentials files, SSO,
// web identity, ECS, EC2).
type KinesisSource struct {
	// Stream (YAML: stream) is the stream's name or ARN
	// (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME); required.
	Stream string
	// Region (YAML: region) is the AWS region; default: the SDK's
	// (AWS_REGION, the shared config), else the ARN's, else us-east-1.
	Region string
	// Endpoint (YAML: endpoint) replaces the Kinesis endpoint, for
	// emulators (kinesalite, LocalStack): an http(s) URL. Optional.
	Endpoint string
	// Start (YAML: start: trim_horizon | latest | an RFC 3339 time) is
	// where shards without a checkpoint begin; it applies to the shards
	// the pipeline first sees, while shards created later by resharding
	// are read from their first record. Default trim_horizon.
	Start Start
	// PollInterval (YAML: poll_interval) is how long a shard reader waits
	// after a read that returned nothing new. Default 1s; at least 200ms
	// (Kinesis allows five reads a second per shard).
	PollInterval time.Duration
	// MaxRecordsPerCall (YAML: max_records_per_call) is the most records
	// one GetRecords returns. Default 10000; 1 to 10000.
	MaxRecordsPerCall int
	// ShardSyncInterval (YAML: shard_sync_interval) is how often the
	// shards are listed to find new ones (a shard reaching its end lists
	// them at once). Default 30s.
	ShardSyncInterval time.Duration
	// Lease (YAML: lease) times the shard leases.
	Lease KinesisLease
}

// KinesisLease times the shard leases of a Kinesis source (YAML:
// source.kinesis.lease).
type KinesisLease struct {
	// TTL (YAML: ttl) is how long a lease (and a worker's registration)
	// lasts without renewal: a crashed worker's shards are taken over
	// after it. Default 10s; at least 1s.
	TTL time.Duration
	// Heartbeat (YAML: heartbeat) is how often a worker renews its leases,
	// registers, and balances shards with the others. Default 2s; at most
	// a third of TTL.
	Heartbeat time.Duration
}

// StreamName returns the stream's name: Stream, or the name in its ARN.
func (k *KinesisSource) StreamName() string {
	if _, name, ok := strings.Cut(k.Stream, ":stream/"); ok && strings.HasPrefix(k.Stream, "arn:") {
		return name
	}
	return k.Stream
}

// StreamARN returns Stream if it is an ARN, else "".
func (k *KinesisSource) StreamARN() string {
	if strings.HasPrefix(k.Stream, "arn:") {
		return k.Stream
	}
	return ""
}

// StartKind says where a new consumer group starts reading: earliest,
// latest or time (sources.StartKind; one definition for config and sources).
type StartKind = sources.StartKind

// The start kinds (YAML: earliest | latest | an RFC 3339 time such as
// 2025-01-31T00:00:00Z).
const (
	StartEarliest = sources.StartEarliest
	StartLatest   = sources.StartLatest
	StartTime     = sources.StartTime
)

// Start is where a consumer group without committed offsets begins
// (YAML: start: earliest | latest | RFC 3339 time).
type Start = sources.Start

// KafkaSource reads Kafka topics with a consumer group (YAML: source.kafka).
type KafkaSource struct {
	// Topics (YAML: topics) are read; at least one, each a valid Kafka
	// topic name.
	Topics []string
	// Group (YAML: group) is the consumer group. Default: the pipeline name.
	Group string
	// Start (YAML: start) defaults to earliest.
	Start Start
}

// Batch says when a lane closes a batch: whichever limit is hit first
// (YAML: batch).
type Batch struct {
	// MaxRecords (YAML: max_records) default 1000.
	MaxRecords int
	// MaxBytes (YAML: max_bytes, a size: bytes or 512KiB, 1MiB, 1.5MB...)
	// default 1MiB; at most MaxInflightBytes.
	MaxBytes int64
	// MaxWait (YAML: max_wait, a Go duration like 50ms) default 50ms.
	MaxWait time.Duration
}

// Handler says which plugin handles the pipeline's batches (YAML: handler).
type Handler struct {
	// Plugin (YAML: plugin) is the path of the plugin executable as written
	// in the file (resolved relative to the config file's directory in
	// PluginPath), or "builtin:NAME" for a handler built into the weir
	// binary. Required.
	Plugin string
	// PluginPath is the resolved absolute path of Plugin; "" for builtins.
	// Set by Load and Parse, not read from the file.
	PluginPath string
	// Builtin is NAME of "builtin:NAME"; "" for a plugin file. Set by Load
	// and Parse, not read from the file.
	Builtin string
	// Args (YAML: args) are passed to the plugin process. Optional.
	Args []string
	// Dir (YAML: dir) is the plugin process's working directory, resolved
	// against the config file's directory; default: weir's own. Set it so
	// that a script named in Args resolves beside the config file.
	Dir string
	// Env (YAML: env) is the plugin process's environment: besides it, the
	// process gets only PATH and TMPDIR of weir's (and go-plugin's protocol
	// variables), never weir's secrets. Values may take weir's variables
	// with ${VAR}. Optional.
	Env map[string]string
	// Outputs (YAML: outputs) optionally lists the sinks the handler emits
	// to; each must be a declared sink.
	Outputs []string
	// Instances (YAML: instances) is the number of plugin processes.
	// Default: the number of CPUs, at least 2 (DefaultInstances).
	Instances int
	// Timeout (YAML: timeout) bounds one Handle call. Default 30s.
	Timeout time.Duration
	// MemoryLimit (YAML: memory_limit, a size such as 256MiB) caps the
	// memory each plugin process may allocate, enforced by the kernel
	// (RLIMIT_DATA on Linux: heap and private writable mappings, not
	// address space merely reserved, so Go and V8 runtimes start fine). A
	// process that passes it fails to allocate and dies; it is restarted
	// and its batch retried, then bisected, like any crash. Default 0: no
	// limit. At least 32MiB when set.
	MemoryLimit int64
	// MaxConcurrency (YAML: max_concurrency) is how many batches one
	// plugin process handles at once (for handlers that wait on I/O). A
	// crash or timeout of one batch restarts the process, failing (and
	// retrying) its other batches too. Default 1; at least 1.
	MaxConcurrency int
	// Watch (YAML: watch) is how often `weir run` checks the plugin file
	// (a handler given as a path, not builtin: or an interpreter on PATH)
	// for a new version, which it then rolls out without stopping the
	// pipeline (see the README, "Deploying a new handler version").
	// Default 2s; 0s turns watching off (SIGHUP and POST /admin/reload
	// still upgrade).
	Watch time.Duration
	// SHA256 (YAML: sha256) pins the plugin executable: its SHA-256, in
	// hex. A file whose digest differs is not started (at every start and
	// restart), and the error prints both digests. Not for builtins. For
	// an interpreter (plugin: python3) it pins the interpreter, not the
	// script. Optional.
	SHA256 string
	// MTLS (YAML: mtls) secures the host-plugin connection with
	// go-plugin's automatic mutual TLS: auto (default) uses it for Go
	// plugins (builtins, and executables with Go build information, whose
	// go-plugin server supports it), on requires it, off never uses it
	// (plugins in other languages: the Python and TypeScript SDKs do not
	// support it).
	MTLS string
	// MaxOutputBytes (YAML: max_output_bytes, a size) bounds one output of
	// the handler: key, value and headers. A record with a larger output
	// is dead-lettered (class bad_reply) instead of written. Default 1MiB
	// (Kafka's default max message size); at most MaxReplyBytes.
	MaxOutputBytes int64
	// MaxOutputsPerRecord (YAML: max_outputs_per_record) bounds the
	// outputs of one input record; a record with more is dead-lettered
	// (class bad_reply). Default 1000.
	MaxOutputsPerRecord int
	// MaxReplyBytes (YAML: max_reply_bytes, a size) is the largest reply
	// the host accepts from the plugin (its gRPC receive limit, also given
	// to the plugin as WEIR_MAX_REPLY_BYTES, which the SDKs use as their
	// send limit). A larger reply fails its batch (class bad_reply), which
	// is bisected until the records whose replies are too large are
	// isolated and dead-lettered. Default 64MiB; 4KiB to 2GiB-1.
	MaxReplyBytes int64
}

// Handler.MTLS values.
const (
	MTLSAuto = "auto"
	MTLSOn   = "on"
	MTLSOff  = "off"
)

// Retry says how failed records are retried (YAML: retry).
type Retry struct {
	// MaxAttempts (YAML: max_attempts) counts the first attempt. Default 5.
	MaxAttempts int
	// InitialBackoff (YAML: initial_backoff) default 100ms; doubles per
	// attempt up to MaxBackoff (YAML: max_backoff, default 10s), with
	// jitter. InitialBackoff must not exceed MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Bisect (YAML: bisect) splits a batch that fails as a whole to isolate
	// poison records. Default true.
	Bisect bool
}

// Sink is one named destination (YAML: sinks.NAME: {KIND: ...}). Exactly
// one field is set.
type Sink struct {
	// Kafka (YAML: kafka: {topic: T}) writes to a topic.
	Kafka *KafkaSink
	// Stdout (YAML: stdout: {}) writes to standard output.
	Stdout *StdoutSink
	// Kinesis (YAML: kinesis: {stream: S}) writes to a Kinesis stream
	// with PutRecords, the output key as partition key.
	Kinesis *KinesisSink
}

// KinesisSink writes to a Kinesis stream (YAML: sinks.NAME.kinesis, and
// dlq.kinesis).
// Messages of one key keep their order; headers are not written (Kinesis
// records have none). Credentials come from the AWS SDK's default chain.
type KinesisSink struct {
	// Stream (YAML: stream) is the stream's name or ARN; required, and not
	// the pipeline's Kinesis source stream.
	Stream string
	// Region (YAML: region): as for the Kinesis source.
	Region string
	// Endpoint (YAML: endpoint): as for the Kinesis source. Optional.
	Endpoint string
}

// KafkaSink writes to a topic of the shared Kafka connection.
type KafkaSink struct {
	// Topic (YAML: topic) is required, a valid Kafka topic name, and not a
	// source topic of the same pipeline.
	Topic string
	// Brokers (YAML: brokers) optionally names another cluster to write
	// to; default: the shared kafka.brokers.
	Brokers []string
}

// StdoutSink writes one JSON line per output to standard output. It has no
// fields.
type StdoutSink struct{}

// DLQ is where records that failed for good are written (YAML: dlq:
// {KIND: ...}). Exactly one field is set.
type DLQ struct {
	// Kafka (YAML: kafka: {topic: T, brokers: [...]}) writes dead letters
	// to a topic, on the shared cluster or on the one brokers names.
	Kafka *KafkaSink
	// Kinesis (YAML: kinesis: {stream: S, region: R, endpoint: E}) writes
	// dead letters to a Kinesis stream, each envelope encoded in the
	// record data (see dlq.KinesisMagic), the original key as partition
	// key. The stream must not be the pipeline's source stream.
	Kinesis *KinesisSink
	// MaxRatio (YAML: max_ratio) is the DLQ guard: when more than this
	// fraction of the last Window records would be dead-lettered (a bad
	// deploy, not bad data), the pipeline halts with an error instead.
	// Default 0.5; in (0, 1]; 1 turns the guard off.
	MaxRatio float64
	// Window (YAML: window) is how many of the latest records the guard
	// looks at. Default 1000; at least 10. The guard judges once a tenth of
	// the window has been seen.
	Window int
}

// Idempotency says how a pipeline's records get idempotency keys, which are
// marked done in Redis after the outcome step so that a redelivered record
// is not handled again.
type Idempotency struct {
	// Key (YAML: key) is "position" (the record's pipeline, stream,
	// partition and position: catches redelivery after a crash), "off",
	// or a template over the record so that duplicates sent by producers
	// are dropped too: "key" (the record key), "header:NAME", or
	// "json:/pointer" (a field of a JSON value, RFC 6901). Default:
	// "position" when the file has a redis section, else "off".
	Key string
	// TTL (YAML: ttl) is how long a done mark is kept. Default 24h.
	TTL time.Duration
	// ClaimTTL (YAML: claim_ttl) is how long a template key's claim holds
	// while its record is in flight (a crashed owner's claim expires after
	// it). Default 2m; more than handler.timeout, at most TTL.
	ClaimTTL time.Duration
}

// Off reports whether idempotency is off.
func (i Idempotency) Off() bool { return i.Key == "off" }

// Breaker configures the circuit breakers of a pipeline (one for the
// handler pool, one per sink). Systemic failures count against them:
// batches that time out, crash the plugin, fail as a whole with a
// retryable error or have every record fail retryably, and sink writes
// that fail. A record's own bad data never counts.
type Breaker struct {
	// FailureRatio (YAML: failure_ratio): the breaker opens when at least
	// this fraction of the calls in the current interval failed. Default
	// 0.5; in (0, 1].
	FailureRatio float64
	// MinRequests (YAML: min_requests): the breaker does not open before
	// this many calls in the interval. Default 20.
	MinRequests int
	// OpenFor (YAML: open_for) is how long the breaker stays open before a
	// probe batch is let through. Default 30s.
	OpenFor time.Duration
	// Interval (YAML: interval) is how often the counts of a closed
	// breaker are reset. Default 60s.
	Interval time.Duration
}
