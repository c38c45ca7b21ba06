package config

import (
	"strings"
	"testing"
)

func TestHandlerResourceLimits(t *testing.T) {
	with := func(fields string) string {
		return strings.Replace(minimal, `handler: {plugin: "builtin:noop"}`, `handler: {plugin: "builtin:noop", `+fields+`}`, 1)
	}
	f, err := Parse("w.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if h := f.Pipelines[0].Handler; h.MemoryLimit != 0 || h.MaxConcurrency != 1 {
		t.Errorf("defaults: memory_limit %d, max_concurrency %d; want 0 (no limit) and 1", h.MemoryLimit, h.MaxConcurrency)
	}
	f, err = Parse("w.yaml", []byte(with("memory_limit: 256MiB, max_concurrency: 4")))
	if err != nil {
		t.Fatal(err)
	}
	if h := f.Pipelines[0].Handler; h.MemoryLimit != 256<<20 || h.MaxConcurrency != 4 {
		t.Errorf("memory_limit = %d, max_concurrency = %d; want 256MiB and 4", h.MemoryLimit, h.MaxConcurrency)
	}
	for _, tc := range []struct{ fields, want string }{
		{"memory_limit: 1MiB", "w.yaml:6: pipelines[0].handler.memory_limit: 1MiB is too small for a plugin process to start; at least 32MiB"},
		{"memory_limit: -1", "w.yaml:6: pipelines[0].handler.memory_limit: -1B is too small"},
		{"watch: -1s", "w.yaml:6: pipelines[0].handler.watch: must not be negative"},
		{"max_concurrency: 0", "w.yaml:6: pipelines[0].handler.max_concurrency: must be at least 1, got 0"},
		{"memory_limit: lots", `w.yaml:6: pipelines[0].handler.memory_limit: "lots" is not a size`},
	} {
		_, err := Parse("w.yaml", []byte(with(tc.fields)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.fields, err, tc.want)
		}
	}
}
