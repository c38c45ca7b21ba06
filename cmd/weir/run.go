package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
)

func newRunCmd(g *globalFlags) *cobra.Command {
	var path, hostID string
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the pipelines of a config file until SIGINT or SIGTERM",
		Long: `Run validates the config file, starts every pipeline and runs until
SIGINT or SIGTERM. It then shuts down gracefully: it stops fetching, lets
in-flight batches finish within each pipeline's shutdown_timeout, commits what
completed, and stops the handler plugins. A second signal exits at once
(nothing uncommitted is lost: it is redelivered on the next start).

SIGHUP (or POST /admin/reload on the admin server) reloads: the config file
is read again (an invalid one is rejected with its errors, and the running
config continues); pipelines removed from it drain and stop, added ones start,
changed ones restart, and every other pipeline's handler is rolled to a new
start of its plugin without stopping the pipeline (see "Deploying a new
handler version" in the README).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(path, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal now kills the process
				log.Info().Msg("shutting down: finishing in-flight batches (signal again to exit at once)")
			}()
			if os.Getenv("GOMEMLIMIT") == "" {
				limit := host.MemoryLimit(cfg)
				debug.SetMemoryLimit(limit)
				log.Debug().Int64("bytes", limit).Msg("soft memory limit: the pipelines' max_inflight_bytes plus headroom (GOMEMLIMIT overrides)")
			}
			h := host.New(cfg, host.Options{Logger: log, HostID: hostID, LoadConfig: func() (*config.File, error) {
				return config.Load(path, config.WithBuiltins(builtinNames()...))
			}})
			stopReloads := reloadOnSIGHUP(ctx, h, log)
			defer stopReloads()
			if err := h.Run(ctx); err != nil {
				return fmt.Errorf("run: %w", err)
			}
			log.Info().Msg("stopped cleanly")
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "weir.yaml", "config file")
	cmd.Flags().StringVar(&hostID, "host-id", os.Getenv("WEIR_HOST_ID"),
		"this process's name in DLQ envelopes, logs and transactional ids (env WEIR_HOST_ID; default hostname-pid); "+
			"keep it stable across restarts (a StatefulSet pod name) so that under delivery: exactly_once a restarted process fences its predecessor's open transaction at once")
	cmd.SetContext(context.Background())
	return cmd
}

// reloadOnSIGHUP reloads h on every SIGHUP until ctx is done or the
// returned stop is called.
func reloadOnSIGHUP(ctx context.Context, h *host.Host, log zerolog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info().Msg("SIGHUP: reloading")
				if err := h.Reload(ctx); err != nil {
					log.Error().Err(err).Msg("reload refused or incomplete; the running pipelines keep going")
				} else {
					log.Info().Msg("reload done")
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
