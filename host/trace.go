package host

import (
	"github.com/rs/zerolog"

	"github.com/weirhq/weir/record"
)

// W3C Trace Context (https://www.w3.org/TR/trace-context/) across weir.
//
// weir passes a record's trace context through unchanged: it reports no
// spans of its own (there is no tracing backend to send them to), so it
// must not invent a parent span id that no backend will ever receive. A
// record's traceparent and tracestate headers reach the handler with the
// record; an output of the record that carries no traceparent of its own
// gets the record's traceparent (and tracestate), so a downstream consumer's
// span is a child of the producer's span and the trace spans source →
// handler → sink; a handler that starts a span of its own (an OpenTelemetry
// SDK in the plugin) sets its own traceparent on its outputs, and weir
// keeps it. A DLQ envelope keeps every original header, traceparent
// included, and so does a replay. A traceparent that is not valid (W3C
// version 00 format) is not copied onto outputs.
const (
	headerTraceparent = "traceparent"
	headerTracestate  = "tracestate"
)

// traceID returns the trace id of a valid version-00 traceparent value
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", neither id all
// zeros), and ok.
func traceID(v []byte) (string, bool) {
	if len(v) != 55 || v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return "", false
	}
	hex := func(b []byte) (nonZero, ok bool) {
		for _, c := range b {
			switch {
			case c >= '1' && c <= '9', c >= 'a' && c <= 'f':
				nonZero = true
			case c == '0':
			default:
				return false, false
			}
		}
		return nonZero, true
	}
	tid, ok1 := hex(v[3:35])
	pid, ok2 := hex(v[36:52])
	_, ok3 := hex(v[53:55])
	if !ok1 || !ok2 || !ok3 || !tid || !pid {
		return "", false
	}
	return string(v[3:35]), true
}

// header returns the value of the first header named key, and whether there
// is one.
func header(hs []record.Header, key string) ([]byte, bool) {
	for i := range hs {
		if hs[i].Key == key {
			return hs[i].Value, true
		}
	}
	return nil, false
}

// withTrace returns m carrying rec's trace context: rec's valid
// traceparent (and its tracestate), unless m has a traceparent of its own.
// m's headers are copied, never appended to in place (the handler's slice
// may be shared).
func withTrace(m record.Message, rec *record.Record) record.Message {
	if len(rec.Headers) == 0 {
		return m
	}
	tp, ok := header(rec.Headers, headerTraceparent)
	if !ok {
		return m
	}
	if _, valid := traceID(tp); !valid {
		return m
	}
	if _, own := header(m.Headers, headerTraceparent); own {
		return m
	}
	hs := make([]record.Header, len(m.Headers), len(m.Headers)+2)
	copy(hs, m.Headers)
	hs = append(hs, record.Header{Key: headerTraceparent, Value: tp})
	if ts, ok := header(rec.Headers, headerTracestate); ok {
		if _, own := header(m.Headers, headerTracestate); !own {
			hs = append(hs, record.Header{Key: headerTracestate, Value: ts})
		}
	}
	m.Headers = hs
	return m
}

// maxLoggedTraces bounds the trace ids one log line about a batch lists.
const maxLoggedTraces = 10

// logTraces adds to e the distinct trace ids of ws's records (at most
// maxLoggedTraces; trace_ids_more says how many more), if any. It is meant
// for zerolog's Event.Func, so it only scans the headers when the line is
// written.
func logTraces(ws []*work) func(e *zerolog.Event) {
	return func(e *zerolog.Event) {
		var ids []string
		seen := map[string]bool{}
		more := 0
		for _, w := range ws {
			tp, ok := header(w.rec.Headers, headerTraceparent)
			if !ok {
				continue
			}
			id, ok := traceID(tp)
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			if len(ids) < maxLoggedTraces {
				ids = append(ids, id)
			} else {
				more++
			}
		}
		if len(ids) > 0 {
			e.Strs("trace_ids", ids)
		}
		if more > 0 {
			e.Int("trace_ids_more", more)
		}
	}
}
