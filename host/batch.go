package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
)

// ErrNoDLQ is the fatal error of a pipeline without a DLQ whose record failed
// for good: rather than skip the record, the pipeline stops before its
// position is committed.
var ErrNoDLQ = errors.New("record failed for good and the pipeline has no dlq")

// work is one record being settled by a batch worker.
type work struct {
	*item
	attempts int // failed attempts so far
	done     bool
	first    time.Time
	last     time.Time
	msg      string
	class    plugins.ErrorClass
}

func (w *work) failed(now time.Time, class plugins.ErrorClass, msg string) {
	w.attempts++
	if w.first.IsZero() {
		w.first = now
	}
	w.last, w.class, w.msg = now, class, msg
}

// batchRun settles one batch: it calls the handler, writes outputs to sinks
// and failures to the DLQ, retries what is retryable, bisects a batch that
// keeps failing as a whole, and reports records to the lane as they become
// complete. It runs on its own goroutine, owned by the lane.
type batchRun struct {
	pl   *pipeline
	lane *lane
	id   int64
	log  zerolog.Logger
	ctx  context.Context
	all  []*work
}

func (pl *pipeline) startBatch(l *lane, id int64, items []*item) {
	r := &batchRun{pl: pl, lane: l, id: id, ctx: l.hardCtx}
	r.all = make([]*work, len(items))
	for i, it := range items {
		r.all[i] = &work{item: it}
	}
	r.log = l.log.With().Int64("batch", id).
		Str("first", items[0].rec.Position.String()).
		Str("last", items[len(items)-1].rec.Position.String()).Logger()
	pl.stats.Batches.Add(1)
	go r.run()
}

func (r *batchRun) run() {
	err := r.settle(r.all, r.pl.cfg.Retry.MaxAttempts)
	var abandoned []*item
	for _, w := range r.all {
		if !w.isDone() {
			abandoned = append(abandoned, w.item)
		}
	}
	if len(abandoned) > 0 && err == nil {
		r.log.Debug().Int("records", len(abandoned)).Msg("batch abandoned on stop; its records will be redelivered")
	}
	r.lane.results <- completion{abandoned: abandoned, done: true, fatal: err}
}

// isDone reports whether w was reported complete to the lane. A work value
// is only touched by its batch's goroutine.
func (w *work) isDone() bool { return w.done }

func (r *batchRun) complete(ws []*work) {
	if len(ws) == 0 {
		return
	}
	items := make([]*item, len(ws))
	for i, w := range ws {
		items[i] = w.item
		w.done = true
	}
	r.lane.results <- completion{items: items}
}

// settle works until every record of todo is complete or the lane is
// stopped. maxAttempts is the number of failed attempts after which a record
// is dead-lettered (and after which a batch failing as a whole is bisected).
func (r *batchRun) settle(todo []*work, maxAttempts int) error {
	retryN := 0
	for len(todo) > 0 {
		if r.ctx.Err() != nil {
			return nil
		}
		res, err := r.call(todo)
		if r.ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if err != nil {
			class := plugins.ClassOf(err)
			for _, w := range todo {
				w.failed(now, class, err.Error())
			}
			r.pl.stats.HandlerErrors.Add(1)
			if todo[0].attempts < maxAttempts && plugins.IsRetryable(err) {
				retryN++
				r.pl.stats.Retries.Add(int64(len(todo)))
				d := backoff(retryN, r.pl.cfg.Retry.InitialBackoff, r.pl.cfg.Retry.MaxBackoff)
				r.log.Warn().Err(err).Str("class", class.String()).Int("records", len(todo)).
					Int("attempt", todo[0].attempts).Dur("backoff", d).Msg("batch failed; retrying")
				sleep(r.ctx, d)
				continue
			}
			if len(todo) > 1 && r.pl.cfg.Retry.Bisect {
				mid := len(todo) / 2
				r.log.Warn().Err(err).Int("records", len(todo)).Msg("batch keeps failing; bisecting to isolate the poison records")
				// Halves have had their retries; each failure from here splits again.
				if err := r.settle(todo[:mid], todo[0].attempts); err != nil {
					return err
				}
				return r.settle(todo[mid:], todo[mid].attempts)
			}
			return r.deadLetter(todo)
		}
		next, err := r.outcome(todo, res, now, maxAttempts)
		if err != nil {
			return err
		}
		if len(next) > 0 {
			retryN++
			r.pl.stats.Retries.Add(int64(len(next)))
			sleep(r.ctx, backoff(retryN, r.pl.cfg.Retry.InitialBackoff, r.pl.cfg.Retry.MaxBackoff))
		}
		todo = next
	}
	return nil
}

// call sends todo to the handler as one batch.
func (r *batchRun) call(todo []*work) (*plugins.Result, error) {
	recs := make([]record.Record, len(todo))
	attempt := 1
	for i, w := range todo {
		recs[i] = w.rec
		attempt = max(attempt, w.attempts+1)
	}
	b := &plugins.Batch{
		Pipeline: r.pl.cfg.Name, Stream: r.lane.part.Stream, Partition: r.lane.part.ID,
		Attempt: attempt, Records: recs,
	}
	start := time.Now()
	res, err := r.pl.handler.Handle(r.ctx, b)
	r.pl.stats.observeCall(time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("handling batch %d of %s: %w", r.id, r.lane.part, err)
	}
	if err := validateResult(res, len(todo)); err != nil {
		return nil, fmt.Errorf("handling batch %d of %s: %w", r.id, r.lane.part, err)
	}
	return res, nil
}

// badReply is a handler reply that breaks the protocol. It fails the whole
// batch (the reply cannot be attributed), is not retried as is, and is
// bisected like a crash.
func badReply(format string, args ...any) error {
	return plugins.NewError(plugins.ClassBadReply, false, fmt.Errorf("bad reply from handler: "+format, args...))
}

// validateResult checks indexes; an output to an unknown sink is not a
// protocol error but a failure of its record (see outcome).
func validateResult(res *plugins.Result, n int) error {
	if res == nil {
		return badReply("no result")
	}
	for _, o := range res.Outputs {
		if o.Index < 0 || o.Index >= n {
			return badReply("output index %d out of range [0,%d)", o.Index, n)
		}
	}
	for _, f := range res.Failures {
		if f.Index < 0 || f.Index >= n {
			return badReply("failure index %d out of range [0,%d)", f.Index, n)
		}
	}
	return nil
}

// outcome applies a handler's result: outputs of records that succeeded go
// to their sinks, records that failed for good go to the DLQ, and both are
// then reported complete. It returns the records to try again: retryable
// failures, and every later record of a failing record's key (so a key's
// records complete in order).
func (r *batchRun) outcome(todo []*work, res *plugins.Result, now time.Time, maxAttempts int) ([]*work, error) {
	type status struct {
		fail     *plugins.Failure
		deferred bool
	}
	st := make([]status, len(todo))
	for i := range res.Failures {
		f := &res.Failures[i]
		if st[f.Index].fail == nil {
			st[f.Index].fail = f
		}
	}
	for _, o := range res.Outputs {
		if _, ok := r.pl.sinks[o.Sink]; !ok && st[o.Index].fail == nil {
			st[o.Index].fail = &plugins.Failure{Index: o.Index, Class: plugins.ClassBadReply,
				Message: fmt.Sprintf("output to sink %q, which the pipeline does not declare", o.Sink)}
		}
	}
	// A record that will be tried again holds back the later records of its
	// key (they are tried again with it, after it), so a key's outputs keep
	// their order. A record dead-lettered now holds nothing back.
	retry := func(i int) bool {
		f := st[i].fail
		return f != nil && f.Retryable && todo[i].attempts+1 < maxAttempts
	}
	var retryingKeys map[string]struct{}
	for i, w := range todo {
		k := string(w.rec.Key)
		if _, ok := retryingKeys[k]; ok && st[i].fail == nil {
			st[i].deferred = true
			continue
		}
		if retry(i) {
			if retryingKeys == nil {
				retryingKeys = map[string]struct{}{}
			}
			retryingKeys[k] = struct{}{}
		}
	}

	// outputs of the records that succeeded, per sink, in record order
	perSink := map[string][]record.Message{}
	for _, o := range res.Outputs {
		if st[o.Index].fail == nil && !st[o.Index].deferred {
			perSink[o.Sink] = append(perSink[o.Sink], o.Message)
		}
	}
	for name, msgs := range perSink {
		if err := r.write(r.pl.sinks[name], "sink "+name, msgs); err != nil {
			return nil, nil // stopped: abandon
		}
		r.pl.stats.Outputs.Add(int64(len(msgs)))
	}

	var ok, dead, next []*work
	for i, w := range todo {
		switch {
		case st[i].deferred:
			next = append(next, w)
		case st[i].fail == nil:
			ok = append(ok, w)
		default:
			f := st[i].fail
			w.failed(now, f.Class, f.Message)
			r.pl.stats.Failures.Add(1)
			if !f.Retryable || w.attempts >= maxAttempts {
				dead = append(dead, w)
			} else {
				next = append(next, w)
			}
		}
	}
	r.complete(ok)
	if err := r.deadLetter(dead); err != nil {
		return nil, err
	}
	return next, nil
}

// deadLetter writes ws to the DLQ and reports them complete. Without a DLQ it
// returns a fatal error naming the first record.
func (r *batchRun) deadLetter(ws []*work) error {
	if len(ws) == 0 {
		return nil
	}
	if r.pl.dlq == nil {
		w := ws[0]
		return fmt.Errorf("pipeline %s: %s at %s: %s (%s): %w", r.pl.cfg.Name, r.lane.part, w.rec.Position, w.msg, w.class, ErrNoDLQ)
	}
	msgs := make([]record.Message, len(ws))
	origin := dlq.Origin{Pipeline: r.pl.cfg.Name, HandlerName: r.pl.info.Name, HandlerVersion: r.pl.info.Version, HostID: r.pl.hostID}
	for i, w := range ws {
		msgs[i] = dlq.Envelope(&w.rec, dlq.Failure{Message: w.msg, Class: w.class.String(), Attempts: w.attempts,
			FirstFailure: w.first, LastFailure: w.last}, origin)
		r.log.Debug().Str("position", w.rec.Position.String()).Str("class", w.class.String()).
			Int("attempts", w.attempts).Str("error", w.msg).Msg("record dead-lettered")
	}
	if err := r.write(r.pl.dlq, "dlq", msgs); err != nil {
		return nil // stopped: abandon, nothing committed past these records
	}
	w := ws[0]
	r.log.Info().Int("records", len(ws)).Str("position", w.rec.Position.String()).Str("class", w.class.String()).
		Int("attempts", w.attempts).Str("error", w.msg).Msg("dead-lettered (first of them shown; debug level lists each)")
	r.pl.stats.DLQ.Add(int64(len(msgs)))
	r.complete(ws)
	return nil
}

// write writes msgs to s, retrying the messages that failed with backoff
// until all are written or the lane is stopped (then it returns ctx's error).
// A destination that is down therefore holds the batch, and with it the
// partition's commit, instead of losing records.
func (r *batchRun) write(s Sink, what string, msgs []record.Message) error {
	for n := 1; ; n++ {
		err := s.Write(r.ctx, msgs)
		if err == nil {
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		failed := sinks.Failed(err, len(msgs))
		var rest []record.Message
		for i, f := range failed {
			if f {
				rest = append(rest, msgs[i])
			}
		}
		msgs = rest
		d := backoff(n, r.pl.cfg.Retry.InitialBackoff, r.pl.cfg.Retry.MaxBackoff)
		r.log.Warn().Err(err).Str("to", what).Int("messages", len(msgs)).Dur("backoff", d).Msg("write failed; retrying")
		if !sleep(r.ctx, d) {
			return r.ctx.Err()
		}
	}
}
