package host

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// unsendable says why rec cannot be sent to a handler ("" if it can). The
// handler protocol carries header keys as protobuf strings, which must be
// valid UTF-8; Kafka header keys are bytes on the wire, and a producer may
// send any. Such a record would fail every batch it is in at marshaling.
func unsendable(rec *record.Record) string {
	for i, h := range rec.Headers {
		if !utf8.ValidString(h.Key) {
			return fmt.Sprintf("header %d: key %q is not valid UTF-8, which the handler protocol requires of header keys", i, h.Key)
		}
	}
	return ""
}

// sendable is unsendable(rec) == "", without making the message.
func sendable(rec *record.Record) bool {
	for i := range rec.Headers {
		if !utf8.ValidString(rec.Headers[i].Key) {
			return false
		}
	}
	return true
}

// rejectUnsendable dead-letters, at once and without calling the handler,
// the records of todo that cannot be sent to it (class invalid_input), and
// returns the others in order. Without it, one such record fails its whole
// batch until bisection isolates it, counting against the handler breaker
// on the way.
func (r *batchRun) rejectUnsendable(todo []*work) ([]*work, error) {
	if r.unsendable == 0 {
		return todo, nil // the lane checked each record as it came
	}
	var bad []*work
	for _, w := range todo {
		if w.item.unsendable {
			bad = append(bad, w)
		}
	}
	if len(bad) == 0 {
		return todo, nil
	}
	keep := make([]*work, 0, len(todo)-len(bad))
	now := time.Now()
	for _, w := range todo {
		if w.item.unsendable {
			msg := unsendable(w.rec)
			w.failed(now, plugins.ClassInvalidInput, msg, false, r.pl.successes.Load())
			r.pl.stats.Failures.Add(1)
			continue
		}
		keep = append(keep, w)
	}
	if _, err := r.deadLetter(bad); err != nil {
		return nil, err
	}
	return keep, nil
}

// useMTLS resolves handler.mtls: auto is on for builtins and for plugin
// executables with Go build information (their go-plugin server supports
// automatic mTLS), off for anything else (an interpreter, a binary of
// another language).
func useMTLS(h config.Handler) bool {
	switch h.MTLS {
	case config.MTLSOn:
		return true
	case config.MTLSOff:
		return false
	}
	return h.Builtin != "" || h.PluginPath != "" && config.IsGoBinary(h.PluginPath)
}

// overLimits returns, by record index, a failure for each record of a
// reply of n records that breaks the handler's limits: more than
// max_outputs_per_record outputs, or an output (key, value and headers)
// larger than max_output_bytes. Such a record is dead-lettered (class
// bad_reply, not retryable: the same record gives the same reply) and none
// of its outputs is written. A zero limit is no limit.
func overLimits(res *plugins.Result, n int, h config.Handler) map[int]*plugins.Failure {
	var out map[int]*plugins.Failure
	fail := func(i int, format string, args ...any) {
		if out == nil {
			out = map[int]*plugins.Failure{}
		}
		if out[i] == nil {
			out[i] = &plugins.Failure{Index: i, Class: plugins.ClassBadReply, Message: fmt.Sprintf(format, args...)}
		}
	}
	var count []int
	if h.MaxOutputsPerRecord > 0 && len(res.Outputs) > h.MaxOutputsPerRecord {
		// (no record can be over the limit with fewer outputs in all)
		count = make([]int, n)
	}
	for _, o := range res.Outputs {
		if count != nil {
			if count[o.Index]++; count[o.Index] == h.MaxOutputsPerRecord+1 {
				fail(o.Index, "the handler emitted more than handler.max_outputs_per_record (%d) outputs for this record", h.MaxOutputsPerRecord)
			}
		}
		if h.MaxOutputBytes > 0 {
			size := int64(len(o.Key) + len(o.Value))
			for _, hd := range o.Headers {
				size += int64(len(hd.Key) + len(hd.Value))
			}
			if size > h.MaxOutputBytes {
				fail(o.Index, "an output to sink %q is %d bytes, over handler.max_output_bytes (%d)", o.Sink, size, h.MaxOutputBytes)
			}
		}
	}
	return out
}
