package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// Probation of a new handler version: it is promoted (the previous version
// stopped) after probationSuccesses batches succeed, and rolled back after
// probationFailures batches fail, whichever comes first. A batch fails
// probation when it fails systemically (crash, timeout, a batch error that
// is not the data's fault, every record failing retryably) or when every
// one of its records (two or more) is rejected: a version that rejects
// everything is a bad deploy, not bad data.
const (
	probationSuccesses = 10
	probationFailures  = 3
)

// ErrUpgradeInProgress is returned by an upgrade asked for while another is
// starting or still on probation.
var ErrUpgradeInProgress = errors.New("a handler upgrade is already in progress")

// handlerGen is one version of a pipeline's handler: a pool of processes
// started from the plugin file as it was at that time.
type handlerGen struct {
	n    int // 1, 2, ... for logs
	pool *plugins.Pool
	info plugins.Info
	hash string // sha256 of the plugin file; "" for a builtin
	// Under rollingHandler.mu:
	inflight map[record.Partition]int
	ok, bad  int // probation counts
}

// rollingHandler is a pipeline's Dispatcher across handler upgrades. New
// batches go to the current version; an upgrade starts a new pool, checks
// its Describe, and switches new batches to it while batches in flight
// finish on the old one. The old pool stands by until the new version
// passes probation (then it is closed) or fails it (then new batches go
// back to the old one and the new pool is closed). A partition's batches
// never run on two versions at once, so its outputs switch version once.
// All methods are safe for concurrent use.
type rollingHandler struct {
	name  string
	log   zerolog.Logger
	start func(ctx context.Context) (*plugins.Pool, error)
	// path is the plugin file whose hash identifies a version; "" for a
	// builtin (which cannot change under a running weir).
	path         string
	closeTimeout time.Duration
	// stat is the plugin file as it was before the first version was
	// hashed: the watcher's starting point, so a change made while the
	// first version started is not missed.
	stat os.FileInfo

	mu       sync.Mutex
	cur      *handlerGen
	prev     *handlerGen   // the version before cur, while cur is on probation
	live     []*handlerGen // every version whose pool is not closed yet
	changed  chan struct{} // closed (and replaced) when a partition's in-flight count on a version drops to 0
	starting bool
	closed   bool
	gens     int
	lastBad  string // hash of the last version that failed to start or was rolled back
	restarts int64  // plugin restarts of closed pools
	// upgrades counts upgrades by outcome (see upgradeOutcomes).
	upgrades map[string]int64
	bg       sync.WaitGroup
	stop     context.CancelFunc // stops the watcher
}

// newRollingHandler starts the first version of pc's handler.
func newRollingHandler(ctx context.Context, name, path string, closeTimeout time.Duration, log zerolog.Logger,
	start func(context.Context) (*plugins.Pool, error)) (*rollingHandler, error) {
	rh := &rollingHandler{name: name, log: log, start: start, path: path, closeTimeout: closeTimeout,
		changed: make(chan struct{}), stop: func() {}, upgrades: map[string]int64{}}
	if path != "" {
		rh.stat, _ = os.Stat(path)
	}
	hash, err := rh.hash()
	if err != nil {
		return nil, err
	}
	pool, err := start(ctx)
	if err != nil {
		return nil, err
	}
	rh.gens = 1
	rh.cur = &handlerGen{n: 1, pool: pool, info: pool.Info(), hash: hash, inflight: map[record.Partition]int{}}
	rh.live = []*handlerGen{rh.cur}
	return rh, nil
}

// hash returns the sha256 of the plugin file ("" for a builtin).
func (rh *rollingHandler) hash() (string, error) {
	if rh.path == "" {
		return "", nil
	}
	f, err := os.Open(rh.path)
	if err != nil {
		return "", fmt.Errorf("reading the plugin file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading the plugin file %s: %w", rh.path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Info is the current version's Describe.
func (rh *rollingHandler) Info() plugins.Info {
	rh.mu.Lock()
	defer rh.mu.Unlock()
	return rh.cur.info
}

// Restarts counts plugin process restarts over every version.
func (rh *rollingHandler) Restarts() int64 {
	rh.mu.Lock()
	defer rh.mu.Unlock()
	n := rh.restarts
	for _, g := range rh.live {
		n += g.pool.Restarts()
	}
	return n
}

// Alive counts the handler processes up, over the current version's pool
// (the one new batches go to), and its size.
func (rh *rollingHandler) Alive() (up, total int) {
	rh.mu.Lock()
	cur := rh.cur
	rh.mu.Unlock()
	return cur.pool.Alive()
}

// upgradeOutcomes are the outcome label values of
// weir_handler_upgrades_total: a new version took the traffic (switched),
// then passed probation (completed) or was rolled back; or it never took
// the traffic (failed_to_start).
var upgradeOutcomes = []string{"switched", "completed", "rolled_back", "failed_to_start"}

var (
	mUpgrades = desc("weir_handler_upgrades_total", "Handler upgrades by outcome: switched (the new version took the traffic), completed (it passed probation), rolled_back, failed_to_start.", "outcome")
	mVersion  = desc("weir_handler_info", "1 for the handler version new batches go to.", "handler", "version")
)

// collectUpgrades sends pl's upgrade metrics.
func (pl *pipeline) collectUpgrades(ch chan<- prometheus.Metric) {
	rh, ok := pl.handler.(*rollingHandler)
	if !ok {
		return
	}
	rh.mu.Lock()
	counts := make([]int64, len(upgradeOutcomes))
	for i, o := range upgradeOutcomes {
		counts[i] = rh.upgrades[o]
	}
	info := rh.cur.info
	rh.mu.Unlock()
	for i, o := range upgradeOutcomes {
		ch <- prometheus.MustNewConstMetric(mUpgrades, prometheus.CounterValue, float64(counts[i]), pl.cfg.Name, o)
	}
	ch <- prometheus.MustNewConstMetric(mVersion, prometheus.GaugeValue, 1, pl.cfg.Name, info.Name, info.Version)
}

// versionedError is a handler call's error with the version that failed.
type versionedError struct {
	info plugins.Info
	err  error
}

func (e *versionedError) Error() string { return e.err.Error() }
func (e *versionedError) Unwrap() error { return e.err }

// handlerOf returns the handler a call's error came from, if known.
func handlerOf(err error) (plugins.Info, bool) {
	if ve, ok := errors.AsType[*versionedError](err); ok {
		return ve.info, true
	}
	return plugins.Info{}, false
}

// Handle implements Dispatcher: it sends b to the current version, once no
// other version has a batch of b's partition in flight. The result's
// Handler (or the error, see handlerOf) names the version that handled it.
func (rh *rollingHandler) Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
	return rh.handle(ctx, b, len(b.Records), func(p *plugins.Pool) (*plugins.Result, error) {
		return p.Handle(ctx, b)
	})
}

// HandleEncoded implements encodedDispatcher: Handle of a batch whose
// records come encoded (see plugins.Pool.HandleEncoded).
func (rh *rollingHandler) HandleEncoded(ctx context.Context, b *plugins.Batch, recs plugins.EncodedRecords) (*plugins.Result, error) {
	return rh.handle(ctx, b, recs.N, func(p *plugins.Pool) (*plugins.Result, error) {
		return p.HandleEncoded(ctx, b, recs)
	})
}

// handle makes a call of a batch of n records (b says which partition) on
// the version it must go to.
func (rh *rollingHandler) handle(ctx context.Context, b *plugins.Batch, n int, call func(*plugins.Pool) (*plugins.Result, error)) (*plugins.Result, error) {
	part := record.Partition{Stream: b.Stream, ID: b.Partition}
	for {
		g, wait := rh.enter(part)
		if wait != nil {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the previous handler version to finish partition %s: %w", part, ctx.Err())
			}
		}
		res, err := call(g.pool)
		if retry := rh.leave(g, part, res, err, n); retry {
			continue // the version was replaced and closed between enter and the call
		}
		if err != nil {
			return nil, &versionedError{info: g.info, err: err}
		}
		res.Handler = g.info
		return res, nil
	}
}

// enter picks the current version for a batch of part and counts it in
// flight, or returns a channel to wait on while another version still has
// a batch of part in flight.
func (rh *rollingHandler) enter(part record.Partition) (*handlerGen, <-chan struct{}) {
	rh.mu.Lock()
	defer rh.mu.Unlock()
	g := rh.cur
	for _, o := range rh.live {
		if o != g && o.inflight[part] > 0 {
			return nil, rh.changed
		}
	}
	g.inflight[part]++
	return g, nil
}

// leave ends a call on g: it updates g's probation and reports whether the
// call should be made again on the current version (g was closed under it).
func (rh *rollingHandler) leave(g *handlerGen, part record.Partition, res *plugins.Result, err error, n int) (retry bool) {
	rh.mu.Lock()
	defer rh.mu.Unlock()
	if g.inflight[part]--; g.inflight[part] == 0 {
		delete(g.inflight, part)
		close(rh.changed)
		rh.changed = make(chan struct{})
	}
	if errors.Is(err, plugins.ErrPoolClosed) && g != rh.cur && !rh.closed {
		return true
	}
	if rh.prev == nil || g != rh.cur || errors.Is(err, context.Canceled) {
		return false
	}
	sys := systemic(res, err, n)
	if sys == nil && n >= 2 && rejectedAll(res, n) {
		sys = fmt.Errorf("version %s rejected all %d records of a batch", g.info.Version, n)
	}
	if sys != nil {
		g.bad++
		if g.bad >= probationFailures {
			rh.rollbackLocked(sys)
		}
		return false
	}
	if g.ok++; g.ok >= probationSuccesses {
		rh.promoteLocked()
	}
	return false
}

// rejectedAll reports whether res fails every one of a batch's n records.
func rejectedAll(res *plugins.Result, n int) bool {
	if res == nil || len(res.Failures) < n {
		return false
	}
	failed := make(map[int]bool, n)
	for _, f := range res.Failures {
		failed[f.Index] = true
	}
	return len(failed) == n
}

// promoteLocked ends cur's probation: the previous version is stopped.
func (rh *rollingHandler) promoteLocked() {
	old := rh.prev
	rh.prev = nil
	rh.upgrades["completed"]++
	rh.log.Info().Str("version", rh.cur.info.Version).Str("previous", old.info.Version).Int("batches", rh.cur.ok).
		Msg("handler upgrade complete: the new version passed probation; stopping the previous one")
	rh.retireLocked(old)
}

// rollbackLocked sends new batches back to the previous version and stops
// the current one, which failed its probation with err.
func (rh *rollingHandler) rollbackLocked(err error) {
	bad := rh.cur
	rh.cur, rh.prev = rh.prev, nil
	rh.lastBad = bad.hash
	rh.upgrades["rolled_back"]++
	rh.log.Error().Err(err).Str("version", bad.info.Version).Str("back_to", rh.cur.info.Version).
		Int("failed_batches", bad.bad).Int("ok_batches", bad.ok).
		Msg("handler upgrade rolled back: the new version failed its first batches; new batches go to the previous version again")
	rh.retireLocked(bad)
}

// retireLocked closes g in the background once its in-flight calls end
// (within closeTimeout).
func (rh *rollingHandler) retireLocked(g *handlerGen) {
	rh.bg.Add(1)
	go func() {
		defer rh.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), rh.closeTimeout)
		defer cancel()
		if err := g.pool.Close(ctx); err != nil {
			rh.log.Warn().Err(err).Str("version", g.info.Version).Msg("stopping a previous handler version")
		}
		rh.mu.Lock()
		defer rh.mu.Unlock()
		rh.restarts += g.pool.Restarts()
		for i, o := range rh.live {
			if o == g {
				rh.live = append(rh.live[:i], rh.live[i+1:]...)
				break
			}
		}
	}()
}

// Upgrade starts the handler anew from its plugin file and switches new
// batches to it (see rollingHandler). Unless force is set, it does nothing
// when the file is the running version or the one last rolled back. It
// returns ErrUpgradeInProgress while another upgrade is starting or on
// probation, and the start error of a version that fails to start (the
// running version keeps going).
func (rh *rollingHandler) Upgrade(ctx context.Context, reason string, force bool) error {
	rh.mu.Lock()
	if rh.closed {
		rh.mu.Unlock()
		return fmt.Errorf("pipeline %s: %w", rh.name, plugins.ErrPoolClosed)
	}
	if rh.starting || rh.prev != nil {
		rh.mu.Unlock()
		return ErrUpgradeInProgress
	}
	rh.starting = true
	cur, lastBad := rh.cur, rh.lastBad
	rh.mu.Unlock()
	defer func() {
		rh.mu.Lock()
		rh.starting = false
		rh.mu.Unlock()
	}()

	hash, err := rh.hash()
	if err != nil {
		return err
	}
	if !force && (hash == cur.hash || hash == lastBad) {
		return nil
	}
	log := rh.log.With().Str("reason", reason).Str("running", cur.info.Version).Logger()
	log.Info().Msg("handler upgrade: starting the new version")
	pool, err := rh.start(ctx)
	if err != nil {
		rh.mu.Lock()
		rh.lastBad = hash
		rh.upgrades["failed_to_start"]++
		rh.mu.Unlock()
		log.Error().Err(err).Msg("handler upgrade rolled back: the new version failed to start; the running version keeps handling")
		return err
	}
	info := pool.Info()
	switch {
	case info.Name != cur.info.Name:
		log.Warn().Str("was", cur.info.Name).Str("now", info.Name).Msg("the new handler describes itself under another name")
	case info.Version == cur.info.Version:
		log.Warn().Str("version", info.Version).Msg("the new handler reports the same version as the running one")
	}
	rh.mu.Lock()
	if rh.closed {
		rh.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.Background(), rh.closeTimeout)
		defer cancel()
		_ = pool.Close(cctx)
		return fmt.Errorf("pipeline %s: %w", rh.name, plugins.ErrPoolClosed)
	}
	rh.gens++
	g := &handlerGen{n: rh.gens, pool: pool, info: info, hash: hash, inflight: map[record.Partition]int{}}
	rh.prev, rh.cur = rh.cur, g
	rh.live = append(rh.live, g)
	rh.upgrades["switched"]++
	rh.mu.Unlock()
	log.Info().Str("version", info.Version).Int("protocol", info.ProtocolVersion).Int("generation", g.n).
		Msgf("handler upgrade: new batches go to version %s; version %s finishes its batches in flight and stands by until %d batches succeed on the new one",
			info.Version, cur.info.Version, probationSuccesses)
	return nil
}

// changedFile reports whether the file went from a to b: another size,
// modification time, or another file (replaced by a rename).
func changedFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a != b
	}
	return a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) || !os.SameFile(a, b)
}

// Watch polls the plugin file every interval and upgrades when it changed
// and then held still for one interval (so a file being written is not
// started half-written; replace it with a rename to be safe). It returns
// when ctx is done. It does nothing for a builtin.
func (rh *rollingHandler) Watch(ctx context.Context, interval time.Duration) {
	if rh.path == "" || interval <= 0 {
		return
	}
	last := rh.stat
	pending := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(rh.path)
		if err != nil {
			continue // missing for a moment while being replaced
		}
		if changedFile(last, st) {
			last, pending = st, true
			continue
		}
		if !pending {
			continue
		}
		err = rh.Upgrade(ctx, "plugin file changed", false)
		if errors.Is(err, ErrUpgradeInProgress) {
			continue // try again once the running upgrade settles
		}
		pending = false
	}
}

// StartWatching runs Watch on its own goroutine until Close.
func (rh *rollingHandler) StartWatching(interval time.Duration) {
	if rh.path == "" || interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rh.mu.Lock()
	rh.stop = cancel
	rh.mu.Unlock()
	rh.bg.Add(1)
	go func() {
		defer rh.bg.Done()
		rh.Watch(ctx, interval)
	}()
}

// Close stops the watcher and every version's pool (in-flight calls may
// finish until ctx is done).
func (rh *rollingHandler) Close(ctx context.Context) error {
	rh.mu.Lock()
	rh.closed = true
	rh.stop()
	live := append([]*handlerGen(nil), rh.live...)
	rh.mu.Unlock()
	var errs []error
	for _, g := range live {
		errs = append(errs, g.pool.Close(ctx))
	}
	rh.bg.Wait()
	return errors.Join(errs...)
}

// handlerInfo is the pipeline's current handler version.
func (pl *pipeline) handlerInfo() plugins.Info {
	if rh, ok := pl.handler.(*rollingHandler); ok {
		return rh.Info()
	}
	return pl.info
}

// origin is the DLQ envelope's origin of a record the handler version h
// failed (zero h: the pipeline's current version).
func (pl *pipeline) origin(h plugins.Info) dlq.Origin {
	if h.Version == "" && h.Name == "" {
		h = pl.handlerInfo()
	}
	return dlq.Origin{Pipeline: pl.cfg.Name, HandlerName: h.Name, HandlerVersion: h.Version, HostID: pl.hostID}
}

// versionTagger adds the weir.handler.version header (the DLQ envelope's
// header of the same name) to a result's outputs, naming the handler
// version that produced them. The headers of all outputs are carved from
// one slab per result rather than allocated per output.
type versionTagger struct {
	version []byte
	slab    []record.Header
}

func newVersionTagger(res *plugins.Result) *versionTagger {
	if res.Handler.Version == "" {
		return &versionTagger{}
	}
	n := len(res.Outputs)
	for i := range res.Outputs {
		n += len(res.Outputs[i].Headers)
	}
	return &versionTagger{version: []byte(res.Handler.Version), slab: make([]record.Header, 0, n)}
}

// tag returns m with the version header appended to a copy of its headers.
func (vt *versionTagger) tag(m record.Message) record.Message {
	if vt.version == nil {
		return m
	}
	n := len(m.Headers) + 1
	if cap(vt.slab)-len(vt.slab) < n { // not from this result's outputs
		vt.slab = make([]record.Header, 0, n)
	}
	hs := append(vt.slab[len(vt.slab):len(vt.slab):len(vt.slab)+n], m.Headers...)
	hs = append(hs, record.Header{Key: dlq.HeaderHandlerVersion, Value: vt.version})
	vt.slab = vt.slab[:len(vt.slab)+n]
	m.Headers = hs
	return m
}

// startHandler starts pc's handler behind a rollingHandler, watching its
// plugin file when it is one (a path, not builtin: or an interpreter on
// PATH) and handler.watch is on.
func (h *Host) startHandler(ctx context.Context, pc *config.Pipeline, log zerolog.Logger) (*rollingHandler, error) {
	watched := ""
	if pc.Handler.Builtin == "" && strings.ContainsRune(pc.Handler.Plugin, '/') {
		watched = pc.Handler.PluginPath
	}
	start := func(ctx context.Context) (*plugins.Pool, error) {
		return plugins.NewPool(ctx, PoolConfig(pc, log))
	}
	rh, err := newRollingHandler(ctx, pc.Name, watched, pc.ShutdownTimeout, log, start)
	if err != nil {
		return nil, err
	}
	rh.StartWatching(pc.Handler.Watch)
	return rh, nil
}
