// Package dlq is weir's dead-letter queue: the envelope a failed record is
// wrapped in (its original key, value and headers untouched, plus weir.*
// headers saying where it came from and why it failed), and reading it back:
// an Inspector summarizes a DLQ topic, a Replayer sends its records back to
// where they came from (`weir dlq inspect` and `weir dlq replay`).
package dlq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/record"
)

// Header names of the envelope. Every one starts with HeaderPrefix.
const (
	HeaderPrefix         = "weir."
	HeaderPipeline       = "weir.pipeline"
	HeaderStream         = "weir.source.stream"
	HeaderPartition      = "weir.source.partition"
	HeaderPosition       = "weir.source.position"
	HeaderTimestamp      = "weir.source.timestamp"
	HeaderErrorMessage   = "weir.error.message"
	HeaderErrorClass     = "weir.error.class"
	HeaderAttempts       = "weir.attempts"
	HeaderFirstFailure   = "weir.failure.first"
	HeaderLastFailure    = "weir.failure.last"
	HeaderHandlerName    = "weir.handler.name"
	HeaderHandlerVersion = "weir.handler.version"
	HeaderHost           = "weir.host"
	HeaderReplayCount    = "weir.replay-count"
	// HeaderReplaySourcePosition is set by `weir dlq replay` on a replayed
	// record: "stream/partition/position" of the record that was
	// dead-lettered, so that a pipeline can derive the original's
	// idempotency key (two copies of one replay, after a replay was
	// interrupted between producing and committing, then share it). A key
	// derived from it must include HeaderReplayCount too: the original's
	// own key was marked done when it was dead-lettered. Envelope drops it
	// like every weir.* header except HeaderReplayCount: a replayed record
	// that fails again is dead-lettered with its own position, and the
	// next replay points at that.
	HeaderReplaySourcePosition = "weir.replay.source-position"
)

// Failure is why a record is dead-lettered.
type Failure struct {
	Message      string
	Class        string
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
}

// Origin is what the host knows of the record's journey.
type Origin struct {
	Pipeline       string
	HandlerName    string
	HandlerVersion string
	HostID         string
}

// Envelope wraps a failed record for the DLQ: its key, value and headers are
// kept as they were (any weir.* header except weir.replay-count is replaced,
// so a record dead-lettered twice carries only its latest failure), and the
// weir.* headers are appended. Times are RFC 3339 with nanoseconds, UTC.
func Envelope(r *record.Record, f Failure, o Origin) record.Message {
	hs := make([]record.Header, 0, len(r.Headers)+13)
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, HeaderPrefix) && h.Key != HeaderReplayCount {
			continue
		}
		hs = append(hs, h)
	}
	add := func(k, v string) { hs = append(hs, record.Header{Key: k, Value: []byte(v)}) }
	add(HeaderPipeline, o.Pipeline)
	add(HeaderStream, r.Partition.Stream)
	add(HeaderPartition, r.Partition.ID)
	add(HeaderPosition, r.Position.String())
	add(HeaderTimestamp, formatTime(r.Timestamp))
	add(HeaderErrorMessage, f.Message)
	add(HeaderErrorClass, f.Class)
	add(HeaderAttempts, strconv.Itoa(f.Attempts))
	add(HeaderFirstFailure, formatTime(f.FirstFailure))
	add(HeaderLastFailure, formatTime(f.LastFailure))
	add(HeaderHandlerName, o.HandlerName)
	add(HeaderHandlerVersion, o.HandlerVersion)
	add(HeaderHost, o.HostID)
	return record.Message{Key: r.Key, Value: r.Value, Headers: hs, Timestamp: r.Timestamp}
}

// formatTime writes t as RFC 3339 with nanoseconds, in UTC. RFC 3339 has
// four-digit years only, and a Kafka producer may set any timestamp (a
// negative one, or one millions of years away): a time outside years
// 0000-9999 is written as Unix seconds and nanoseconds ("-62198755200.000000000")
// instead, which parseTime reads back, so that its envelope stays readable
// and replayable.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return strconv.FormatInt(t.Unix(), 10) + "." + fmt.Sprintf("%09d", t.Nanosecond())
	}
	return t.Format(time.RFC3339Nano)
}

// parseTime reads what formatTime wrote.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	sec, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 9 || strings.TrimLeft(frac, "0123456789") != "" {
		return time.Time{}, err
	}
	n, serr := strconv.ParseInt(sec, 10, 64)
	ns, nerr := strconv.ParseInt(frac, 10, 64)
	if serr != nil || nerr != nil {
		return time.Time{}, err
	}
	return time.Unix(n, ns).UTC(), nil
}

// Entry is a DLQ record read back: the original record and its failure.
type Entry struct {
	Key     []byte
	Value   []byte
	Headers []record.Header // original headers, weir.* removed except replay count
	Origin  Origin
	Source  record.Partition
	// Position is the record's position in Source, as text.
	Position    string
	Timestamp   time.Time
	Failure     Failure
	ReplayCount int
}

// SourcePosition returns where the dead-lettered record was read:
// "stream/partition/position", the value of HeaderReplaySourcePosition.
func (e *Entry) SourcePosition() string {
	return e.Source.Stream + "/" + e.Source.ID + "/" + e.Position
}

// Parse reads an envelope back. It fails, naming the header, when a weir.*
// header that must be there is missing, empty or malformed, or when a weir.*
// header appears twice (a second weir.replay-count could otherwise reset
// the count that stops a replay loop). Counts (attempts, replay count) must
// be non-negative decimal integers.
func Parse(key, value []byte, headers []record.Header) (*Entry, error) {
	e := &Entry{Key: key, Value: value}
	seen := map[string]string{}
	for _, h := range headers {
		if strings.HasPrefix(h.Key, HeaderPrefix) {
			if _, dup := seen[h.Key]; dup {
				return nil, fmt.Errorf("dlq envelope: header %s appears more than once", h.Key)
			}
			seen[h.Key] = string(h.Value)
			if h.Key != HeaderReplayCount {
				continue
			}
		}
		e.Headers = append(e.Headers, h)
	}
	for _, k := range []string{HeaderPipeline, HeaderStream, HeaderPartition, HeaderPosition} {
		if v, ok := seen[k]; !ok {
			return nil, fmt.Errorf("dlq envelope: header %s missing", k)
		} else if v == "" {
			return nil, fmt.Errorf("dlq envelope: header %s is empty", k)
		}
	}
	e.Origin = Origin{Pipeline: seen[HeaderPipeline], HandlerName: seen[HeaderHandlerName],
		HandlerVersion: seen[HeaderHandlerVersion], HostID: seen[HeaderHost]}
	e.Source = record.Partition{Stream: seen[HeaderStream], ID: seen[HeaderPartition]}
	e.Position = seen[HeaderPosition]
	e.Failure = Failure{Message: seen[HeaderErrorMessage], Class: seen[HeaderErrorClass]}
	var err error
	parseTime := func(k string, dst *time.Time) {
		if s := seen[k]; s != "" && err == nil {
			if *dst, err = parseTime(s); err != nil {
				err = fmt.Errorf("dlq envelope: header %s: %w", k, err)
			}
		}
	}
	parseInt := func(k string, dst *int) {
		if s := seen[k]; s != "" && err == nil {
			if *dst, err = parseCount(s); err != nil {
				err = fmt.Errorf("dlq envelope: header %s: %w", k, err)
			}
		}
	}
	parseTime(HeaderTimestamp, &e.Timestamp)
	parseTime(HeaderFirstFailure, &e.Failure.FirstFailure)
	parseTime(HeaderLastFailure, &e.Failure.LastFailure)
	parseInt(HeaderAttempts, &e.Failure.Attempts)
	parseInt(HeaderReplayCount, &e.ReplayCount)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// parseCount parses a count header: decimal digits only, no sign, at most
// math.MaxInt32 (so that adding one never overflows).
func parseCount(s string) (int, error) {
	if len(s) > 10 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a non-negative integer below 2^31", s)
	}
	return int(n), nil
}
