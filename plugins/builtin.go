package plugins

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// EnvBuiltinHandler is the environment variable that asks a weir executable
// to serve one of its built-in handlers instead of doing its usual work. A
// Pool with PoolConfig.Builtin set starts os.Executable() with it.
const EnvBuiltinHandler = "WEIR_BUILTIN_HANDLER"

// ServeBuiltinIfRequested serves a handler compiled into the running
// executable when the process was started by a Pool to do so, and exits.
//
// The weir binary's main, and the TestMain of any test binary that runs
// pools of builtin handlers, call it first thing:
//
//	func main() {
//		plugins.ServeBuiltinIfRequested(builtin.Handlers())
//		// ... the CLI
//	}
//
// If WEIR_BUILTIN_HANDLER is unset or empty it returns at once. Otherwise it
// serves handlers[name] over go-plugin (see Serve) and exits with status 0
// when the host closes it; an unknown name is reported on stderr and the
// process exits with status 2. It never returns in that case.
func ServeBuiltinIfRequested(handlers map[string]Handler) {
	name := os.Getenv(EnvBuiltinHandler)
	if name == "" {
		return
	}
	h, ok := handlers[name]
	if !ok || h == nil {
		names := make([]string, 0, len(handlers))
		for n := range handlers {
			names = append(names, n)
		}
		slices.Sort(names)
		fmt.Fprintf(os.Stderr, "weir: %s=%q: no such builtin handler (built in: %s)\n",
			EnvBuiltinHandler, name, strings.Join(names, ", "))
		os.Exit(2)
	}
	Serve(h)
	os.Exit(0)
}
