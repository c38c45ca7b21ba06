package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/host/invoke"
	"github.com/weirhq/weir/plugins"
)

type invokeOpts struct {
	handler    string
	configPath string
	pipeline   string
	input      string
	json       bool
	sample     int
	maxRecords int
	env        []string
	args       []string
}

func newInvokeCmd(g *globalFlags) *cobra.Command {
	o := &invokeOpts{}
	cmd := &cobra.Command{
		Use:   "invoke --handler PLUGIN|builtin:NAME --input FILE|-",
		Short: "Run a handler on records from a JSON-lines file, without a broker",
		Long: `Invoke starts a handler's plugin processes, sends it the records of a JSON-lines
file in batches as a pipeline would (per partition, in order, closed at
max_records or max_bytes), and prints each record's outputs or failure: a
table, or with --json one JSON object. A batch that fails as a whole is bisected
to name the records at fault. No broker, no Redis, nothing is written.

Each input line is one record:
  {"key":"d-1","value":"{\"temperature\":21}","headers":{"h":"v"},"partition":0,"offset":7}
value and key may be given as value_b64 / key_b64 instead (standard base64);
partition defaults to 0, offset to the previous one of the partition plus one.

With --config (and --pipeline when the file has several), the handler, its
args, env, instances, timeout and memory limit, the batch limits and the
declared sinks come from that pipeline; --handler then overrides the plugin.

  weir invoke --sample 20 > readings.jsonl
  weir invoke --handler builtin:iot --input readings.jsonl

Exit status: 0 every record succeeded; 1 a record failed; 2 bad flags, config
or input (every bad line is reported with its number, and nothing is run).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runInvoke(ctx, g, o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.handler, "handler", "", "plugin executable, interpreter on PATH, or builtin:NAME")
	f.StringVarP(&o.configPath, "config", "c", "", "take the handler and batch settings from this config file")
	f.StringVarP(&o.pipeline, "pipeline", "p", "", "the pipeline of --config (needed when it has several)")
	f.StringVarP(&o.input, "input", "i", "", "JSON-lines input file, or - for standard input")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.IntVar(&o.sample, "sample", 0, "write N sample IoT readings as JSON lines to standard output and exit")
	f.IntVar(&o.maxRecords, "max-records", 0, "records per batch (default: the pipeline's batch.max_records, or 500)")
	f.StringArrayVar(&o.env, "env", nil, "KEY=VALUE added to the handler's environment (repeatable)")
	f.StringArrayVar(&o.args, "arg", nil, "an argument of the handler process, e.g. the script of an interpreter (repeatable; replaces the pipeline's args)")
	cmd.SetContext(context.Background())
	return cmd
}

func runInvoke(ctx context.Context, g *globalFlags, o *invokeOpts, stdin io.Reader, stdout, stderr io.Writer) error {
	usage := func(format string, args ...any) error {
		fmt.Fprintf(stderr, "weir invoke: "+format+"\n", args...)
		return exitError{2}
	}
	if o.sample < 0 {
		return usage("--sample: %d is negative", o.sample)
	}
	if o.sample > 0 {
		return invoke.WriteSample(stdout, o.sample)
	}
	log, err := g.logger(stderr)
	if err != nil {
		return usage("%v", err)
	}
	pc, err := invokePipeline(o, stderr)
	if err != nil {
		return err
	}
	if pc == nil {
		return usage("--handler or --config is required (see weir invoke --help)")
	}
	for _, kv := range o.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usage("--env %q: want KEY=VALUE", kv)
		}
		if pc.Handler.Env == nil {
			pc.Handler.Env = map[string]string{}
		}
		pc.Handler.Env[k] = v
	}
	if len(o.args) > 0 {
		pc.Handler.Args = o.args
	}
	if o.input == "" {
		return usage("--input is required: a JSON-lines file, or - for standard input (weir invoke --sample 10 writes one)")
	}
	name, in := o.input, stdin
	if o.input != "-" {
		f, err := os.Open(o.input)
		if err != nil {
			return usage("--input: %v", err)
		}
		defer f.Close()
		in = f
	} else {
		name = "stdin"
	}
	stream := "invoke"
	if pc.Source.Kafka != nil && len(pc.Source.Kafka.Topics) > 0 {
		stream = pc.Source.Kafka.Topics[0]
	}
	inputs, err := invoke.Read(in, name, stream)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{2}
	}
	if o.maxRecords < 0 {
		return usage("--max-records: %d is negative", o.maxRecords)
	}
	if o.maxRecords > 0 {
		pc.Batch.MaxRecords = o.maxRecords
	}

	pool, err := plugins.NewPool(ctx, host.PoolConfig(pc, log))
	if err != nil {
		fmt.Fprintln(stderr, "weir invoke:", err)
		return exitError{2}
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pc.ShutdownTimeout)
		defer cancel()
		_ = pool.Close(cctx)
	}()
	var sinks []string
	if o.configPath != "" {
		for s := range pc.Sinks {
			sinks = append(sinks, s)
		}
	}
	rep, err := invoke.Run(ctx, pool, pool.Info(), inputs, invoke.Options{
		Pipeline: pc.Name, MaxRecords: pc.Batch.MaxRecords, MaxBytes: pc.Batch.MaxBytes,
		Sinks: sinks, Bisect: pc.Retry.Bisect,
	})
	if err != nil {
		return err
	}
	if o.json {
		err = invoke.WriteJSON(stdout, rep)
	} else {
		err = invoke.WriteTable(stdout, rep)
	}
	if err != nil {
		return err
	}
	if rep.Summary.Failed > 0 {
		if !o.json {
			if f, ok := stdout.(*os.File); !ok || !isatty.IsTerminal(f.Fd()) {
				fmt.Fprintf(stderr, "weir invoke: %d of %d records failed\n", rep.Summary.Failed, rep.Summary.Records)
			}
		}
		return exitError{1}
	}
	return nil
}

// invokePipeline returns the pipeline settings invoke runs with: the
// --config file's pipeline, or defaults around --handler. nil, nil: neither
// flag was given.
func invokePipeline(o *invokeOpts, stderr io.Writer) (*config.Pipeline, error) {
	if o.configPath == "" {
		if o.handler == "" {
			return nil, nil
		}
		if o.pipeline != "" {
			fmt.Fprintln(stderr, "weir invoke: --pipeline needs --config")
			return nil, exitError{2}
		}
		pc := config.Defaults()
		pc.Name = invoke.DefaultPipeline
		if err := setHandler(&pc, o.handler, stderr); err != nil {
			return nil, err
		}
		return &pc, nil
	}
	cfg, err := loadConfig(o.configPath, stderr)
	if err != nil {
		return nil, err
	}
	var pc *config.Pipeline
	var names []string
	for i := range cfg.Pipelines {
		names = append(names, cfg.Pipelines[i].Name)
		if cfg.Pipelines[i].Name == o.pipeline {
			pc = &cfg.Pipelines[i]
		}
	}
	switch {
	case o.pipeline == "" && len(cfg.Pipelines) == 1:
		pc = &cfg.Pipelines[0]
	case o.pipeline == "":
		fmt.Fprintf(stderr, "weir invoke: %s has %d pipelines; choose one with --pipeline (%s)\n", o.configPath, len(names), strings.Join(names, ", "))
		return nil, exitError{2}
	case pc == nil:
		fmt.Fprintf(stderr, "weir invoke: --pipeline %q: %s has no such pipeline (%s)\n", o.pipeline, o.configPath, strings.Join(names, ", "))
		return nil, exitError{2}
	}
	if o.handler != "" {
		if err := setHandler(pc, o.handler, stderr); err != nil {
			return nil, err
		}
	}
	return pc, nil
}

// setHandler points pc at a handler named on the command line: builtin:NAME,
// or a path (relative to the working directory) or a name on PATH.
func setHandler(pc *config.Pipeline, handler string, stderr io.Writer) error {
	pc.Handler.Plugin, pc.Handler.Builtin, pc.Handler.PluginPath = handler, "", ""
	if name, ok := strings.CutPrefix(handler, "builtin:"); ok {
		names := builtinNames()
		for _, n := range names {
			if n == name {
				pc.Handler.Builtin = name
				return nil
			}
		}
		fmt.Fprintf(stderr, "weir invoke: --handler %s: no such builtin handler (built in: %s)\n", handler, strings.Join(names, ", "))
		return exitError{2}
	}
	if strings.ContainsRune(handler, '/') || strings.ContainsRune(handler, filepath.Separator) {
		abs, err := filepath.Abs(handler)
		if err != nil {
			fmt.Fprintf(stderr, "weir invoke: --handler %s: %v\n", handler, err)
			return exitError{2}
		}
		pc.Handler.PluginPath = abs
		return nil
	}
	pc.Handler.PluginPath = handler // looked up in PATH by the pool
	return nil
}
