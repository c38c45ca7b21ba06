package host_test

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	kinesissink "github.com/weirhq/weir/sinks/kinesis"
	kinesissrc "github.com/weirhq/weir/sources/kinesis"
)

// kenv is a Kinesis end-to-end environment: a kinesalite and a
// redis-server of the test's own, a stream, a Kafka broker for the
// outputs, and a side-effect file the echo handler appends "ID PID" to for
// every record it handles (so a record handled twice, by any process,
// shows).
type kenv struct {
	t         *testing.T
	endpoint  string
	redis     string
	brokers   []string
	cl        *kinesis.Client
	stream    string
	prefix    string
	sidefx    string
	lastSeq   map[string]string // shard → highest sequence number written
	lastSeqMu sync.Mutex
}

func newKinesisEnv(t *testing.T, shards int32) *kenv {
	t.Helper()
	e := &kenv{t: t, endpoint: testenv.Kinesis(t), redis: testenv.Redis(t), brokers: broker(t), lastSeq: map[string]string{}}
	cl, err := kinesissrc.NewClient(context.Background(), kinesissrc.ClientConfig{Region: "us-east-1", Endpoint: e.endpoint, Credentials: kinesissrc.StaticCredentials("fake", "fake")})
	if err != nil {
		t.Fatal(err)
	}
	e.cl = cl
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	e.stream = "s-" + suffix
	e.prefix = "kt-" + suffix + ":"
	e.sidefx = filepath.Join(t.TempDir(), "sidefx")
	if _, err := cl.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String(e.stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	e.waitActive()
	return e
}

func (e *kenv) waitActive() {
	e.t.Helper()
	waitFor(e.t, func() bool {
		out, err := e.cl.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(e.stream)})
		return err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive
	}, "stream "+e.stream+" active")
}

// yaml is the pipeline's config file. start is trim_horizon, latest or a
// time; idem is the idempotency key (position or off).
func (e *kenv) yaml(start, idem string) string {
	return fmt.Sprintf(`version: 1
kafka: { brokers: [%s] }
redis: { addr: %q, key_prefix: %q }
admin: { addr: "off" }
pipelines:
  - name: kin
    source:
      kinesis:
        stream: %s
        endpoint: %s
        region: us-east-1
        start: %q
        poll_interval: 200ms
        shard_sync_interval: 1s
        lease: { ttl: 3s, heartbeat: 500ms }
    batch: { max_records: 200, max_wait: 5ms }
    handler: { plugin: "builtin:echo", instances: 2, timeout: 10s, env: { WEIR_ECHO_SINK: out, WEIR_SIDEFX_FILE: %q } }
    ordering: key
    idempotency: { key: %s }
    sinks: { out: { kafka: { topic: %s-out } } }
    shutdown_timeout: 10s
`, strings.Join(e.brokers, ", "), e.redis, e.prefix, e.stream, e.endpoint, start, e.sidefx, idem, e.stream)
}

func (e *kenv) config(start, idem string) *config.File {
	e.t.Helper()
	cfg, err := config.Parse("kinesis.yaml", []byte(e.yaml(start, idem)))
	if err != nil {
		e.t.Fatalf("config: %v", err)
	}
	return cfg
}

// start runs a host in this process until the test ends (or stop).
func (e *kenv) start(cfg *config.File, name string, onEvent func(host.Event)) *running {
	log := zerolog.New(zerolog.NewTestWriter(e.t)).Level(testLogLevel()).With().Str("host", name).Logger()
	h := host.New(cfg, host.Options{Logger: log, HostID: name, OnEvent: onEvent,
		KinesisCredentials: kinesissrc.StaticCredentials("fake", "fake")})
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{h: h, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- h.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// put writes ids from..from+n-1, key k<id%keys>, value the id, 500 a call
// in order, and notes each shard's last sequence number.
func (e *kenv) put(from, n, keys int) {
	e.t.Helper()
	for i := from; i < from+n; i += 500 {
		var entries []types.PutRecordsRequestEntry
		for id := i; id < min(i+500, from+n); id++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("k" + strconv.Itoa(id%keys)), Data: []byte(strconv.Itoa(id))})
		}
		out, err := e.cl.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(e.stream), Records: entries})
		if err != nil {
			e.t.Fatalf("put records: %v", err)
		}
		if aws.ToInt32(out.FailedRecordCount) > 0 {
			e.t.Fatalf("put records: %d failed", aws.ToInt32(out.FailedRecordCount))
		}
		e.lastSeqMu.Lock()
		for _, r := range out.Records {
			sh, seq := aws.ToString(r.ShardId), aws.ToString(r.SequenceNumber)
			if cur := e.lastSeq[sh]; len(seq) > len(cur) || len(seq) == len(cur) && seq > cur {
				e.lastSeq[sh] = seq
			}
		}
		e.lastSeqMu.Unlock()
	}
}

// handled returns, per id in 0..n-1, the plugin pids that handled it, and
// the ids in the order the side-effect file has them.
func (e *kenv) handled(n int) (byID [][]string, order []int) {
	e.t.Helper()
	b, err := os.ReadFile(e.sidefx)
	if os.IsNotExist(err) {
		return make([][]string, n), nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	byID = make([][]string, n)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		id, pid, _ := strings.Cut(line, " ")
		i, err := strconv.Atoi(id)
		if err != nil || i < 0 || i >= n {
			e.t.Fatalf("side-effect line %q: not an id below %d", line, n)
		}
		byID[i] = append(byID[i], pid)
		order = append(order, i)
	}
	return byID, order
}

// count is how many records the handler has handled (repeats included).
func (e *kenv) count() int { return countLines(e.t, e.sidefx) }

// checkOnceInOrder fails the test unless every id in [from, to) was
// handled exactly once (maxRepeats > 0 allows that many repeats in all)
// and each key's ids were handled in increasing order. It returns the ids
// handled more than once.
func (e *kenv) checkOnceInOrder(n, from, to, keys, maxRepeats int) []int {
	e.t.Helper()
	byID, order := e.handled(n)
	var repeated []int
	for id := 0; id < n; id++ {
		c := len(byID[id])
		switch {
		case id >= from && id < to && c == 0:
			e.t.Errorf("id %d was never handled (lost)", id)
		case (id < from || id >= to) && c > 0:
			e.t.Errorf("id %d was handled but should not have been", id)
		case c > 1:
			repeated = append(repeated, id)
		}
	}
	if len(repeated) > maxRepeats {
		e.t.Errorf("%d ids handled more than once (allowed %d), e.g. %v", len(repeated), maxRepeats, repeated[:min(10, len(repeated))])
	}
	// Per key, the first handling of each id comes in id order (a repeat
	// of an id may come later: its batch was redone).
	seen := make([]bool, n)
	last := map[int]int{}
	for _, id := range order {
		if seen[id] {
			continue
		}
		seen[id] = true
		k := id % keys
		if prev, ok := last[k]; ok && id < prev {
			e.t.Errorf("key k%d: id %d handled after id %d (order broken)", k, id, prev)
			return repeated
		}
		last[k] = id
	}
	return repeated
}

// checkpoint is the sequence number checkpointed in a shard's lease.
func (e *kenv) checkpoint(shard string) string {
	return testenv.RedisCommand(e.t, e.redis, "HGET", e.prefix+"{kin}/kl/"+e.stream+"/"+shard, "ck")
}

// leaseField is one field of a shard's lease hash.
func (e *kenv) leaseField(shard, field string) string {
	return testenv.RedisCommand(e.t, e.redis, "HGET", e.prefix+"{kin}/kl/"+e.stream+"/"+shard, field)
}

func (e *kenv) shards() []types.Shard {
	e.t.Helper()
	out, err := e.cl.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(e.stream)})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Shards
}

// holdings counts, from a host's events, how many shards each host holds
// now, and when each shard was assigned and revoked.
type holdings struct {
	mu       sync.Mutex
	held     map[string]map[string]bool // host → shards
	assigned map[string][]time.Time     // shard → assign times
	revoked  map[string][]time.Time     // shard → revoke (drained) times
	lost     int
}

func newHoldings() *holdings {
	return &holdings{held: map[string]map[string]bool{}, assigned: map[string][]time.Time{}, revoked: map[string][]time.Time{}}
}

func (h *holdings) observe(name string) func(host.Event) {
	return func(ev host.Event) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.held[name] == nil {
			h.held[name] = map[string]bool{}
		}
		id := ev.Partition.ID
		switch ev.Kind {
		case host.EventAssigned:
			h.held[name][id] = true
			h.assigned[id] = append(h.assigned[id], ev.Time)
		case host.EventRevoked:
			delete(h.held[name], id)
			h.revoked[id] = append(h.revoked[id], ev.Time)
		case host.EventLost:
			delete(h.held[name], id)
			h.lost++
		}
	}
}

func (h *holdings) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held[name])
}

func (h *holdings) lostCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}

func size(short, full int) int {
	if testing.Short() {
		return short
	}
	return full
}

// One worker reads 4 shards to the end: every record handled once in key
// order, and each lease's checkpoint is the shard's last sequence number.
func TestKinesisOneWorkerFourShards(t *testing.T) {
	n, keys := size(5000, 50000), 500
	e := newKinesisEnv(t, 4)
	began := time.Now()
	e.put(0, n, keys)
	t.Logf("put %d records in %s", n, time.Since(began).Round(time.Millisecond))
	began = time.Now()
	r := e.start(e.config("trim_horizon", "position"), "w1", nil)
	waitFor(t, func() bool { return e.count() >= n }, fmt.Sprintf("%d records handled", n))
	t.Logf("handled %d records in %s", n, time.Since(began).Round(time.Millisecond))
	// The checkpoints reach the last records (commits follow completions).
	waitFor(t, func() bool {
		for sh, seq := range e.lastSeq {
			if e.checkpoint(sh) != seq {
				return false
			}
		}
		return true
	}, "checkpoints at the last sequence numbers")
	r.stop(t)
	e.checkOnceInOrder(n, 0, n, keys, 0)
	if len(e.lastSeq) != 4 {
		t.Errorf("records went to %d shards, want 4", len(e.lastSeq))
	}
	for sh, seq := range e.lastSeq {
		if got := e.checkpoint(sh); got != seq {
			t.Errorf("%s: checkpoint %s, want the last sequence number %s", sh, got, seq)
		}
		if owner := e.leaseField(sh, "owner"); owner != "" {
			t.Errorf("%s: still leased to %q after shutdown", sh, owner)
		}
	}
}

// Two workers started together split 4 shards 2/2; a third gets its share
// by graceful handover; with idempotency off, no record is handled twice.
func TestKinesisWorkersSplitAndHandOver(t *testing.T) {
	n, keys := size(3000, 12000), 200
	e := newKinesisEnv(t, 4)
	own := newHoldings()
	cfg := e.config("trim_horizon", "off")
	e.put(0, n/3, keys)
	e.start(cfg, "a", own.observe("a"))
	e.start(cfg, "b", own.observe("b"))
	waitFor(t, func() bool { return own.count("a") == 2 && own.count("b") == 2 }, "a and b holding 2 shards each")
	e.put(n/3, n/3, keys)
	waitFor(t, func() bool { return e.count() >= n/3 }, "the first third handled")
	e.start(cfg, "c", own.observe("c"))
	waitFor(t, func() bool {
		return own.count("c") == 1 && own.count("a")+own.count("b") == 3
	}, "c taking one shard by handover")
	e.put(2*n/3, n-2*n/3, keys)
	waitFor(t, func() bool { return e.count() >= n }, fmt.Sprintf("%d records handled", n))
	time.Sleep(500 * time.Millisecond) // a repeat would show by now
	e.checkOnceInOrder(n, 0, n, keys, 0)
	if l := own.lostCount(); l != 0 {
		t.Errorf("%d shards were lost, not handed over", l)
	}
}

// A worker stopped with its checkpoints, then a new one started: it goes
// on after the checkpoints (idempotency off: the checkpoint alone keeps
// records from being handled again).
func TestKinesisRestartFromCheckpoint(t *testing.T) {
	n, keys := size(2000, 6000), 100
	e := newKinesisEnv(t, 2)
	e.put(0, n/2, keys)
	r := e.start(e.config("trim_horizon", "off"), "w1", nil)
	waitFor(t, func() bool { return e.count() >= n/2 }, "the first half handled")
	r.stop(t)
	e.put(n/2, n/2, keys)
	e.start(e.config("trim_horizon", "off"), "w2", nil)
	waitFor(t, func() bool { return e.count() >= n }, "the second half handled")
	time.Sleep(500 * time.Millisecond)
	e.checkOnceInOrder(n, 0, n, keys, 0)
}

// start: latest skips what was written before the pipeline first took the
// shards; start: TIME skips what arrived before TIME.
func TestKinesisStartLatestAndTimestamp(t *testing.T) {
	t.Run("latest", func(t *testing.T) {
		e := newKinesisEnv(t, 2)
		own := newHoldings()
		e.put(0, 300, 10)
		e.start(e.config("latest", "off"), "w1", own.observe("w1"))
		waitFor(t, func() bool { return own.count("w1") == 2 }, "both shards taken")
		e.put(300, 300, 10)
		waitFor(t, func() bool { return e.count() >= 300 }, "the records after the start handled")
		time.Sleep(time.Second)
		e.checkOnceInOrder(600, 300, 600, 10, 0)
	})
	t.Run("timestamp", func(t *testing.T) {
		e := newKinesisEnv(t, 2)
		e.put(0, 300, 10)
		time.Sleep(1100 * time.Millisecond) // kinesalite's arrival times are in milliseconds
		at := time.Now().UTC().Truncate(time.Second).Add(time.Second)
		time.Sleep(time.Until(at) + 100*time.Millisecond)
		e.put(300, 300, 10)
		e.start(e.config(at.Format(time.RFC3339), "off"), "w1", nil)
		waitFor(t, func() bool { return e.count() >= 300 }, "the records after the time handled")
		time.Sleep(time.Second)
		e.checkOnceInOrder(600, 300, 600, 10, 0)
	})
}

// owners returns each shard's live lease owner, read from Redis.
func (e *kenv) owners() map[string]string {
	out := map[string]string{}
	for sh := range e.lastSeqShards() {
		out[sh] = e.leaseField(sh, "owner")
	}
	return out
}

func (e *kenv) lastSeqShards() map[string]bool {
	out := map[string]bool{}
	for _, sh := range e.shards() {
		out[aws.ToString(sh.ShardId)] = true
	}
	return out
}

// shardOf maps each id put so far to its shard.
func (e *kenv) putTracked(from, n, keys int, shardOf []string) {
	e.t.Helper()
	for i := from; i < from+n; i += 500 {
		var entries []types.PutRecordsRequestEntry
		for id := i; id < min(i+500, from+n); id++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("k" + strconv.Itoa(id%keys)), Data: []byte(strconv.Itoa(id))})
		}
		out, err := e.cl.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(e.stream), Records: entries})
		if err != nil {
			e.t.Errorf("put records: %v", err)
			return
		}
		for j, r := range out.Records {
			shardOf[i+j] = aws.ToString(r.ShardId)
		}
	}
}

// readOutputIDs reads the pipeline's output topic until it holds want
// distinct ids (or 60s pass) and returns how often each id was written.
func (e *kenv) readOutputIDs(want, n int) []int {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.stream+"-out"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	counts := make([]int, n)
	distinct := 0
	deadline := time.Now().Add(60 * time.Second)
	var settle time.Time
	for time.Now().Before(deadline) {
		if distinct >= want {
			if settle.IsZero() {
				settle = time.Now().Add(time.Second)
			} else if time.Now().After(settle) {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			id, err := strconv.Atoi(string(r.Value))
			if err != nil || id < 0 || id >= n {
				e.t.Errorf("output %q is not an id", r.Value)
				return
			}
			if counts[id] == 0 {
				distinct++
			}
			counts[id]++
		})
	}
	return counts
}

// ownerOf returns the i-th owner of per in name order.
func ownerOf(per map[string]int, i int) string {
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	slices.Sort(names)
	return names[i]
}

// Two `weir run` processes share 4 shards; one is SIGKILLed mid-run. Its
// leases expire (TTL 3s) and the survivor takes them over from their
// checkpoints: nothing is lost, records are repeated only on the killed
// worker's shards and within its batches in flight, and, with idempotency
// on, outputs repeat at most for a batch killed between its sink write and
// its done marks. In flight are the 2 handler instances' calls of 200
// records and the batches handled whose outputs and marks were still being
// written: a few more, when a loaded machine slows the writes (551 records
// were repeated once, with CI's race pass and benchmarks alongside), so
// the bound is 5 batches.
func TestKinesisKilledWorkerLeasesAreTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds weir and runs it as child processes; the full run covers it")
	}
	n, keys := 20000, 200
	e := newKinesisEnv(t, 4)
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	bin := buildWeir(t)
	dir := keepOnFailure(t, "weir-kinesis-kill-")
	cfgPath := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfgPath, []byte(e.yaml("trim_horizon", "position")), 0o644); err != nil {
		t.Fatal(err)
	}
	shardOf := make([]string, n)
	e.putTracked(0, n/4, keys, shardOf)
	a := startWeir(t, bin, cfgPath, dir, "a")
	b := startWeir(t, bin, cfgPath, dir, "b")
	split := func() bool {
		per := map[string]int{}
		for _, o := range e.owners() {
			if o != "" {
				per[o]++
			}
		}
		return len(per) == 2 && per[ownerOf(per, 0)] == 2
	}
	waitFor(t, split, "the workers holding 2 shards each")
	// Keep writing while the kill happens.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for from := n / 4; from < n; from += 1000 {
			e.putTracked(from, 1000, keys, shardOf)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	waitFor(t, func() bool { return e.count() >= n/3 }, "a third of the records handled")
	before := e.owners()
	aWorker := ""
	for _, o := range before {
		if strings.Contains(o, "-"+strconv.Itoa(a.cmd.Process.Pid)+"-") {
			aWorker = o
		}
	}
	a.kill(t)
	killedAt := time.Now()
	wg.Wait()
	waitFor(t, func() bool {
		byID, _ := e.handled(n)
		for _, pids := range byID {
			if len(pids) == 0 {
				return false
			}
		}
		return true
	}, "every record handled after the kill")
	t.Logf("every record handled %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	repeated := e.checkOnceInOrder(n, 0, n, keys, 5*200)
	killedShards := map[string]bool{}
	for sh, o := range before {
		if o == aWorker {
			killedShards[sh] = true
		}
	}
	if len(killedShards) == 0 {
		t.Errorf("could not tell which shards the killed worker held (owners %v, pid %d)", before, a.cmd.Process.Pid)
	}
	for _, id := range repeated {
		if !killedShards[shardOf[id]] {
			t.Errorf("id %d (shard %s) was handled twice, but the killed worker did not hold that shard", id, shardOf[id])
		}
	}
	counts := e.readOutputIDs(n, n)
	dupOut := 0
	for id, c := range counts {
		if c == 0 {
			t.Errorf("id %d has no output", id)
		}
		if c > 1 {
			dupOut++
		}
	}
	t.Logf("killed worker held %d shards; %d records handled twice, %d outputs written twice (idempotency on)", len(killedShards), len(repeated), dupOut)
	if dupOut > 2*200 {
		t.Errorf("%d outputs written twice; at most the killed worker's batches in flight may repeat", dupOut)
	}
	for sh, o := range e.owners() {
		if o == aWorker {
			t.Errorf("%s still leased to the killed worker", sh)
		}
	}
	b.stop(t)
	b.checkNoCommitWithoutOwnership(t)
	for sh, o := range e.owners() {
		if o != "" {
			t.Errorf("%s still leased to %s after the survivor stopped", sh, o)
		}
	}
}

// A shard is split and two shards are merged while records flow: children
// are leased only after their parents were read to the end and
// checkpointed there, nothing is lost or repeated, and each key's records
// are handled in order across the reshard.
func TestKinesisSplitAndMergeMidRun(t *testing.T) {
	n, keys := size(6000, 20000), 300
	e := newKinesisEnv(t, 2)
	own := newHoldings()
	cfg := e.config("trim_horizon", "off")
	e.start(cfg, "a", own.observe("a"))
	e.start(cfg, "b", own.observe("b"))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		step := n / 20
		for from := 0; from < n; from += step {
			e.put(from, step, keys)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitFor(t, func() bool { return e.count() >= n/5 }, "a fifth of the records handled")
	ctx := context.Background()
	// Split shard 0 at the middle of its hash range.
	shards := e.shards()
	var s0, s1 types.Shard
	for _, sh := range shards {
		switch aws.ToString(sh.ShardId) {
		case "shardId-000000000000":
			s0 = sh
		case "shardId-000000000001":
			s1 = sh
		}
	}
	lo, _ := new(big.Int).SetString(aws.ToString(s0.HashKeyRange.StartingHashKey), 10)
	hi, _ := new(big.Int).SetString(aws.ToString(s0.HashKeyRange.EndingHashKey), 10)
	mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
	if _, err := e.cl.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(e.stream),
		ShardToSplit: s0.ShardId, NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatalf("split: %v", err)
	}
	e.waitActive()
	waitFor(t, func() bool { return e.count() >= n/2 }, "half of the records handled")
	// Merge the upper child of shard 0 with shard 1 (adjacent ranges).
	var upper string
	for _, sh := range e.shards() {
		if aws.ToString(sh.ParentShardId) == aws.ToString(s0.ShardId) && aws.ToString(sh.HashKeyRange.StartingHashKey) == mid.String() {
			upper = aws.ToString(sh.ShardId)
		}
	}
	if upper == "" {
		t.Fatalf("no child of %s starting at %s in %v", aws.ToString(s0.ShardId), mid, e.shards())
	}
	if _, err := e.cl.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(e.stream),
		ShardToMerge: aws.String(upper), AdjacentShardToMerge: s1.ShardId}); err != nil {
		t.Fatalf("merge: %v", err)
	}
	e.waitActive()
	wg.Wait()
	waitFor(t, func() bool { return e.count() >= n }, fmt.Sprintf("%d records handled", n))
	time.Sleep(time.Second)
	e.checkOnceInOrder(n, 0, n, keys, 0)

	// Every parent was ended, and each child was first assigned after its
	// parents' last revoke.
	all := e.shards()
	if len(all) != 5 {
		t.Fatalf("%d shards after a split and a merge, want 5", len(all))
	}
	own.mu.Lock()
	defer own.mu.Unlock()
	for _, sh := range all {
		id := aws.ToString(sh.ShardId)
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if p == nil {
				continue
			}
			if e.leaseField(*p, "ended") != "1" {
				t.Errorf("parent %s of %s is not marked ended", *p, id)
			}
			pr := own.revoked[*p]
			ca := own.assigned[id]
			if len(pr) == 0 || len(ca) == 0 {
				t.Errorf("parent %s revoked %v, child %s assigned %v", *p, pr, id, ca)
				continue
			}
			if ca[0].Before(pr[len(pr)-1]) {
				t.Errorf("child %s assigned at %s, before its parent %s was done at %s", id, ca[0].Format(time.StampMilli), *p, pr[len(pr)-1].Format(time.StampMilli))
			}
		}
	}
}

// Kinesis in, Kinesis out: the echo handler's outputs land in another
// stream, each once, in key order.
func TestKinesisToKinesisSink(t *testing.T) {
	n, keys := size(1000, 4000), 50
	e := newKinesisEnv(t, 2)
	out := e.stream + "-out"
	if _, err := e.cl.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String(out), ShardCount: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(e.yaml("trim_horizon", "position"), fmt.Sprintf("sinks: { out: { kafka: { topic: %s-out } } }", e.stream),
		fmt.Sprintf("sinks: { out: { kinesis: { stream: %s, endpoint: %q, region: us-east-1 } } }", out, e.endpoint), 1)
	cfg, err := config.Parse("kinesis.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pipelines[0].Sinks["out"].Kinesis == nil {
		t.Fatal("the sink is not the kinesis one")
	}
	e.put(0, n, keys)
	e.start(cfg, "w1", nil)
	waitFor(t, func() bool { return e.count() >= n }, "every record handled")
	seen := make([]int, n)
	got := 0
	waitFor(t, func() bool {
		seen, got = make([]int, n), 0
		next := map[string]int{}
		for _, sh := range []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002"} {
			it, err := e.cl.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String(out), ShardId: aws.String(sh), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.cl.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Records {
				id, err := strconv.Atoi(string(r.Data))
				if err != nil || id >= n {
					t.Fatalf("output %q", r.Data)
				}
				k := aws.ToString(r.PartitionKey)
				if k != "k"+strconv.Itoa(id%keys) {
					t.Fatalf("output %d has partition key %s", id, k)
				}
				if id < next[k] {
					t.Fatalf("key %s: output %d after %d", k, id, next[k])
				}
				next[k] = id
				seen[id]++
				got++
			}
		}
		return got >= n
	}, "every output in the out stream")
	for id, c := range seen {
		if c != 1 {
			t.Errorf("id %d written %d times", id, c)
		}
	}
}

// A poison record of a Kinesis pipeline goes to its (Kafka) DLQ with the
// envelope naming the stream, the shard and the sequence number; the other
// records are handled, and the checkpoint passes the poison record.
func TestKinesisPoisonRecordToTheDLQ(t *testing.T) {
	n, keys := 500, 10
	e := newKinesisEnv(t, 2)
	y := e.yaml("trim_horizon", "position")
	y = strings.Replace(y, "WEIR_ECHO_SINK: out,", "WEIR_ECHO_SINK: out, WEIR_FAIL_ON: \"123\",", 1)
	y = strings.Replace(y, "    shutdown_timeout: 10s\n", fmt.Sprintf("    shutdown_timeout: 10s\n    dlq: { kafka: { topic: %s-dlq } }\n", e.stream), 1)
	cfg, err := config.Parse("kinesis.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	e.put(0, n, keys)
	e.start(cfg, "w1", nil)
	// ids containing "123": 123 only, below 500.
	waitFor(t, func() bool { return e.count() >= n-1 }, "every good record handled")
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.stream+"-dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var dead []*kgo.Record
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { dead = append(dead, r) })
		return len(dead) >= 1
	}, "the poison record in the DLQ")
	h := map[string]string{}
	for _, x := range dead[0].Headers {
		h[x.Key] = string(x.Value)
	}
	if string(dead[0].Value) != "123" || h["weir.source.stream"] != e.stream || !strings.HasPrefix(h["weir.source.partition"], "shardId-") ||
		len(h["weir.source.position"]) < 20 {
		t.Fatalf("dead letter %q with headers %v", dead[0].Value, h)
	}
	sh := h["weir.source.partition"]
	waitFor(t, func() bool { return e.checkpoint(sh) == e.lastSeq[sh] }, "the checkpoint past the poison record")
	byID, _ := e.handled(n)
	for id, pids := range byID {
		if id != 123 && len(pids) != 1 {
			t.Errorf("id %d handled %d times", id, len(pids))
		}
	}
}

// A Kinesis pipeline's dead letters (in a Kafka DLQ) are replayed back to
// the source stream once the handler is fixed: every record is then
// handled once, and a second replay sends nothing.
func TestKinesisReplayFromTheDLQToTheStream(t *testing.T) {
	n, keys := 1000, 20
	e := newKinesisEnv(t, 2)
	dlqTopic := e.stream + "-dlq"
	withDLQ := func(y string) string {
		return strings.Replace(y, "    shutdown_timeout: 10s\n", fmt.Sprintf("    shutdown_timeout: 10s\n    dlq: { kafka: { topic: %s } }\n", dlqTopic), 1)
	}
	buggy := strings.Replace(withDLQ(e.yaml("trim_horizon", "position")), "WEIR_ECHO_SINK: out,", "WEIR_ECHO_SINK: out, WEIR_FAIL_ON: \"77\",", 1)
	cfg, err := config.Parse("kinesis.yaml", []byte(buggy))
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := range n {
		if strings.Contains(strconv.Itoa(i), "77") {
			bad++
		}
	}
	e.put(0, n, keys)
	r := e.start(cfg, "buggy", nil)
	waitFor(t, func() bool { return e.count() >= n-bad }, "the good records handled")
	// The checkpoints pass the dead letters once they are written.
	waitFor(t, func() bool {
		for sh, seq := range e.lastSeq {
			if e.checkpoint(sh) != seq {
				return false
			}
		}
		return true
	}, "checkpoints at the end")
	r.stop(t)
	fixed, err := config.Parse("kinesis.yaml", []byte(withDLQ(e.yaml("trim_horizon", "position"))))
	if err != nil {
		t.Fatal(err)
	}
	e.start(fixed, "fixed", nil)
	replay := func() *dlq.ReplaySummary {
		rp, err := dlq.NewReplayer(dlq.ReplayConfig{Brokers: e.brokers, Topic: dlqTopic,
			Kinesis: &kinesissink.Streams{API: func(context.Context) (kinesissink.API, error) { return e.cl, nil }}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sum, err := rp.Run(ctx)
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		return sum
	}
	sum := replay()
	if sum.Replayed != int64(bad) || sum.ByDestination["kinesis:"+e.stream] != int64(bad) || sum.Invalid != 0 {
		t.Fatalf("replay summary: replayed %d (%v), invalid %d; want %d to kinesis:%s", sum.Replayed, sum.ByDestination, sum.Invalid, bad, e.stream)
	}
	waitFor(t, func() bool { return e.count() >= n }, "the replayed records handled")
	time.Sleep(500 * time.Millisecond)
	byID, _ := e.handled(n)
	for id, pids := range byID {
		if len(pids) != 1 {
			t.Errorf("id %d handled %d times", id, len(pids))
		}
	}
	if again := replay(); again.Replayed != 0 {
		t.Errorf("a second replay sent %d records", again.Replayed)
	}
}
