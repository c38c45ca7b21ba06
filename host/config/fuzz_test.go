package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to the config loader. Whatever the input,
// Parse returns a *File or an *Errors whose every line names the file; it
// never panics and never hangs on YAML built to explode (alias and merge
// bombs).
func FuzzParse(f *testing.F) {
	if seed, err := os.ReadFile("testdata/weir.yaml"); err == nil {
		f.Add(seed)
	}
	// The README's reference: every field of the schema.
	if b, err := os.ReadFile("../../README.md"); err == nil {
		s := string(b)
		if i, j := strings.Index(s, "<!-- reference:begin -->"), strings.Index(s, "<!-- reference:end -->"); i >= 0 && j > i {
			block := s[i:j]
			if k := strings.Index(block, "```yaml"); k >= 0 {
				block = block[k+len("```yaml"):]
				f.Add([]byte(block[:max(0, strings.LastIndex(block, "```"))]))
			}
		}
	}
	for _, s := range []string{
		"",
		"version: 1",
		"version: 1\npipelines: []",
		"version: 1\nkafka: {brokers: [embedded]}\npipelines:\n  - name: a\n    source: {kafka: {topics: [in]}}\n    handler: {plugin: builtin:echo}\n    sinks: {out: {stdout: {}}}\n",
		"version: ${V:-1}\nkafka: {brokers: [\"${B}\"]}\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n",
		"base: &base {max_records: 5}\nversion: 1\npipelines:\n  - batch: {<<: *base, max_wait: fast}\n",
		"version: 1\nversion: 2\n",
		"- [\n",
		"version: !!binary AAAA\n",
		"pipelines:\n  - handler: {env: {A: \"\\xff\"}, sha256: zz}\n",
	} {
		f.Add([]byte(s))
	}
	env := func(name string) (string, bool) {
		if name == "B" {
			return "localhost:9092", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		cfg, err := Parse("fuzz.yaml", data, WithLookupEnv(env), SkipFileChecks(), WithBuiltins("echo"))
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse of %d bytes took %s", len(data), d)
		}
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a file nor an error")
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Fatalf("Parse error is %T, not *Errors: %v", err, err)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if line != "" && !strings.HasPrefix(line, "fuzz.yaml") && !strings.HasPrefix(line, "  ") {
				t.Fatalf("problem does not name the file: %q", line)
			}
		}
	})
}

// A chain of mappings each merging the previous one twice is a few hundred
// bytes that used to cost 2^depth mapping walks: depth 25 took 15 s (the
// fuzzer found the stall). Each merged mapping is now walked once.
func TestMergeBombIsCheap(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nx0: &a0 {max_records: 5}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [*a%d, *a%d]}\n", i, i, i-1, i-1)
	}
	b.WriteString("pipelines:\n  - batch: *a40\n")
	done := make(chan error, 1)
	go func() {
		_, err := Parse("bomb.yaml", []byte(b.String()), SkipFileChecks())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "bomb.yaml:44: pipelines[0].name: is required") {
			t.Fatalf("Parse error = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Parse of a 40-level merge chain did not finish in 10s")
	}
}
