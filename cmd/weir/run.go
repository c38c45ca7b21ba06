package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weirhq/weir/host"
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
(nothing uncommitted is lost: it is redelivered on the next start).`,
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
			h := host.New(cfg, host.Options{Logger: log, HostID: hostID})
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
