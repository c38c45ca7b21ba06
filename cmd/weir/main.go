// Command weir is the event-streaming function host: `weir run` runs the
// pipelines of a config file, `weir quickstart` shows one end to end on an
// in-process broker. It is flags and wiring only; the runtime is package host.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// exitError carries an exit status; its message is already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// When started as a builtin handler's plugin process, serve it and exit.
	plugins.ServeBuiltinIfRequested(builtin.Handlers())
	// Millisecond timestamps: lines about one batch or one rebalance are
	// often less than a second apart.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"

	err := newRoot().Execute()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "weir:", err)
		os.Exit(1)
	}
}

type globalFlags struct {
	logFormat string
	logLevel  string
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "weir",
		Short:         "An event-streaming function host: Kafka in, your handler, sinks and a DLQ out",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "auto", "log format: auto (console on a terminal, else json), json or console")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newRunCmd(g), newValidateCmd(), newQuickstartCmd(g), newDLQCmd(g), newVersionCmd(), newLoadtestCmd(g), newStatusCmd(), newInvokeCmd(g))
	return root
}

// logger builds the process logger from the global flags, writing to w.
func (g *globalFlags) logger(w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(g.logLevel)
	if err != nil || g.logLevel == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", g.logLevel)
	}
	format := g.logFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format: %q is not one of auto, json, console", g.logFormat)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// builtinNames lists the handlers `builtin:NAME` can name.
func builtinNames() []string {
	var names []string
	for n := range builtin.Handlers() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// loadConfig loads and validates a config file, printing every problem,
// and every warning (security weaknesses that do not make it invalid).
func loadConfig(path string, stderr io.Writer) (*config.File, error) {
	cfg, err := config.Load(path, config.WithBuiltins(builtinNames()...))
	if err != nil {
		fmt.Fprintln(stderr, strings.TrimRight(err.Error(), "\n"))
		return nil, exitError{2}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning: "+w.Error())
	}
	return cfg, nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print weir's version and the handler protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "weir %s (handler protocol %d)\n", versionString(), plugins.ProtocolVersion)
			return nil
		},
	}
}
