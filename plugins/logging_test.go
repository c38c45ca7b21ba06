package plugins

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLineLogger(t *testing.T) {
	var buf bytes.Buffer
	w := newLineLogger(zerolog.New(&buf).With().Str("plugin", "p").Logger(), "stderr")
	// Lines split across writes, several lines in one write, CRLF, blank
	// lines, a JSON line, a panic and its stack, an unterminated tail.
	for _, s := range []string{"hel", "lo\nsecond line\r\n\n", `{"level":"warn","msg":"structured"}` + "\n",
		"panic: oops\n", "goroutine 1 [running]:\n", "tail"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	got := decodeLines(t, &buf)
	want := []struct{ level, msg string }{
		{"info", "hello"}, {"info", "second line"}, {"info", "plugin log"},
		{"error", "panic: oops"}, {"error", "goroutine 1 [running]:"}, {"error", "tail"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d log lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i]["level"] != w.level || got[i]["message"] != w.msg || got[i]["plugin"] != "p" || got[i]["stream"] != "stderr" {
			t.Errorf("line %d = %v, want level %s message %q", i, got[i], w.level, w.msg)
		}
	}
	if e, ok := got[2]["entry"].(map[string]any); !ok || e["msg"] != "structured" {
		t.Errorf("JSON line not embedded: %v", got[2])
	}
}

func TestLineLoggerSplitsHugeLines(t *testing.T) {
	var buf bytes.Buffer
	w := newLineLogger(zerolog.New(&buf), "stdout")
	_, _ = w.Write(bytes.Repeat([]byte("x"), maxLogLine+10))
	_, _ = w.Write([]byte("\n"))
	if n := len(decodeLines(t, &buf)); n != 2 {
		t.Errorf("%d log lines, want 2", n)
	}
}

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	a := newHclogAdapter(zerolog.New(&buf).Level(zerolog.DebugLevel), "my-plugin")
	a.With("pid", 42).Named("stdio").Warn("something", "err", bytes.ErrTooLarge, "n", 3)
	a.Named("my-plugin").Error("a line of the plugin's stderr") // silenced
	if a.Named("my-plugin").GetLevel() != hclog.Off {
		t.Error("the stderr sub-logger is not off")
	}
	got := decodeLines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("%d lines, want 1: %v", len(got), got)
	}
	if l := got[0]; l["level"] != "debug" || l["message"] != "something" || l["go_plugin"] != "stdio" ||
		l["pid"] != float64(42) || l["n"] != float64(3) || l["err"] == nil {
		t.Errorf("line = %v", l)
	}

	buf.Reset()
	quiet := newHclogAdapter(zerolog.New(&buf).Level(zerolog.InfoLevel), "x")
	quiet.Error("dropped")
	if buf.Len() != 0 || quiet.IsDebug() || quiet.GetLevel() != hclog.Off {
		t.Errorf("adapter of an info logger logged %q", buf.String())
	}
}
