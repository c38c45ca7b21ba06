//go:build linux

package host_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// Scaling out under churn, modelled on franz-go's group ETL test
// (pkg/kgo/group_test.go): keyed records flow through 12 partitions while
// three `weir run` processes of one consumer group come and go. A starts
// alone; B and C join later; B is SIGKILLed and restarted (as B2) while
// records flow; A is stopped gracefully (SIGTERM) while records flow.
// Then:
//   - no id is lost;
//   - per key, the output (repeated ids dropped) is in input order;
//   - each partition is owned by one process at a time (from the processes'
//     JSON logs, and from the outputs: every output was written by the
//     process that owned its partition then);
//   - no process commits a partition after it was revoked (its logs), and
//     the group's committed offsets never go back (the broker);
//   - every duplicate is a record the killed process wrote but had not
//     committed, written again by the partition's next owner.
//
// Against real Kafka when WEIR_TEST_KAFKA is set, else against an in-process
// kfake that the weir processes reach on loopback. -short scales the input
// down (30,000 records) but keeps every step. The processes log to files
// kept when the test fails.
func TestScalingUnderChurn(t *testing.T) {
	n, keys, rate := 300_000, 1200, 10_000 // records, keys, records/s (~30s of input)
	if testing.Short() {
		n, keys, rate = 30_000, 240, 3_000
	}
	const parts = 12
	bin := buildWeir(t)
	e := newEnv(t, parts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := kafkasrc.EnsureTopics(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, parts, e.out)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	dir := keepOnFailure(t, "weir-churn-")
	cfgPath := filepath.Join(dir, "weir.yaml")
	writeChurnConfig(t, cfgPath, e)

	out := readOutputs(t, e, n)
	commits := watchCommittedOffsets(t, e)

	// The input is paced, and slows to a trickle at limit until the test
	// has taken the steps before it, so that each change of members happens
	// while records flow however slow the machine is.
	var produced, limit atomic.Int64
	setLimit := func(frac float64) { limit.Store(int64(frac * float64(n))) }
	setLimit(0.30)
	produceDone := make(chan error, 1)
	go func() {
		produceDone <- producePaced(e, n, keys, parts, rate, &produced, &limit)
	}()
	flowing := func(step string) {
		t.Helper()
		if produced.Load() >= int64(n) {
			t.Fatalf("the input ended before %s; the test no longer covers churn while records flow", step)
		}
	}
	atLeast := func(frac float64) func() bool {
		return func() bool { return produced.Load() >= int64(frac*float64(n)) }
	}

	procs := map[string]*weirProc{}
	start := func(name string) *weirProc {
		p := startWeir(t, bin, cfgPath, dir, name)
		procs[name] = p
		out.register(p)
		return p
	}
	a := start("A")
	waitUntil(t, 90*time.Second, "A to write outputs", func() bool { return out.wrote(a) > 0 }, procs)
	waitUntil(t, 90*time.Second, "10% of the input", atLeast(0.10), procs)
	b := start("B")
	waitUntil(t, 90*time.Second, "B to write outputs", func() bool { return out.wrote(b) > 0 }, procs)
	setLimit(0.55)
	waitUntil(t, 90*time.Second, "25% of the input", atLeast(0.25), procs)
	c := start("C")
	waitUntil(t, 90*time.Second, "C to write outputs", func() bool { return out.wrote(c) > 0 }, procs)
	setLimit(0.80)
	waitUntil(t, 90*time.Second, "40% of the input", atLeast(0.40), procs)
	// Kill B in the middle of its work: it wrote outputs a moment ago.
	waitUntil(t, 90*time.Second, "B to be writing", func() bool { return out.writing(b, 200*time.Millisecond) }, procs)
	flowing("B was killed")
	b.kill(t)
	setLimit(1)
	time.Sleep(500 * time.Millisecond)
	b2 := start("B2")
	waitUntil(t, 90*time.Second, "60% of the input", atLeast(0.60), procs)
	flowing("A was stopped")
	a.stop(t)
	if err := <-produceDone; err != nil {
		t.Fatal(err)
	}
	// B's partitions wait for its session to time out (6s).
	waitUntil(t, 4*time.Minute, fmt.Sprintf("all %d ids in the output", n), func() bool { return out.unique() == n }, procs)
	time.Sleep(time.Second) // let repeats of the last records arrive
	c.stop(t)
	b2.stop(t)
	recs := out.drain(t, e)
	e.requireCommittedToEnd()
	for _, p := range commits.stop() {
		t.Error(p)
	}

	incs := []*weirProc{a, b, c, b2}
	for _, p := range []*weirProc{a, c} {
		if p.commitCount() == 0 {
			t.Errorf("%s logged no commit: without the host's debug line \"committed\" the test cannot check that no process commits a partition it no longer owns", p.name)
		}
	}
	own := ownershipFromLogs(t, incs)
	for _, p := range incs {
		p.checkNoCommitWithoutOwnership(t)
		for _, l := range p.errorLines() {
			t.Errorf("%s logged an error: %s", p.name, l)
		}
	}
	inputOffsets := readInputOffsets(t, e, n)
	checkChurnOutputs(t, recs, n, keys, parts, own, b, inputOffsets, out.liveWriters())
	if out.wrote(b2) == 0 {
		t.Error("B2, started after the kill, wrote no output")
	}
}

// buildWeir builds the weir command into the test's temporary folder.
func buildWeir(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weir")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/weirhq/weir/cmd/weir")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/weir: %v\n%s", err, out)
	}
	return bin
}

// keepOnFailure returns a new folder that is removed when the test ends,
// unless it failed or WEIR_TEST_KEEP_LOGS is set (then its path is logged).
func keepOnFailure(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("WEIR_TEST_KEEP_LOGS") != "" {
			t.Logf("the weir processes' configs and logs are kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// writeChurnConfig writes the churn test's config file. A short session
// timeout lets the group give a killed member's partitions away in seconds.
func writeChurnConfig(t *testing.T, path string, e *env) {
	t.Helper()
	y := fmt.Sprintf(`version: 1
kafka: { brokers: [%s], session_timeout: 6s, heartbeat_interval: 500ms }
pipelines:
  - name: churn
    source: { kafka: { topics: [%s], group: %s } }
    batch: { max_records: 200, max_bytes: 1MiB, max_wait: 10ms }
    handler: { plugin: "builtin:echo", instances: 2, timeout: 10s, env: { WEIR_ECHO_SINK: out } }
    ordering: key
    retry: { max_attempts: 5, initial_backoff: 10ms, max_backoff: 200ms }
    sinks: { out: { kafka: { topic: %s } } }
    shutdown_timeout: 20s
`, strings.Join(e.brokers, ", "), e.in, e.group, e.out)
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}

// producePaced writes ids 0..n-1 at about rate records a second, and at a
// tenth of it past limit: id's key is k<id%keys>, on partition
// (id%keys)%parts, so each key's ids increase.
func producePaced(e *env, n, keys, parts, rate int, produced, limit *atomic.Int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	const tick = 100 * time.Millisecond
	chunk := max(rate/10, 1)
	next := time.Now()
	for from := 0; from < n; {
		m := min(chunk, n-from)
		if int64(from) >= limit.Load() {
			m = min(max(chunk/10, 1), n-from) // a trickle
		}
		err := loadtest.Produce(context.Background(), cl, e.in, m, func(i int) *kgo.Record {
			id := from + i
			k := id % keys
			return &kgo.Record{Key: []byte("k" + strconv.Itoa(k)), Value: []byte(strconv.Itoa(id)), Partition: int32(k % parts)}
		})
		if err != nil {
			return err
		}
		produced.Add(int64(m))
		from += m
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	return nil
}

// --- the weir processes ----------------------------------------------------

// weirProc is one `weir run` process (an incarnation: a restart is another
// weirProc). Its JSON log goes to NAME.log and is parsed as it is written.
type weirProc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}

	mu      sync.Mutex
	events  []logEvent
	errs    []string
	tail    []string // the last lines, for failure reports
	killed  bool
	end     time.Time // when it exited or was killed
	waitErr error
}

// logEvent is a log line about partition ownership or a commit.
type logEvent struct {
	at        time.Time         // when it was logged (see logTime)
	msg       string            // partition assigned | partition revoked | partition lost | committed
	part      string            // stream/partition, for the first three
	positions map[string]string // committed: stream/partition -> position
}

// startWeir starts `weir run -c cfgPath`; env is added to the test's
// environment (NAME=VALUE).
func startWeir(t *testing.T, bin, cfgPath, dir, name string, env ...string) *weirProc {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	// Debug level for the per-commit log lines.
	cmd := exec.Command(bin, "run", "-c", cfgPath, "--log-format", "json", "--log-level", "debug")
	cmd.Stdout = logf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	// A test that dies must not leave weir processes behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &weirProc{name: name, cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.started = time.Now()
	go func() {
		defer close(p.exited)
		w := bufio.NewWriter(logf)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.parse(line, time.Now())
			w.Write(line)
			w.WriteByte('\n')
		}
		w.Flush()
		logf.Close()
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		if p.end.IsZero() {
			p.end = time.Now()
		}
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// logTime is when a line was logged: its own time field when that has
// sub-second precision, else when the test read it (the processes write
// each line with one unbuffered write, so that is close).
func logTime(field string, read time.Time) (time.Time, bool) {
	if strings.Contains(field, ".") {
		if ts, err := time.Parse(time.RFC3339Nano, field); err == nil {
			return ts, true
		}
	}
	return read, false
}

var logPrecise atomic.Bool // some line had a sub-second time field

func (p *weirProc) parse(line []byte, read time.Time) {
	var l struct {
		Time      string            `json:"time"`
		Level     string            `json:"level"`
		Message   string            `json:"message"`
		Stream    string            `json:"stream"`
		Partition any               `json:"partition"`
		Positions map[string]string `json:"positions"`
	}
	interesting := bytes.Contains(line, []byte(`"message":"partition `)) ||
		bytes.Contains(line, []byte(`"message":"committed"`)) || bytes.Contains(line, []byte(`"level":"error"`))
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 40 {
		p.tail = p.tail[1:]
	}
	p.tail = append(p.tail, string(line))
	if !interesting {
		return
	}
	if err := json.Unmarshal(line, &l); err != nil {
		p.errs = append(p.errs, fmt.Sprintf("unparsable log line %q: %v", line, err))
		return
	}
	at, precise := logTime(l.Time, read)
	if precise {
		logPrecise.Store(true)
	}
	if l.Level == "error" {
		p.errs = append(p.errs, string(line))
	}
	switch l.Message {
	case "partition assigned", "partition revoked", "partition lost":
		p.events = append(p.events, logEvent{at: at, msg: l.Message, part: l.Stream + "/" + fmt.Sprint(l.Partition)})
	case "committed":
		p.events = append(p.events, logEvent{at: at, msg: l.Message, positions: l.Positions})
	}
}

// assigned reports whether the process was assigned a partition yet.
func (p *weirProc) assigned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if ev.msg == "partition assigned" {
			return true
		}
	}
	return false
}

func (p *weirProc) errorLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errs
}

// kill SIGKILLs the process (it then owns nothing: its end is now).
func (p *weirProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing %s: %v", p.name, err)
	}
	now := time.Now()
	p.mu.Lock()
	p.killed, p.end = true, now
	p.mu.Unlock()
	<-p.exited
}

// stop sends SIGTERM and expects a clean exit (status 0) within a minute.
func (p *weirProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stopping %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("%s did not stop within a minute of SIGTERM", p.name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitErr != nil {
		t.Errorf("%s exited with %v after SIGTERM; the end of its log:\n%s", p.name, p.waitErr, strings.Join(p.tail, "\n"))
	}
}

// checkNoCommitWithoutOwnership reads the process's log in order: a commit
// of a partition it did not own (never assigned, or revoked or lost since)
// is an error.
func (p *weirProc) checkNoCommitWithoutOwnership(t checkReporter) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	owned := map[string]bool{}
	bad := 0
	for _, ev := range p.events {
		switch ev.msg {
		case "partition assigned":
			owned[ev.part] = true
		case "partition revoked", "partition lost":
			owned[ev.part] = false
		case "committed":
			for part, pos := range ev.positions {
				if !owned[part] && bad < 5 {
					bad++
					t.Errorf("%s committed %s at %s while it did not own it (after its revoke, or before its assignment)", p.name, part, pos)
				}
			}
		}
	}
}

// commitCount counts the process's per-commit log lines.
func (p *weirProc) commitCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := 0
	for _, ev := range p.events {
		if ev.msg == "committed" {
			c++
		}
	}
	return c
}

// lastCommitted returns, per partition, the last position the process
// logged as committed.
func (p *weirProc) lastCommitted() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int64{}
	for _, ev := range p.events {
		if ev.msg == "committed" {
			for part, pos := range ev.positions {
				if o, err := strconv.ParseInt(pos, 10, 64); err == nil {
					out[part] = o
				}
			}
		}
	}
	return out
}

// --- ownership ---------------------------------------------------------------

// checkReporter is what the churn checks report to: the test, or a recorder
// in TestChurnChecksCatchViolations.
type checkReporter interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// ownSpan is one process's ownership of one partition.
type ownSpan struct {
	owner    *weirProc
	from, to time.Time
}

// partOwners maps stream/partition to its owners' spans, ordered by start.
type partOwners map[string][]ownSpan

// ownTolerance is how far apart two processes' clocks of events may be: tight
// when the logs carry sub-second times, looser when the test timed the lines
// as it read them.
func ownTolerance() time.Duration {
	if logPrecise.Load() {
		return 20 * time.Millisecond
	}
	return 300 * time.Millisecond
}

// ownershipFromLogs builds every process's spans from its assigned, revoked
// and lost lines (a span still open ends when the process exited or was
// killed) and fails the test where two processes' spans of one partition
// overlap.
func ownershipFromLogs(t checkReporter, procs []*weirProc) partOwners {
	t.Helper()
	own := partOwners{}
	for _, p := range procs {
		p.mu.Lock()
		open := map[string]time.Time{}
		for _, ev := range p.events {
			switch ev.msg {
			case "partition assigned":
				if _, ok := open[ev.part]; ok {
					t.Errorf("%s was assigned %s twice without a revoke between", p.name, ev.part)
				}
				open[ev.part] = ev.at
			case "partition revoked", "partition lost":
				if from, ok := open[ev.part]; ok {
					own[ev.part] = append(own[ev.part], ownSpan{p, from, ev.at})
					delete(open, ev.part)
				}
			}
		}
		for part, from := range open {
			if !p.killed {
				t.Errorf("%s exited owning %s: no revoke was logged", p.name, part)
			}
			own[part] = append(own[part], ownSpan{p, from, p.end})
		}
		p.mu.Unlock()
	}
	tol := ownTolerance()
	for part, spans := range own {
		sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
		for i := 1; i < len(spans); i++ {
			for _, prev := range spans[:i] {
				if prev.owner != spans[i].owner && spans[i].from.Add(tol).Before(prev.to) {
					t.Errorf("%s owned by %s from %s and by %s until %s: two owners at once",
						part, spans[i].owner.name, spans[i].from.Format("15:04:05.000"), prev.owner.name, prev.to.Format("15:04:05.000"))
				}
			}
		}
		own[part] = spans
	}
	if len(own) == 0 {
		t.Errorf("no partition assignment found in the processes' logs")
	}
	return own
}

// owners returns the processes that owned part at ts (within the tolerance).
func (o partOwners) owners(part string, ts time.Time) []*weirProc {
	tol := ownTolerance()
	var out []*weirProc
	for _, s := range o[part] {
		if !ts.Before(s.from.Add(-tol)) && !ts.After(s.to.Add(tol)) {
			out = append(out, s.owner)
		}
	}
	return out
}

// --- outputs -----------------------------------------------------------------

// outputReader consumes the output topic from the start for the whole test.
// It ties each new producer id to the newest registered process that has
// none yet (the processes start one at a time, each after the one before
// wrote), so that the test can tell who is writing while it runs.
type outputReader struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	recs      []*kgo.Record
	seen      []bool
	uniq      int
	procs     []*weirProc
	pidOf     map[*weirProc]int64
	procOf    map[int64]*weirProc
	count     map[*weirProc]int
	lastWrite map[*weirProc]time.Time
	next      map[int32]int64 // per partition, the offset after the last read
}

func readOutputs(t *testing.T, e *env, n int) *outputReader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &outputReader{cancel: cancel, done: make(chan struct{}), seen: make([]bool, n),
		pidOf: map[*weirProc]int64{}, procOf: map[int64]*weirProc{}, count: map[*weirProc]int{}, lastWrite: map[*weirProc]time.Time{},
		next: map[int32]int64{}}
	go func() {
		defer close(r.done)
		defer cl.Close()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			r.mu.Lock()
			fs.EachRecord(r.add)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *outputReader) add(rec *kgo.Record) {
	r.recs = append(r.recs, rec)
	r.next[rec.Partition] = rec.Offset + 1
	if id, err := strconv.Atoi(string(rec.Value)); err == nil && id >= 0 && id < len(r.seen) && !r.seen[id] {
		r.seen[id] = true
		r.uniq++
	}
	p, known := r.procOf[rec.ProducerID]
	if !known {
		for i := len(r.procs) - 1; i >= 0; i-- {
			if _, has := r.pidOf[r.procs[i]]; !has {
				p = r.procs[i]
				r.pidOf[p] = rec.ProducerID
				break
			}
		}
		r.procOf[rec.ProducerID] = p // nil: nobody left to tie it to
	}
	if p != nil {
		r.count[p]++
		if rec.Timestamp.After(r.lastWrite[p]) {
			r.lastWrite[p] = rec.Timestamp
		}
	}
}

// register declares a process just started.
func (r *outputReader) register(p *weirProc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

func (r *outputReader) unique() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uniq
}

// wrote counts p's outputs so far.
func (r *outputReader) wrote(p *weirProc) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[p]
}

// writing reports whether p wrote an output within the last d.
func (r *outputReader) writing(p *weirProc, d time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.lastWrite[p]) < d
}

// liveWriters returns the producer ids tied to processes as they ran.
func (r *outputReader) liveWriters() map[int64]*weirProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int64]*weirProc{}
	for pid, p := range r.procOf {
		if p != nil {
			out[pid] = p
		}
	}
	return out
}

// drain waits until the reader has read the output topic to its current end
// (call it once every writer stopped), then stops it and returns every
// output read.
func (r *outputReader) drain(t *testing.T, e *env) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := loadtest.EndOffsets(ctx, e.adm, e.out)
	if err != nil {
		t.Fatal(err)
	}
	for {
		r.mu.Lock()
		behind := 0
		for p, end := range ends {
			if r.next[p] < end {
				behind++
			}
		}
		r.mu.Unlock()
		if behind == 0 {
			return r.stop()
		}
		if ctx.Err() != nil {
			t.Fatalf("the output reader did not reach the end of %d partitions of %s", behind, e.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *outputReader) stop() []*kgo.Record {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recs
}

// readInputOffsets reads the input topic back: the offset of each id.
func readInputOffsets(t *testing.T, e *env, n int) []int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = -1
	}
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d input records back", got, n)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			id, err := strconv.Atoi(string(rec.Value))
			if err == nil && id >= 0 && id < n && offs[id] < 0 {
				offs[id] = rec.Offset
				got++
			}
		})
	}
	return offs
}

// checkChurnOutputs checks the outputs of the churn test: no id lost; per
// key, in input order once repeated ids are dropped; each output written by
// the process that owned its input partition then; duplicates only of
// records the killed process had written but not committed.
func checkChurnOutputs(t checkReporter, recs []*kgo.Record, n, keys, parts int, own partOwners, killed *weirProc, inputOffsets []int64, live map[int64]*weirProc) {
	t.Helper()
	inPart := func(id int) string {
		for part := range own {
			if strings.HasSuffix(part, "/"+strconv.Itoa((id%keys)%parts)) {
				return part
			}
		}
		return "?"
	}
	// Who wrote each output: a producer id belongs to one process, found
	// from the outputs that only one process could have written.
	votes := map[int64]map[*weirProc]int{}
	for _, r := range recs {
		id, _ := strconv.Atoi(string(r.Value))
		if o := own.owners(inPart(id), r.Timestamp); len(o) == 1 {
			if votes[r.ProducerID] == nil {
				votes[r.ProducerID] = map[*weirProc]int{}
			}
			votes[r.ProducerID][o[0]]++
		}
	}
	writer := map[int64]*weirProc{}
	for pid, vs := range votes {
		var best *weirProc
		for p, c := range vs {
			if best == nil || c > vs[best] {
				best = p
			}
		}
		writer[pid] = best
		if lw := live[pid]; lw != nil && lw != best {
			t.Errorf("producer id %d: its outputs were written where %s owned the partitions, but it first wrote while %s was the newest process", pid, best.name, lw.name)
		}
	}
	var pids []string
	for pid, p := range writer {
		pids = append(pids, fmt.Sprintf("%d=%s", pid, p.name))
	}
	sort.Strings(pids)
	t.Logf("%d outputs for %d ids; producer ids: %v; per-commit log lines: %v; log times precise: %v",
		len(recs), n, pids, commitCounts(own), logPrecise.Load())

	// Each output was written by an owner of its partition at its time.
	misowned := 0
	for _, r := range recs {
		id, _ := strconv.Atoi(string(r.Value))
		w := writer[r.ProducerID]
		if w == nil {
			if misowned < 5 {
				t.Errorf("output %s (id %d) has producer id %d, which no process can be tied to", r.Key, id, r.ProducerID)
			}
			misowned++
			continue
		}
		ok := false
		for _, o := range own.owners(inPart(id), r.Timestamp) {
			ok = ok || o == w
		}
		if !ok {
			if misowned < 5 {
				t.Errorf("output id %d of %s written by %s at %s, when %s was not its owner",
					id, inPart(id), w.name, r.Timestamp.Format("15:04:05.000"), w.name)
			}
			misowned++
		}
	}

	// Loss, order, duplicates.
	copies := make([][]*weirProc, n)
	last := map[string]int{}
	orderBreaks := 0
	for _, r := range recs { // per partition in offset order, so per key
		id, err := strconv.Atoi(string(r.Value))
		if err != nil || id < 0 || id >= n {
			t.Errorf("output value %q is not an input id", r.Value)
			continue
		}
		repeat := len(copies[id]) > 0
		copies[id] = append(copies[id], writer[r.ProducerID])
		if repeat {
			continue
		}
		if prev, ok := last[string(r.Key)]; ok && id <= prev && orderBreaks < 5 {
			orderBreaks++
			t.Errorf("key %s: id %d after %d (order broken)", r.Key, id, prev)
		}
		last[string(r.Key)] = id
	}
	var lost []int
	dups, badDups := 0, 0
	killedCommitted := killed.lastCommitted()
	for id, cs := range copies {
		if len(cs) == 0 {
			lost = append(lost, id)
			continue
		}
		if len(cs) == 1 {
			continue
		}
		dups += len(cs) - 1
		fromKilled, others := 0, 0
		for _, w := range cs {
			if w == killed {
				fromKilled++
			} else {
				others++
			}
		}
		if fromKilled > 1 || others > 1 || fromKilled == 0 {
			if badDups < 5 {
				var names []string
				for _, w := range cs {
					names = append(names, procName(w))
				}
				t.Errorf("id %d written %d times, by %v: only a record the killed process (%s) wrote may be written again, once, by another", id, len(cs), names, killed.name)
			}
			badDups++
			continue
		}
		// The killed process must not have committed it.
		if c, ok := killedCommitted[inPart(id)]; ok && inputOffsets[id] <= c {
			if badDups < 5 {
				t.Errorf("id %d (input offset %d of %s) written again, though %s had committed up to %d", id, inputOffsets[id], inPart(id), killed.name, c)
			}
			badDups++
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d ids lost, first: %v", len(lost), lost[:min(len(lost), 10)])
	}
	t.Logf("%d duplicate outputs, all from records %s had not committed: %v", dups, killed.name, badDups == 0)
	if badDups > 0 || misowned > 0 {
		t.Errorf("%d bad duplicates, %d outputs not written by their partition's owner", badDups, misowned)
	}
}

func procName(p *weirProc) string {
	if p == nil {
		return "?"
	}
	return p.name
}

func commitCounts(own partOwners) map[string]int {
	out := map[string]int{}
	for _, spans := range own {
		for _, s := range spans {
			out[s.owner.name] = s.owner.commitCount()
		}
	}
	return out
}

// --- the group's committed offsets --------------------------------------------

// commitWatch polls the group's committed offsets and records any that went
// back: a commit from a process that no longer owned the partition.
type commitWatch struct {
	cancel   context.CancelFunc
	done     chan struct{}
	problems []string
}

func watchCommittedOffsets(t *testing.T, e *env) *commitWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &commitWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := map[int32]int64{}
		for ctx.Err() == nil {
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			offs, err := e.adm.FetchOffsets(qctx, e.group)
			qcancel()
			if err == nil {
				offs.Each(func(o kadm.OffsetResponse) {
					if o.Topic != e.in || o.Err != nil {
						return
					}
					if prev, ok := last[o.Partition]; ok && o.At < prev && len(w.problems) < 10 {
						w.problems = append(w.problems, fmt.Sprintf("the committed offset of %s/%d went back from %d to %d", o.Topic, o.Partition, prev, o.At))
					}
					last[o.Partition] = o.At
				})
			} else if !errors.Is(err, context.Canceled) {
				_ = err // the coordinator may be moving; poll again
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *commitWatch) stop() []string {
	w.cancel()
	<-w.done
	return w.problems
}

// waitUntil polls cond; past within it fails the test with the end of each
// process's log.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool, procs map[string]*weirProc) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			var b strings.Builder
			for name, p := range procs {
				p.mu.Lock()
				fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", name, strings.Join(p.tail[max(len(p.tail)-10, 0):], "\n"))
				p.mu.Unlock()
			}
			t.Fatalf("timed out after %s waiting for %s\n%s", within, what, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
