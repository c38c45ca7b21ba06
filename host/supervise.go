package host

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/host/config"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// supervisor runs the pipelines of a Host: it starts each on its own
// context, so that a reload can stop one (drain, commit, close) and start
// others while the rest keep running. A pipeline that fails stops them all,
// as before: the process exits loudly rather than run half its config.
type supervisor struct {
	h         *Host
	conn      []kgo.Opt
	redisAddr string
	ctx       context.Context // Run's; canceled on shutdown or a failure
	cancel    context.CancelFunc

	mu      sync.Mutex
	running map[string]*runningPipeline
	errs    []error
	wg      sync.WaitGroup
	// reloading serializes reloads.
	reloading sync.Mutex
}

// runningPipeline is one pipeline the supervisor started.
type runningPipeline struct {
	cfg     *config.Pipeline
	pl      *pipeline
	closeFn func()
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returned and closeFn ran
}

// supervise builds every pipeline of the config (any failure is fatal, and
// releases what was built), runs them until ctx is done or one fails, and
// returns their errors.
func (h *Host) supervise(ctx context.Context, conn []kgo.Opt, redisAddr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &supervisor{h: h, conn: conn, redisAddr: redisAddr, ctx: ctx, cancel: cancel, running: map[string]*runningPipeline{}}
	var built []*runningPipeline
	for i := range h.cfg.Pipelines {
		rp, err := s.build(&h.cfg.Pipelines[i])
		if err != nil {
			for _, b := range slices.Backward(built) {
				b.closeFn()
			}
			return err
		}
		built = append(built, rp)
	}
	for _, rp := range built {
		s.run(rp)
	}
	h.mu.Lock()
	h.sup = s
	h.mu.Unlock()

	<-ctx.Done()
	// Shutdown (or a pipeline failed): every pipeline sees ctx and drains.
	s.reloading.Lock() // no reload from here on
	defer s.reloading.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// build creates pc's pipeline and registers it with the host (state
// starting). On error nothing is left open and the state is failed.
func (s *supervisor) build(pc *config.Pipeline) (*runningPipeline, error) {
	h := s.h
	h.setState(pc.Name, StateStarting)
	pl, closeFn, err := h.build(s.ctx, pc, s.conn, s.redisAddr)
	if err != nil {
		closeFn()
		h.setState(pc.Name, StateFailed)
		return nil, fmt.Errorf("pipeline %s: %w", pc.Name, err)
	}
	h.mu.Lock()
	h.pipelines = append(h.pipelines, pl)
	h.mu.Unlock()
	return &runningPipeline{cfg: pc, pl: pl, closeFn: closeFn, done: make(chan struct{})}, nil
}

// run starts rp on its own goroutine. When it returns, its parts are
// closed; an error stops every pipeline.
func (s *supervisor) run(rp *runningPipeline) {
	h, name := s.h, rp.cfg.Name
	ctx, cancel := context.WithCancel(s.ctx)
	rp.cancel = cancel
	s.mu.Lock()
	s.running[name] = rp
	s.mu.Unlock()
	h.setState(name, StateRunning)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(rp.done)
		err := rp.pl.run(ctx)
		cancel()
		rp.closeFn()
		if err != nil {
			h.setState(name, StateFailed)
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
			s.cancel() // one pipeline failing stops the process, loudly
			return
		}
		h.setState(name, StateStopped)
	}()
}

// stop drains and stops rp (its lanes finish or abandon their batches
// within shutdown_timeout and commit) and forgets it.
func (s *supervisor) stop(rp *runningPipeline) {
	rp.cancel()
	<-rp.done
	s.mu.Lock()
	if s.running[rp.cfg.Name] == rp {
		delete(s.running, rp.cfg.Name)
	}
	s.mu.Unlock()
	h := s.h
	h.mu.Lock()
	h.pipelines = slices.DeleteFunc(h.pipelines, func(pl *pipeline) bool { return pl == rp.pl })
	h.mu.Unlock()
}

// ensureTopics creates pc's source topics on the embedded broker (which
// starts empty), as Run does for the pipelines of the first config.
func (s *supervisor) ensureTopics(pc *config.Pipeline) error {
	h := s.h
	if !h.cfg.Kafka.Embedded() || len(h.opts.KafkaBrokers) > 0 || pc.Source.Kafka == nil {
		return nil
	}
	if err := kafkasrc.EnsureTopics(s.ctx, s.conn, -1, pc.Source.Kafka.Topics...); err != nil {
		return fmt.Errorf("pipeline %s: creating source topics on the embedded broker: %w", pc.Name, err)
	}
	return nil
}

// ErrNotRunning is returned by a reload before Run has started the
// pipelines, or after it began to stop them.
var ErrNotRunning = errors.New("the host is not running its pipelines (starting or stopping)")

// reloadResult says what a reload did, by pipeline name.
type reloadResult struct {
	added, removed, restarted, upgraded []string
}

// apply makes the running pipelines those of next: removed pipelines drain
// and stop, added ones start, changed ones stop and start with their new
// config (the new one is built first, so a pipeline whose new handler does
// not start keeps running as it was), unchanged ones get their handler
// rolled (UpgradeHandlers). Every failure is returned, joined; what could be
// applied is.
func (s *supervisor) apply(next *config.File) (reloadResult, error) {
	var res reloadResult
	var errs []error
	s.mu.Lock()
	cur := make(map[string]*runningPipeline, len(s.running))
	for name, rp := range s.running {
		cur[name] = rp
	}
	s.mu.Unlock()

	wanted := map[string]bool{}
	for i := range next.Pipelines {
		wanted[next.Pipelines[i].Name] = true
	}
	for name, rp := range cur {
		if !wanted[name] {
			s.h.opts.Logger.Info().Str("pipeline", name).Msg("reload: pipeline removed; draining and stopping it")
			s.stop(rp)
			s.h.forgetState(name)
			res.removed = append(res.removed, name)
		}
	}
	for i := range next.Pipelines {
		pc := &next.Pipelines[i]
		old := cur[pc.Name]
		log := s.h.opts.Logger.With().Str("pipeline", pc.Name).Logger()
		switch {
		case old == nil:
			log.Info().Msg("reload: pipeline added; starting it")
			if err := s.ensureTopics(pc); err != nil {
				errs = append(errs, err)
				continue
			}
			rp, err := s.build(pc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.run(rp)
			res.added = append(res.added, pc.Name)
		case !samePipeline(old.cfg, pc):
			log.Info().Msg("reload: pipeline changed; starting it with the new config, then stopping the old one")
			if err := s.ensureTopics(pc); err != nil {
				errs = append(errs, err)
				continue
			}
			// Build first (plugins start, connections open); only then
			// stop the old one, so a new config that cannot start leaves
			// the pipeline running as it was.
			s.h.mu.Lock()
			state := s.h.states[pc.Name]
			s.h.mu.Unlock()
			rp, err := s.build(pc)
			if err != nil {
				s.h.setState(pc.Name, state)
				errs = append(errs, fmt.Errorf("%w (the pipeline keeps running with its previous config)", err))
				continue
			}
			s.stop(old)
			s.run(rp)
			res.restarted = append(res.restarted, pc.Name)
		default:
			rh, ok := old.pl.handler.(*rollingHandler)
			if !ok {
				continue
			}
			if err := rh.Upgrade(s.ctx, "reload requested", true); err != nil {
				errs = append(errs, fmt.Errorf("pipeline %s: %w", pc.Name, err))
				continue
			}
			res.upgraded = append(res.upgraded, pc.Name)
		}
	}
	return res, errors.Join(errs...)
}

// samePipeline reports whether two pipeline configs are equal in every
// field (config.Parse normalizes what could differ between two reads of one
// file, such as a start time's zone, so equal files give equal configs).
func samePipeline(a, b *config.Pipeline) bool { return reflect.DeepEqual(*a, *b) }
