// Package stdout is a sink that prints each message as one JSON line, for
// trying pipelines out and piping into jq.
package stdout

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("stdout sink: closed")

// Config configures a Sink.
type Config struct {
	// Writer receives the lines; default os.Stdout. The sink does not close
	// it.
	Writer io.Writer
}

// Sink writes one JSON object per message and line:
//
//	{"key":"k","value":{"a":1},"headers":{"h":"v"},"timestamp":"2024-05-01T10:00:00.123Z"}
//
// key and value are strings when they are valid UTF-8; a value that is valid
// JSON is embedded as JSON (compacted onto the line) rather than as a
// string. Bytes that are not UTF-8 go to "key_b64" / "value_b64" as base64
// instead. A nil key or value is null. Headers are an object of UTF-8
// values; a key given more than once maps to an array of its values in
// order; non-UTF-8 header values go to "headers_b64" the same way. The
// timestamp is RFC 3339 in UTC, omitted when zero.
//
// Write is safe for concurrent use: the lines of one call are written with
// a single Write to the writer, never interleaved with another call's.
type Sink struct {
	w      io.Writer
	mu     sync.Mutex
	closed bool
}

var _ sinks.Sink = (*Sink)(nil)

// New returns a Sink writing to cfg.Writer.
func New(cfg Config) (*Sink, error) {
	w := cfg.Writer
	if w == nil {
		w = os.Stdout
	}
	return &Sink{w: w}, nil
}

// Write writes one line per message. An error from the writer fails every
// message of the call.
func (s *Sink) Write(ctx context.Context, msgs []record.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stdout sink: %w", err)
	}
	var buf bytes.Buffer
	for i := range msgs {
		if err := appendLine(&buf, &msgs[i]); err != nil {
			return fmt.Errorf("stdout sink: encode message %d: %w", i, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("stdout sink: write: %w", err)
	}
	return nil
}

// Close stops accepting writes and syncs the writer if it can be synced
// (an *os.File other than a terminal or pipe). Safe to call twice.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if f, ok := s.w.(interface{ Sync() error }); ok {
		// Syncing stdout fails when it is a terminal or a pipe; that
		// is not a failed write.
		_ = f.Sync()
	}
	return nil
}

// line is the JSON shape of one message; field order is the output order.
type line struct {
	Key        json.RawMessage            `json:"key,omitempty"`
	KeyB64     string                     `json:"key_b64,omitempty"`
	Value      json.RawMessage            `json:"value,omitempty"`
	ValueB64   string                     `json:"value_b64,omitempty"`
	Headers    map[string]json.RawMessage `json:"headers,omitempty"`
	HeadersB64 map[string]json.RawMessage `json:"headers_b64,omitempty"`
	Timestamp  string                     `json:"timestamp,omitempty"`
}

var null = json.RawMessage("null")

func appendLine(buf *bytes.Buffer, m *record.Message) error {
	var l line
	switch {
	case m.Key == nil:
		l.Key = null
	case utf8.Valid(m.Key):
		l.Key = jsonString(m.Key)
	default:
		l.KeyB64 = base64.StdEncoding.EncodeToString(m.Key)
	}
	switch {
	case m.Value == nil:
		l.Value = null
	case json.Valid(m.Value):
		var c bytes.Buffer
		if err := json.Compact(&c, m.Value); err != nil {
			return err
		}
		l.Value = c.Bytes()
	case utf8.Valid(m.Value):
		l.Value = jsonString(m.Value)
	default:
		l.ValueB64 = base64.StdEncoding.EncodeToString(m.Value)
	}
	if len(m.Headers) > 0 {
		text := map[string][]string{}
		bin := map[string][]string{}
		for _, h := range m.Headers {
			if utf8.Valid(h.Value) {
				text[h.Key] = append(text[h.Key], string(h.Value))
			} else {
				bin[h.Key] = append(bin[h.Key], base64.StdEncoding.EncodeToString(h.Value))
			}
		}
		l.Headers = headerObject(text)
		l.HeadersB64 = headerObject(bin)
	}
	if !m.Timestamp.IsZero() {
		l.Timestamp = m.Timestamp.UTC().Format(time.RFC3339Nano)
	}

	// The encoder ends the line; it leaves <, > and & as they are.
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return enc.Encode(l)
}

// headerObject maps each key to its value, or to an array of its values in
// order when it has several.
func headerObject(vals map[string][]string) map[string]json.RawMessage {
	if len(vals) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(vals))
	for k, vs := range vals {
		if len(vs) == 1 {
			out[k] = jsonString([]byte(vs[0]))
			continue
		}
		arr := []byte{'['}
		for i, v := range vs {
			if i > 0 {
				arr = append(arr, ',')
			}
			arr = append(arr, jsonString([]byte(v))...)
		}
		out[k] = append(arr, ']')
	}
	return out
}

// jsonString quotes valid UTF-8 b as a JSON string, without escaping HTML.
func jsonString(b []byte) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(b)) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
