package host

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
)

// UpgradeHandlers rolls every pipeline's handler to a new start of its
// plugin (see rollingHandler): new batches go to the new processes once
// they describe themselves, in-flight batches finish on the old ones, and a
// new version that fails to start or fails its first batches is rolled
// back. It returns when each new version has started or failed to; the
// errors name their pipelines. Safe to call concurrently with Run.
func (h *Host) UpgradeHandlers(ctx context.Context, reason string) error {
	h.mu.Lock()
	pls := append([]*pipeline(nil), h.pipelines...)
	h.mu.Unlock()
	var errs []error
	for _, pl := range pls {
		rh, ok := pl.handler.(*rollingHandler)
		if !ok {
			continue
		}
		if err := rh.Upgrade(ctx, reason, true); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: %w", pl.cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Reload is what SIGHUP and POST /admin/reload do. With
// Options.LoadConfig set, the config file is read again: an invalid file is
// rejected with its errors and nothing changes; otherwise pipelines removed
// from it drain and stop, pipelines added start, changed ones restart with
// their new config, and unchanged ones get their handler rolled to a new
// start of its plugin (UpgradeHandlers). Changes to the kafka, redis and
// admin sections need a restart; they are logged and not applied. Without
// LoadConfig, Reload only rolls the handlers. Reloads are serialized; the
// returned error joins every part that failed (the rest is applied).
func (h *Host) Reload(ctx context.Context) error {
	h.mu.Lock()
	s := h.sup
	h.mu.Unlock()
	if s == nil {
		return ErrNotRunning
	}
	s.reloading.Lock()
	defer s.reloading.Unlock()
	if s.ctx.Err() != nil {
		return ErrNotRunning
	}
	if h.opts.LoadConfig == nil {
		return h.UpgradeHandlers(ctx, "reload requested")
	}
	log := h.opts.Logger
	next, err := h.opts.LoadConfig()
	if err != nil {
		log.Error().Msgf("reload: the new config is rejected; the running one continues:\n%v", err)
		return fmt.Errorf("the new config is rejected; the running one continues: %w", err)
	}
	h.mu.Lock()
	cur := h.cfg
	h.mu.Unlock()
	for _, sec := range []struct {
		name     string
		was, now any
	}{{"kafka", cur.Kafka, next.Kafka}, {"redis", cur.Redis, next.Redis}, {"admin", cur.Admin, next.Admin}} {
		if !reflect.DeepEqual(sec.was, sec.now) {
			log.Warn().Str("section", sec.name).Msg("reload: the " + sec.name + " section changed; that needs a restart of weir, the running connection is kept")
		}
	}
	// The pipelines to report from now on (Status): the new file's.
	nc := *cur
	nc.Pipelines, nc.Path = next.Pipelines, next.Path
	h.mu.Lock()
	h.cfg = &nc
	h.mu.Unlock()
	res, err := s.apply(next)
	ev := log.Info()
	if err != nil {
		ev = log.Error().Err(err)
	}
	ev.Strs("added", res.added).Strs("removed", res.removed).Strs("restarted", res.restarted).Strs("handlers_rolled", res.upgraded).
		Msg("reload applied")
	return err
}

// forgetState drops a removed pipeline's run state.
func (h *Host) forgetState(name string) {
	h.mu.Lock()
	delete(h.states, name)
	h.mu.Unlock()
}

// serveReload is POST /admin/reload: it reloads and answers 200 with
// {"ok": true}, or 500 with {"ok": false, "error": "..."} naming what was
// refused (the running pipelines and handlers keep going).
func (h *Host) serveReload(w http.ResponseWriter, r *http.Request) {
	h.opts.Logger.Info().Str("remote", r.RemoteAddr).Msg("reload requested over the admin server")
	if err := h.Reload(r.Context()); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}
