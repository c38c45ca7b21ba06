package host_test

import (
	"os"
	"testing"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
)

// TestMain lets this test binary be its own handler plugin: the pool starts
// builtin handlers by re-executing the running binary.
func TestMain(m *testing.M) {
	plugins.ServeBuiltinIfRequested(builtin.Handlers())
	os.Exit(m.Run())
}
