package host

import (
	"fmt"
	"time"
	"unicode/utf8"

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

// rejectUnsendable dead-letters, at once and without calling the handler,
// the records of todo that cannot be sent to it (class invalid_input), and
// returns the others in order. Without it, one such record fails its whole
// batch until bisection isolates it, counting against the handler breaker
// on the way.
func (r *batchRun) rejectUnsendable(todo []*work) ([]*work, error) {
	var bad []*work
	for _, w := range todo {
		if unsendable(&w.rec) != "" {
			bad = append(bad, w)
		}
	}
	if len(bad) == 0 {
		return todo, nil
	}
	keep := make([]*work, 0, len(todo)-len(bad))
	now := time.Now()
	for _, w := range todo {
		if msg := unsendable(&w.rec); msg != "" {
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
