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

// A line over maxLogLine is logged once, cut, however long it is (it used
// to be logged in 64 KiB pieces: a plugin printing 100 MiB without a
// newline made 1,600 log lines); the lines around it are intact.
func TestLineLoggerTruncatesHugeLines(t *testing.T) {
	var buf bytes.Buffer
	w := newLineLogger(zerolog.New(&buf), "stdout")
	_, _ = w.Write([]byte("before\n"))
	chunk := bytes.Repeat([]byte("x"), 1000)
	for range 10 << 10 { // 10 MB in writes of 1,000 bytes
		_, _ = w.Write(chunk)
	}
	_, _ = w.Write([]byte("still the long line\nafter\nexact"))
	_, _ = w.Write(bytes.Repeat([]byte("y"), maxLogLine-len("exact")))
	_, _ = w.Write([]byte("\n"))
	w.Flush()
	got := decodeLines(t, &buf)
	if len(got) != 4 {
		t.Fatalf("%d log lines, want 4", len(got))
	}
	if got[0]["message"] != "before" || got[2]["message"] != "after" {
		t.Errorf("lines around the long one: %v, %v", got[0]["message"], got[2]["message"])
	}
	if m, _ := got[1]["message"].(string); len(m) != maxLogLine || got[1]["truncated"] != true {
		t.Errorf("long line logged with %d bytes, truncated=%v", len(m), got[1]["truncated"])
	}
	if m, _ := got[3]["message"].(string); len(m) != maxLogLine || got[3]["truncated"] != nil {
		t.Errorf("a line of exactly maxLogLine bytes: %d bytes, truncated=%v", len(m), got[3]["truncated"])
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
