package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a config file without connecting to anything",
		Long: `Validate parses a config file, expands ${VAR} references from the
environment, applies defaults and checks every field, printing every problem
with its file, line and field path. It connects to nothing. Exit status 0: the
file is valid; 2: it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d pipeline", path, len(cfg.Pipelines))
			if len(cfg.Pipelines) != 1 {
				fmt.Fprint(cmd.OutOrStdout(), "s")
			}
			fmt.Fprint(cmd.OutOrStdout(), ":")
			for _, p := range cfg.Pipelines {
				fmt.Fprintf(cmd.OutOrStdout(), " %s", p.Name)
			}
			fmt.Fprintln(cmd.OutOrStdout(), ")")
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "weir.yaml", "config file")
	return cmd
}
