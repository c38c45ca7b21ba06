package conformance_test

import (
	"errors"
	"os"
	"testing"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/conformance"
)

// The test binary is the Go SDK's conformance handler when a pool starts it
// with WEIR_BUILTIN_HANDLER=conformance.
func TestMain(m *testing.M) {
	plugins.ServeBuiltinIfRequested(conformance.Builtins())
	os.Exit(m.Run())
}

// targets returns each SDK's target, or why it is missing.
func targets() []struct {
	name string
	get  func() (conformance.Target, error)
} {
	return []struct {
		name string
		get  func() (conformance.Target, error)
	}{
		{"go", func() (conformance.Target, error) { return conformance.GoTarget(), nil }},
		{"python", conformance.PythonTarget},
		{"typescript", conformance.TypeScriptTarget},
	}
}

// target returns the named target; a missing runtime skips the test
// locally and fails it in CI (env CI set), where testenv/sdk.sh has run.
func target(tb testing.TB, get func() (conformance.Target, error)) conformance.Target {
	tb.Helper()
	tgt, err := get()
	switch {
	case err == nil:
		return tgt
	case errors.Is(err, conformance.ErrUnavailable) && os.Getenv("CI") == "":
		tb.Skipf("%v (CI fails instead of skipping)", err)
	default:
		tb.Fatal(err)
	}
	return tgt
}

func TestConformance(t *testing.T) {
	for _, tc := range targets() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conformance.Run(t, target(t, tc.get))
		})
	}
}

// BenchmarkConformance measures each SDK's records/s with a no-op handler:
// go test -bench Conformance -run '^$' ./plugins/conformance/
func BenchmarkConformance(b *testing.B) {
	for _, tc := range targets() {
		b.Run(tc.name, func(b *testing.B) {
			conformance.Benchmark(b, target(b, tc.get))
		})
	}
}
