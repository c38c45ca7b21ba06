package host

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

// Reload is what SIGHUP and POST /admin/reload do: every pipeline's handler
// is rolled to a new start of its plugin (UpgradeHandlers).
func (h *Host) Reload(ctx context.Context) error {
	return h.UpgradeHandlers(ctx, "reload requested")
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
