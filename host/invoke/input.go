// Package invoke runs one handler on records read from a JSON-lines file,
// in batches as a pipeline would, without a broker or Redis: the engine of
// `weir invoke`, for developing and testing a handler on sample events.
package invoke

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/weirhq/weir/record"
)

// Line is one input record as written in a JSON-lines file, and the shape
// of every record and output in invoke's JSON report. Each text field has a
// base64 twin for bytes that are not UTF-8; at most one of the two is set.
//
//	{"key":"d-1","value":"{\"temperature\":21}","headers":{"trace":"abc"},"partition":0,"offset":17}
//	{"key_b64":"AAE=","value_b64":"3q2+7w=="}
type Line struct {
	Key       *string           `json:"key,omitempty"`
	KeyB64    *string           `json:"key_b64,omitempty"`
	Value     *string           `json:"value,omitempty"`
	ValueB64  *string           `json:"value_b64,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Timestamp *time.Time        `json:"timestamp,omitempty"`
	// Partition defaults to 0; records of one partition are batched
	// together, in file order.
	Partition *int32 `json:"partition,omitempty"`
	// Offset defaults to the previous record's offset in the same
	// partition plus one (0 for the first); offsets must increase within a
	// partition.
	Offset *int64 `json:"offset,omitempty"`
}

// Input is a record read from the input, with the line it came from.
type Input struct {
	Line int
	record.Record
}

// LineError is a problem with one input line.
type LineError struct {
	// Name is the input's name (a file name, or "stdin").
	Name string
	Line int
	// Field is the JSON field at fault, or "" for the line as a whole.
	Field string
	Err   error
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.Name, e.Line, e.Field, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// maxLine bounds one input line: a record larger than this is not a sample.
const maxLine = 16 << 20

// maxErrors is how many bad lines Read reports before it stops looking.
const maxErrors = 50

// Read parses JSON-lines input: one Line object per line; blank lines and
// lines starting with # are skipped. stream names the records' stream (the
// pipeline's topic, or "invoke"). Every bad line is reported (up to 50), as
// *LineError values joined, and then no record is returned: invoke never
// runs on part of its input.
func Read(r io.Reader, name, stream string) ([]Input, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		out  []Input
		errs []error
		next = map[int32]int64{} // next default offset per partition
		last = map[int32]int{}   // line of the last record per partition
	)
	n := 0
	for sc.Scan() {
		n++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		in, err := parseLine(text, name, n, stream, next, last)
		if err != nil {
			errs = append(errs, err)
			if len(errs) == maxErrors {
				errs = append(errs, fmt.Errorf("%s: stopped after %d bad lines", name, maxErrors))
				break
			}
			continue
		}
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d MiB", maxLine>>20)
		}
		errs = append(errs, &LineError{Name: name, Line: n + 1, Err: err})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no records (write one JSON object per line, e.g. {\"key\":\"k\",\"value\":\"v\"}; `weir invoke --sample 10` writes examples)", name)
	}
	return out, nil
}

func parseLine(text []byte, name string, n int, stream string, next map[int32]int64, last map[int32]int) (Input, error) {
	lineErr := func(field string, err error) error {
		return &LineError{Name: name, Line: n, Field: field, Err: err}
	}
	var l Line
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Input{}, lineErr("", describeJSONError(err))
	}
	if dec.More() {
		return Input{}, lineErr("", errors.New("more than one JSON value on the line"))
	}
	key, err := textOrB64(l.Key, l.KeyB64, "key")
	if err != nil {
		return Input{}, lineErr(err.field, err.err)
	}
	value, err := textOrB64(l.Value, l.ValueB64, "value")
	if err != nil {
		return Input{}, lineErr(err.field, err.err)
	}
	var part int32
	if l.Partition != nil {
		part = *l.Partition
		if part < 0 {
			return Input{}, lineErr("partition", fmt.Errorf("%d is negative", part))
		}
	}
	off := next[part]
	if l.Offset != nil {
		if *l.Offset < 0 {
			return Input{}, lineErr("offset", fmt.Errorf("%d is negative", *l.Offset))
		}
		if prev, ok := last[part]; ok && *l.Offset < next[part] {
			return Input{}, lineErr("offset", fmt.Errorf("%d is not after offset %d of partition %d (line %d); offsets increase within a partition", *l.Offset, next[part]-1, part, prev))
		}
		off = *l.Offset
	}
	next[part], last[part] = off+1, n
	rec := record.Record{
		Key: key, Value: value,
		Partition: record.KafkaPartition(stream, part),
		Position:  record.Position{Offset: off},
	}
	if l.Timestamp != nil {
		rec.Timestamp = *l.Timestamp
	}
	for _, k := range sortedKeys(l.Headers) {
		rec.Headers = append(rec.Headers, record.Header{Key: k, Value: []byte(l.Headers[k])})
	}
	return Input{Line: n, Record: rec}, nil
}

type fieldErr struct {
	field string
	err   error
}

// textOrB64 decodes a field given as text or as base64 (at most one).
func textOrB64(text, b64 *string, field string) ([]byte, *fieldErr) {
	switch {
	case text != nil && b64 != nil:
		return nil, &fieldErr{field, fmt.Errorf("both %s and %s_b64 are set; use one", field, field)}
	case text != nil:
		return []byte(*text), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, &fieldErr{field + "_b64", fmt.Errorf("not standard base64: %w", err)}
		}
		return b, nil
	}
	return nil, nil
}

// describeJSONError makes encoding/json's errors say what a user must fix.
func describeJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("not a JSON object (at byte %d): %w", syn.Offset, err)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Errorf("field %s: %s is not a valid %s", typ.Field, typ.Value, typ.Type)
		}
		return fmt.Errorf("want a JSON object with key, value, headers, partition, offset; got a JSON %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON object")
	}
	// Unknown fields: json: unknown field "x"
	return fmt.Errorf("%w (fields: key, key_b64, value, value_b64, headers, timestamp, partition, offset)", err)
}

// toLine renders bytes as a Line's text field, or its base64 twin when
// they are not valid UTF-8.
func toText(b []byte) (text, b64 *string) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// LineOf renders a message as a Line (key, value, headers, timestamp).
func LineOf(m record.Message) Line {
	var l Line
	l.Key, l.KeyB64 = toText(m.Key)
	l.Value, l.ValueB64 = toText(m.Value)
	if len(m.Headers) > 0 {
		l.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			v := string(h.Value)
			if !utf8.Valid(h.Value) {
				v = "base64:" + base64.StdEncoding.EncodeToString(h.Value)
			}
			l.Headers[h.Key] = v
		}
	}
	if !m.Timestamp.IsZero() {
		ts := m.Timestamp
		l.Timestamp = &ts
	}
	return l
}
