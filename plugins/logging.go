package plugins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// maxLogLine bounds a line of plugin output: a longer line is logged cut to
// its first maxLogLine bytes (with truncated: true), and the rest of it, up
// to the next newline, is dropped. A plugin cannot flood the log, or the
// host's memory, with one endless line.
const maxLogLine = 64 << 10

// lineLogger is an io.Writer that logs each line written to it as one
// zerolog event. The Pool gives one to each plugin process per output
// stream. It is safe for concurrent use.
type lineLogger struct {
	mu      sync.Mutex
	log     zerolog.Logger
	buf     []byte
	inPanic bool
	// dropping is set while the rest of an over-long line is dropped.
	dropping bool
}

func newLineLogger(l zerolog.Logger, stream string) *lineLogger {
	return &lineLogger{log: l.With().Str("stream", stream).Logger()}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if w.dropping {
			if i < 0 {
				break
			}
			w.dropping = false
			p = p[i+1:]
			continue
		}
		if i < 0 || len(w.buf)+i > maxLogLine {
			take := min(len(p), maxLogLine-len(w.buf))
			if i >= 0 {
				take = min(take, i)
			}
			w.buf = append(w.buf, p[:take]...)
			p = p[take:]
			if len(p) == 0 {
				break // no newline yet; the next write says whether it is too long
			}
			w.emitTruncated(w.buf)
			w.buf = w.buf[:0]
			w.dropping = true
			continue
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, p[:i]...)
			w.emit(w.buf)
			w.buf = w.buf[:0]
		} else {
			w.emit(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// Flush logs a trailing partial line, if any.
func (w *lineLogger) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
	w.dropping = false
}

// emitTruncated logs the first maxLogLine bytes of an over-long line.
func (w *lineLogger) emitTruncated(line []byte) {
	w.log.Info().Bool("truncated", true).Int("max_line_bytes", maxLogLine).Msg(strings.ToValidUTF8(string(line), "\uFFFD"))
}

// emit logs one line: at info, or at error from a Go panic or fatal error
// on (the stack trace that follows belongs to it). A line that is a JSON
// object (a structured log of the plugin's own) is embedded as the field
// "entry" rather than quoted.
func (w *lineLogger) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: ")) {
		w.inPanic = true
	}
	ev := w.log.Info()
	if w.inPanic {
		ev = w.log.Error()
	}
	if line[0] == '{' && json.Valid(line) {
		ev.RawJSON("entry", line).Msg("plugin log")
		return
	}
	ev.Msg(string(line))
}

// hclogAdapter sends go-plugin's own logging to zerolog, all of it at debug
// level: it is go-plugin's chatter; the Pool logs the events that matter
// (exits, restarts) itself. The sub-logger go-plugin names after the plugin
// executable, which repeats the process's stderr, is silenced: the Pool logs
// stderr through a lineLogger instead.
type hclogAdapter struct {
	log     zerolog.Logger
	name    string
	silent  string // the Named() name to silence
	off     bool
	debug   bool // whether log is enabled at debug level
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclogAdapter(l zerolog.Logger, silent string) *hclogAdapter {
	a := &hclogAdapter{log: l, silent: silent}
	if ev := l.Debug(); ev != nil {
		a.debug = true
		ev.Discard()
	}
	return a
}

func (a *hclogAdapter) Log(_ hclog.Level, msg string, args ...any) {
	if !a.enabled() {
		return
	}
	ev := a.log.Debug()
	if a.name != "" {
		ev = ev.Str("go_plugin", a.name)
	}
	ev = addKV(ev, a.implied)
	addKV(ev, args).Msg(msg)
}

func addKV(ev *zerolog.Event, kv []any) *zerolog.Event {
	for i := 0; i < len(kv); i += 2 {
		key := fmt.Sprint(kv[i])
		switch key {
		case "plugin", "instance", "level", "message", "time", "stream":
			// Ours; keep go-plugin's apart.
			key = "go_plugin_" + key
		}
		if i+1 >= len(kv) {
			ev = ev.Str("extra", key)
			break
		}
		switch v := kv[i+1].(type) {
		case error:
			ev = ev.AnErr(key, v)
		case string:
			ev = ev.Str(key, v)
		default:
			ev = ev.Interface(key, v)
		}
	}
	return ev
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled() bool { return a.debug && !a.off }

func (a *hclogAdapter) IsTrace() bool { return a.enabled() }
func (a *hclogAdapter) IsDebug() bool { return a.enabled() }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled() }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled() }
func (a *hclogAdapter) IsError() bool { return a.enabled() }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if a.name != "" {
		c.name = a.name + "." + name
	} else {
		c.name = name
	}
	if name == a.silent {
		c.off = true
	}
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	c.off = name == a.silent
	return &c
}

// SetLevel is ignored: the level is the zerolog logger's.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	if !a.enabled() {
		return hclog.Off
	}
	return hclog.Debug
}

func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Log(hclog.Debug, strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
