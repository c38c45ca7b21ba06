package config

import (
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/host/checkpoint"
)

var (
	pipelineName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	sinkName     = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// topicName and the Kinesis names below bound their length apart
	// (maxTopicName, maxStreamName): a bounded repetition like {1,249}
	// compiles into as many states, which took a third of a millisecond at
	// the start of every weir process, handler processes included.
	topicName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// maxTopicName is the longest topic name Kafka allows.
const maxTopicName = 249

// validate checks the decoded file, recording a problem at the position of
// each offending field. It also resolves handler plugins.
func (d *decoder) validate(f *File) {
	d.checkVersion(f.Version)
	d.checkKafka(f)
	d.checkGroupTimes(f.Kafka)
	d.checkRedis(f.Redis)
	d.checkKafkaSecurity(&f.Kafka)
	d.passwordFile("redis", &f.Redis.Password, &f.Redis.PasswordFile, false)
	if f.Redis.CAFile != "" {
		f.Redis.CAFile = resolvePath(d.dir, f.Redis.CAFile)
		f.Redis.TLS = true
		d.checkCAFile("redis.ca_file", f.Redis.CAFile)
		if f.Redis.Embedded() {
			d.errorAt("redis.ca_file", "the embedded redis speaks plaintext only")
		}
	}
	d.checkAdmin(f.Admin)
	if len(f.Pipelines) == 0 {
		d.errorAt("pipelines", "%s; declare at least one pipeline", d.missing("pipelines"))
	}
	first := map[string]int{} // pipeline name → index
	for i := range f.Pipelines {
		path := indexPath("pipelines", i)
		p := &f.Pipelines[i]
		d.checkName(path, p.Name, first, i)
		d.checkPipeline(path, p)
		if p.Source.Kinesis != nil && !f.Redis.Configured() {
			d.errorAt(path+".source.kinesis", "needs the redis section: shard leases and checkpoints live in Redis")
		}
		d.checkIdempotency(path+".idempotency", &p.Idempotency, p.Handler.Timeout, f.Redis, p.Delivery)
		d.checkDelivery(path, p)
	}
}

// missing says "is required" for an absent field, "must not be empty" for
// one set to nothing.
func (d *decoder) missing(path string) string {
	if d.has(path) {
		return "must not be empty"
	}
	return "is required"
}

func (d *decoder) checkVersion(v int) {
	switch {
	case !d.has("version"):
		d.errorAt("version", "is required; write version: 1")
	case v != 1:
		d.errorAt("version", "unsupported version %d; this weir reads version 1", v)
	}
}

func (d *decoder) checkKafka(f *File) {
	brokers := f.Kafka.Brokers
	if len(brokers) == 0 {
		for _, p := range f.Pipelines {
			if p.UsesKafka() {
				d.errorAt("kafka.brokers", "%s: pipeline %q uses Kafka", d.missing("kafka.brokers"), p.Name)
				return
			}
		}
	}
	for i, b := range brokers {
		path := indexPath("kafka.brokers", i)
		switch {
		case b == "":
			d.errorAt(path, "must not be empty")
		case b == "embedded" && len(brokers) > 1:
			d.errorAt(path, "embedded cannot be mixed with other brokers")
		}
	}
}

func (d *decoder) checkGroupTimes(k Kafka) {
	d.positiveDuration("kafka.session_timeout", k.SessionTimeout)
	d.positiveDuration("kafka.heartbeat_interval", k.HeartbeatInterval)
	if k.HeartbeatInterval >= k.SessionTimeout && k.SessionTimeout > 0 {
		d.errorAt("kafka.heartbeat_interval", "%v must be less than session_timeout (%v)", k.HeartbeatInterval, k.SessionTimeout)
	}
	if k.FetchMaxWait < 10*time.Millisecond || k.FetchMaxWait > 5*time.Second {
		d.errorAt("kafka.fetch_max_wait", "%v is not between 10ms (the least franz-go allows) and 5s", k.FetchMaxWait)
	}
}

func (d *decoder) checkAdmin(a Admin) {
	if a.LagInterval < 100*time.Millisecond {
		d.errorAt("admin.lag_interval", "%v is too short: at least 100ms", a.LagInterval)
	}
	if a.Off() {
		return
	}
	_, port, err := net.SplitHostPort(a.Addr)
	if err != nil {
		d.errorAt("admin.addr", "%q is not host:port (like 127.0.0.1:9464); write off to disable the admin server", a.Addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		d.errorAt("admin.addr", "%q: port %q is not a number from 0 to 65535", a.Addr, port)
	}
}

func (d *decoder) checkRedis(r Redis) {
	servers := 0
	for _, set := range []bool{r.Addr != "", len(r.SentinelAddrs) > 0, len(r.ClusterAddrs) > 0} {
		if set {
			servers++
		}
	}
	switch {
	case d.has("redis") && servers == 0:
		d.errorAt("redis.addr", "%s; write host:port or embedded (or sentinel_addrs, or cluster_addrs)", d.missing("redis.addr"))
	case servers > 1:
		d.errorAt("redis", "set one of addr, sentinel_addrs and cluster_addrs")
	case len(r.SentinelAddrs) > 0 && r.SentinelMaster == "":
		d.errorAt("redis.sentinel_master", "%s with sentinel_addrs", d.missing("redis.sentinel_master"))
	case len(r.ClusterAddrs) > 0 && r.DB != 0:
		d.errorAt("redis.db", "a Redis Cluster has only db 0")
	}
	if r.DB < 0 {
		d.errorAt("redis.db", "must not be negative, got %d", r.DB)
	}
}

func (d *decoder) checkName(path, name string, first map[string]int, i int) {
	path += ".name"
	switch {
	case name == "":
		d.errorAt(path, "%s", d.missing(path))
	case !pipelineName.MatchString(name):
		d.errorAt(path, "%q is not a valid name; use a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	default:
		if j, dup := first[name]; dup {
			prev := indexPath("pipelines", j) + ".name"
			d.errorAt(path, "%q is already the name of pipelines[%d] (line %d)", name, j, d.pos(prev).Line)
			return
		}
		first[name] = i
	}
}

func (d *decoder) checkPipeline(path string, p *Pipeline) {
	d.checkSource(path+".source", p.Source)
	d.checkBatch(path, p)
	d.checkHandler(path+".handler", &p.Handler, p.Sinks)
	d.checkOrdering(path+".ordering", p.Ordering)
	d.checkRetry(path+".retry", p.Retry)
	d.checkBreaker(path+".breaker", p.Breaker)
	d.checkSinks(path+".sinks", p)
	d.checkDLQ(path+".dlq", p)
	d.positiveSize(path+".max_inflight_bytes", p.MaxInflightBytes)
	d.positiveDuration(path+".shutdown_timeout", p.ShutdownTimeout)
	d.positiveDuration(path+".commit_interval", p.CommitInterval)
}

func (d *decoder) checkSource(path string, s Source) {
	if s.Kafka == nil && s.Kinesis == nil {
		d.errorAt(path, "%s; set exactly one of: kafka, kinesis", d.missing(path))
		return
	}
	if !d.exactlyOne(path, "kafka, kinesis", s.Kafka != nil, s.Kinesis != nil) {
		return
	}
	if s.Kinesis != nil {
		d.checkKinesisSource(path+".kinesis", s.Kinesis)
		return
	}
	k := s.Kafka
	tp := path + ".kafka.topics"
	if len(k.Topics) == 0 {
		d.errorAt(tp, "%s", d.missing(tp))
	}
	for i, t := range k.Topics {
		d.checkTopic(indexPath(tp, i), t)
		if slices.Index(k.Topics, t) < i {
			d.errorAt(indexPath(tp, i), "%q is listed twice", t)
		}
	}
}

// kinesisStreamName is what Kinesis allows in a stream name, up to
// maxStreamName of it.
var kinesisStreamName = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)

// kinesisStreamARN is arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME,
// NAME a stream name.
var kinesisStreamARN = regexp.MustCompile(`^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/([a-zA-Z0-9_.-]+)$`)

// maxStreamName is the longest stream name Kinesis allows.
const maxStreamName = 128

func (d *decoder) checkKinesisSource(path string, k *KinesisSource) {
	d.checkStream(path+".stream", k.Stream)
	d.checkEndpoint(path+".endpoint", k.Endpoint)
	if k.PollInterval < 200*time.Millisecond {
		d.errorAt(path+".poll_interval", "must be at least 200ms (Kinesis allows five reads a second per shard), got %v", k.PollInterval)
	}
	if k.MaxRecordsPerCall < 1 || k.MaxRecordsPerCall > 10000 {
		d.errorAt(path+".max_records_per_call", "must be 1 to 10000, got %d", k.MaxRecordsPerCall)
	}
	d.positiveDuration(path+".shard_sync_interval", k.ShardSyncInterval)
	if k.Lease.TTL < time.Second {
		d.errorAt(path+".lease.ttl", "must be at least 1s, got %v", k.Lease.TTL)
	}
	if k.Lease.Heartbeat <= 0 || k.Lease.Heartbeat*3 > k.Lease.TTL {
		d.errorAt(path+".lease.heartbeat", "must be greater than 0 and at most a third of lease.ttl (%v), got %v", k.Lease.TTL, k.Lease.Heartbeat)
	}
}

// checkStream checks a Kinesis stream name or ARN.
func (d *decoder) checkStream(path, stream string) {
	switch {
	case stream == "":
		d.errorAt(path, "%s", d.missing(path))
	case strings.HasPrefix(stream, "arn:"):
		if m := kinesisStreamARN.FindStringSubmatch(stream); m == nil || len(m[1]) > maxStreamName {
			d.errorAt(path, "%q is not a stream ARN like arn:aws:kinesis:us-east-1:123456789012:stream/NAME", stream)
		}
	case !kinesisStreamName.MatchString(stream) || len(stream) > maxStreamName:
		d.errorAt(path, "%q is not a valid stream name; use 1 to 128 of a-z, A-Z, 0-9, '.', '_' and '-'", stream)
	}
}

// checkEndpoint checks an optional Kinesis endpoint URL.
func (d *decoder) checkEndpoint(path, endpoint string) {
	if endpoint == "" {
		return
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.errorAt(path, "%q is not an http(s) URL like http://localhost:4567", endpoint)
	}
}

// checkTopic checks that t is a legal Kafka topic name.
func (d *decoder) checkTopic(path, t string) {
	switch {
	case t == "":
		d.errorAt(path, "%s", d.missing(path))
	case t == "." || t == "..":
		d.errorAt(path, "%q is not a valid topic name", t)
	case !topicName.MatchString(t) || len(t) > maxTopicName:
		d.errorAt(path, "%q is not a valid topic name; use at most 249 of a-z, A-Z, 0-9, '.', '_' and '-'", t)
	}
}

func (d *decoder) checkBatch(path string, p *Pipeline) {
	b := p.Batch
	path += ".batch"
	if b.MaxRecords < 1 {
		d.errorAt(path+".max_records", "must be at least 1, got %d", b.MaxRecords)
	}
	d.positiveSize(path+".max_bytes", b.MaxBytes)
	d.positiveDuration(path+".max_wait", b.MaxWait)
	if b.MaxBytes > p.MaxInflightBytes && p.MaxInflightBytes > 0 {
		d.errorAt(path+".max_bytes", "%s is more than max_inflight_bytes (%s); a batch must fit in flight",
			formatSize(b.MaxBytes), formatSize(p.MaxInflightBytes))
	}
}

func (d *decoder) checkHandler(path string, h *Handler, sinks map[string]Sink) {
	d.resolvePlugin(path+".plugin", h)
	if h.Dir != "" {
		h.Dir = resolvePath(d.dir, h.Dir)
		if fi, err := os.Stat(h.Dir); !d.opts.skipFileChecks && (err != nil || !fi.IsDir()) {
			d.errorAt(path+".dir", "%s is not a directory", h.Dir)
		}
	}
	if h.Instances < 1 {
		d.errorAt(path+".instances", "must be at least 1, got %d", h.Instances)
	}
	d.positiveDuration(path+".timeout", h.Timeout)
	if h.Watch < 0 {
		d.errorAt(path+".watch", "must not be negative, got %v; 0s turns watching off", h.Watch)
	}
	if h.MaxConcurrency < 1 {
		d.errorAt(path+".max_concurrency", "must be at least 1, got %d", h.MaxConcurrency)
	}
	if h.MemoryLimit != 0 && h.MemoryLimit < MinMemoryLimit {
		d.errorAt(path+".memory_limit", "%s is too small for a plugin process to start; at least %s, or 0 for no limit", formatSize(h.MemoryLimit), formatSize(MinMemoryLimit))
	}
	d.checkHandlerSecurity(path, h)
	for k := range h.Env {
		if !envName.MatchString(k) {
			d.errorAt(joinPath(path+".env", k), "%q is not a valid environment variable name", k)
		}
	}
	declared := sortedKeys(sinks)
	for i, out := range h.Outputs {
		p := indexPath(path+".outputs", i)
		switch _, ok := sinks[out]; {
		case !ok:
			d.errorAt(p, "%q is not a declared sink; declared: %s", out, listOrNone(declared))
		case slices.Index(h.Outputs, out) < i:
			d.errorAt(p, "%q is listed twice", out)
		}
	}
}

// resolvePlugin checks Handler.Plugin and sets Builtin or PluginPath.
func (d *decoder) resolvePlugin(path string, h *Handler) {
	if h.Plugin == "" {
		d.errorAt(path, "%s; write a path to the plugin executable or builtin:NAME", d.missing(path))
		return
	}
	if name, ok := strings.CutPrefix(h.Plugin, "builtin:"); ok {
		h.Builtin = name
		d.checkBuiltin(path, name)
		return
	}
	if !strings.ContainsRune(h.Plugin, '/') {
		// A bare name (python3, node) is an interpreter on PATH.
		p, err := exec.LookPath(h.Plugin)
		switch {
		case err == nil:
			h.PluginPath = p
		case d.opts.skipFileChecks:
			h.PluginPath = h.Plugin
		default:
			d.errorAt(path, "%q is not on PATH; write a path (./bin/%s) or an interpreter that is installed", h.Plugin, h.Plugin)
		}
		return
	}
	h.PluginPath = resolvePath(d.dir, h.Plugin)
	if !d.opts.skipFileChecks {
		d.checkExecutable(path, h.Plugin, h.PluginPath)
	}
}

func (d *decoder) checkBuiltin(path, name string) {
	known := d.opts.builtins
	switch {
	case name == "":
		d.errorAt(path, "builtin: needs a name; write builtin:NAME")
	case known != nil && !slices.Contains(known, name):
		sorted := slices.Sorted(slices.Values(known))
		d.errorAt(path, "unknown builtin %q; known: %s", name, listOrNone(sorted))
	}
}

// checkExecutable checks that the plugin file exists, is a regular file
// and is executable. plugin is the path as written, abs as resolved.
func (d *decoder) checkExecutable(path, plugin, abs string) {
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.errorAt(path, "%q does not exist (looked for %s)", plugin, abs)
	case err != nil:
		d.errorAt(path, "%q cannot be read: %v", plugin, err)
	case fi.IsDir():
		d.errorAt(path, "%q is a directory, not an executable (%s)", plugin, abs)
	case runtime.GOOS != "windows" && fi.Mode().Perm()&0o111 == 0:
		d.errorAt(path, "%q is not executable; chmod +x %s", plugin, abs)
	}
}

func (d *decoder) checkOrdering(path string, o Ordering) {
	switch o {
	case OrderingPartition, OrderingKey, OrderingNone:
	default:
		d.errorAt(path, "%q is not an ordering; allowed: partition, key, none", string(o))
	}
}

func (d *decoder) checkRetry(path string, r Retry) {
	if r.MaxAttempts < 1 {
		d.errorAt(path+".max_attempts", "must be at least 1, got %d", r.MaxAttempts)
	}
	d.positiveDuration(path+".initial_backoff", r.InitialBackoff)
	d.positiveDuration(path+".max_backoff", r.MaxBackoff)
	if r.InitialBackoff > r.MaxBackoff && r.MaxBackoff > 0 {
		d.errorAt(path+".initial_backoff", "%v is more than max_backoff (%v)", r.InitialBackoff, r.MaxBackoff)
	}
}

// checkIdempotency resolves the default key mode (position with a redis
// section, else off) and checks the rest.
func (d *decoder) checkIdempotency(path string, i *Idempotency, handlerTimeout time.Duration, r Redis, delivery Delivery) {
	kp := path + ".key"
	switch {
	case i.Key == "":
		i.Key = "off"
		if r.Configured() && delivery != DeliveryExactlyOnce {
			i.Key = "position"
		}
	case i.Key == "off":
	case i.Key != "position" && i.Key != "key" && !strings.HasPrefix(i.Key, "header:") && !strings.HasPrefix(i.Key, "json:"):
		d.errorAt(kp, "%q is not an idempotency key; write position, off, key, header:NAME or json:/pointer", i.Key)
	case i.Key != "position" && templateError(i.Key) != "":
		d.errorAt(kp, "%s", templateError(i.Key))
	case !r.Configured():
		d.errorAt(kp, "%q needs a redis section (marks are kept in Redis); add one, or write off", i.Key)
	}
	d.positiveDuration(path+".ttl", i.TTL)
	d.positiveDuration(path+".claim_ttl", i.ClaimTTL)
	if i.ClaimTTL > i.TTL && i.TTL > 0 {
		d.errorAt(path+".claim_ttl", "%v is more than ttl (%v)", i.ClaimTTL, i.TTL)
	}
	if i.ClaimTTL > 0 && i.ClaimTTL <= handlerTimeout {
		d.errorAt(path+".claim_ttl", "%v must be more than handler.timeout (%v): a claim must outlive the call", i.ClaimTTL, handlerTimeout)
	}
}

// checkDelivery checks the delivery mode, and that an exactly-once
// pipeline can run in one Kafka transaction: its source, sinks and DLQ are
// all Kafka on the shared cluster, and no idempotency marks are kept in
// Redis (they would be written before the transaction commits, and a
// transaction that aborts would leave records marked done that no output
// shows).
func (d *decoder) checkDelivery(path string, p *Pipeline) {
	dp := path + ".delivery"
	switch p.Delivery {
	case DeliveryAtLeastOnce:
		return
	case DeliveryExactlyOnce:
	default:
		d.errorAt(dp, "%q is not a delivery mode; allowed: at_least_once, exactly_once", string(p.Delivery))
		return
	}
	if p.Source.Kafka == nil {
		d.errorAt(dp, "exactly_once needs a kafka source (offsets commit in the Kafka transaction)")
	}
	for _, name := range sortedKeys(p.Sinks) {
		s := p.Sinks[name]
		sp := joinPath(path+".sinks", name)
		switch {
		case s.Kafka == nil:
			d.errorAt(sp, "exactly_once needs every sink to be kafka (outputs are written in the Kafka transaction)")
		case len(s.Kafka.Brokers) > 0:
			d.errorAt(sp+".kafka.brokers", "exactly_once writes in one transaction on the shared cluster; remove brokers")
		}
	}
	if p.DLQ != nil && p.DLQ.Kafka != nil && len(p.DLQ.Kafka.Brokers) > 0 {
		d.errorAt(path+".dlq.kafka.brokers", "exactly_once writes dead letters in the transaction on the shared cluster; remove brokers")
	}
	if p.DLQ != nil && p.DLQ.Kinesis != nil {
		d.errorAt(path+".dlq.kinesis", "exactly_once writes dead letters in the Kafka transaction; use dlq.kafka")
	}
	if !p.Idempotency.Off() {
		d.errorAt(path+".idempotency.key", "must be off with delivery: exactly_once (the Kafka transaction replaces marks in Redis, which would be written before it commits)")
	}
}

func (d *decoder) checkBreaker(path string, b Breaker) {
	d.ratio(path+".failure_ratio", b.FailureRatio)
	if b.MinRequests < 1 {
		d.errorAt(path+".min_requests", "must be at least 1, got %d", b.MinRequests)
	}
	d.positiveDuration(path+".open_for", b.OpenFor)
	d.positiveDuration(path+".interval", b.Interval)
}

// ratio checks a fraction in (0, 1].
func (d *decoder) ratio(path string, r float64) {
	if !(r > 0 && r <= 1) {
		d.errorAt(path, "must be more than 0 and at most 1, got %v", r)
	}
}

func (d *decoder) checkSinks(path string, p *Pipeline) {
	if len(p.Sinks) == 0 {
		d.errorAt(path, "%s; declare at least one sink", d.missing(path))
	}
	for _, name := range sortedKeys(p.Sinks) {
		sp := joinPath(path, name)
		if !sinkName.MatchString(name) {
			d.errorAt(sp, "%q is not a valid sink name; use A-Z, a-z, 0-9, '.', '_' and '-'", name)
			continue
		}
		s := p.Sinks[name]
		if !d.exactlyOne(sp, "kafka, stdout, kinesis", s.Kafka != nil, s.Stdout != nil, s.Kinesis != nil) {
			continue
		}
		if s.Kafka != nil {
			d.checkOutputTopic(sp+".kafka.topic", s.Kafka.Topic, p.Source, "writing it back would loop")
		}
		if k := s.Kinesis; k != nil {
			d.checkOutputStream(sp+".kinesis", k, p.Source, "writing it back would loop")
		}
	}
}

// checkOutputStream checks a Kinesis stream the pipeline writes to: a
// valid name or ARN and endpoint, and not the stream it reads.
func (d *decoder) checkOutputStream(path string, k *KinesisSink, src Source, why string) {
	d.checkStream(path+".stream", k.Stream)
	d.checkEndpoint(path+".endpoint", k.Endpoint)
	if s := src.Kinesis; s != nil && (&KinesisSource{Stream: k.Stream}).StreamName() == s.StreamName() && k.Endpoint == s.Endpoint {
		d.errorAt(path+".stream", "%q is also the source stream of this pipeline; %s", k.Stream, why)
	}
}

func (d *decoder) checkDLQ(path string, p *Pipeline) {
	if p.DLQ == nil || !d.exactlyOne(path, "kafka, kinesis", p.DLQ.Kafka != nil, p.DLQ.Kinesis != nil) {
		return
	}
	if p.DLQ.Kafka != nil {
		d.checkOutputTopic(path+".kafka.topic", p.DLQ.Kafka.Topic, p.Source, "dead letters would loop back into the pipeline")
	} else {
		d.checkOutputStream(path+".kinesis", p.DLQ.Kinesis, p.Source, "dead letters would loop back into the pipeline")
	}
	d.ratio(path+".max_ratio", p.DLQ.MaxRatio)
	if p.DLQ.Window < 10 {
		d.errorAt(path+".window", "must be at least 10, got %d", p.DLQ.Window)
	}
}

// checkOutputTopic checks a topic the pipeline writes to: a valid name,
// and not one the pipeline reads.
func (d *decoder) checkOutputTopic(path, topic string, src Source, why string) {
	d.checkTopic(path, topic)
	if src.Kafka != nil && slices.Contains(src.Kafka.Topics, topic) {
		d.errorAt(path, "%q is also a source topic of this pipeline; %s", topic, why)
	}
}

// exactlyOne checks that exactly one of the kinds of a sink-like mapping
// is set; kinds lists their names for the message.
func (d *decoder) exactlyOne(path, kinds string, set ...bool) bool {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	if n != 1 {
		d.errorAt(path, "set exactly one of: %s", kinds)
	}
	return n == 1
}

func (d *decoder) positiveSize(path string, v int64) {
	if v <= 0 {
		d.errorAt(path, "must be greater than 0, got %d", v)
	}
}

func (d *decoder) positiveDuration(path string, v time.Duration) {
	if v <= 0 {
		d.errorAt(path, "must be greater than 0, got %v", v)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// templateError is what is wrong with an idempotency key template, or "".
func templateError(key string) string {
	if _, err := checkpoint.ParseTemplate(key); err != nil {
		return err.Error()
	}
	return ""
}
