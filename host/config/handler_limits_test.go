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
	if h := f.Pipelines[0].Handler; h.MemoryLimit != 0 {
		t.Errorf("defaults: memory_limit %d, want 0 (no limit)", h.MemoryLimit)
	}
	f, err = Parse("w.yaml", []byte(with("memory_limit: 256MiB")))
	if err != nil {
		t.Fatal(err)
	}
	if h := f.Pipelines[0].Handler; h.MemoryLimit != 256<<20 {
		t.Errorf("memory_limit = %d, want 256MiB", h.MemoryLimit)
	}
	for _, tc := range []struct{ fields, want string }{
		{"memory_limit: 1MiB", "w.yaml:6: pipelines[0].handler.memory_limit: 1MiB is too small for a plugin process to start; at least 32MiB"},
		{"memory_limit: -1", "w.yaml:6: pipelines[0].handler.memory_limit: -1B is too small"},
		{"memory_limit: lots", `w.yaml:6: pipelines[0].handler.memory_limit: "lots" is not a size`},
	} {
		_, err := Parse("w.yaml", []byte(with(tc.fields)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.fields, err, tc.want)
		}
	}
}
