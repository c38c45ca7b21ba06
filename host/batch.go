package host

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/host/checkpoint"
	"github.com/weirhq/weir/host/config"
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
	hasKey   bool
	// key is the record's idempotency key (hasKey: with idempotency on).
	key checkpoint.Key
	// failure is how the record failed; nil until it first does, which
	// keeps the work of a batch that succeeds small.
	*failure
}

// failure is a record's failure history within its batch.
type failure struct {
	first time.Time
	last  time.Time
	msg   string
	class plugins.ErrorClass
	// retryable is whether the latest failure may pass on its own (a
	// dependency, not the record): such a record is only dead-lettered once
	// other calls succeeded after it first failed.
	retryable bool
	// successesBefore is the pipeline's count of successful handler calls
	// when the call of this record's first failure started.
	successesBefore int64
	// handler is the version that failed the record last (zero: unknown).
	handler plugins.Info
}

func (w *work) failed(now time.Time, class plugins.ErrorClass, msg string, retryable bool, successesBefore int64) {
	w.attempts++
	if w.failure == nil {
		w.failure = &failure{first: now, successesBefore: successesBefore}
	}
	w.last, w.class, w.msg, w.retryable = now, class, msg, retryable
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
	// slab holds all and the work values it points to; the lane recycles
	// it once it has the batch's last completion (see recycle).
	slab *workSlab
	// parked is set once the batch gave up its lane slot (see park).
	parked bool
	// started is when the batch was dispatched.
	started time.Time
	// unsendable counts the batch's records the handler protocol cannot
	// carry (see rejectUnsendable).
	unsendable int
	// retrying is set once a record of the batch failed and is being
	// tried again: its records (and, under ordering key, later records of
	// their keys) wait on it, not on a free worker. Read by the lane's lag
	// snapshot.
	retrying atomic.Bool
}

func (pl *pipeline) startBatch(l *lane, id int64, items []*item, unsendable int) *batchRun {
	r := &batchRun{pl: pl, lane: l, id: id, ctx: l.hardCtx, started: time.Now(), unsendable: unsendable}
	r.slab = getWorkSlab(len(items))
	ws := r.slab.ws
	r.all = r.slab.all
	for i, it := range items {
		ws[i] = work{item: it} // the slab's work values are not cleared (see recycle)
		r.all[i] = &ws[i]
	}
	r.log = l.log.With().Int64("batch", id).
		Str("first", items[0].rec.Position.String()).
		Str("last", items[len(items)-1].rec.Position.String()).Logger()
	pl.stats.Batches.Add(1)
	pl.stats.batchSize.observe(float64(len(items)))
	l.runBatch(r)
	return r
}

func (r *batchRun) run() {
	todo := r.all
	var err error
	if r.pl.marks != nil {
		todo, err = r.claim(r.all)
	}
	if err == nil && len(todo) > 0 {
		todo, err = r.rejectUnsendable(todo)
	}
	if err == nil && len(todo) > 0 {
		err = r.settle(todo, r.pl.cfg.Retry.MaxAttempts)
	}
	var abandoned []*item
	var abandonedWork []*work
	for _, w := range r.all {
		if !w.isDone() {
			abandoned = append(abandoned, w.item)
			abandonedWork = append(abandonedWork, w)
		}
	}
	if len(abandoned) > 0 && err == nil {
		r.log.Debug().Int("records", len(abandoned)).Msg("batch abandoned on stop; its records will be redelivered")
	}
	if len(abandoned) == 0 && err == nil {
		r.pl.stats.batchSeconds.observe(time.Since(r.started).Seconds())
	}
	r.release(abandonedWork)
	if r.parked {
		r.pl.stats.Parked.Add(-1)
	}
	c := completion{abandoned: abandoned, done: true, freeSlot: !r.parked, batch: r.id}
	switch {
	case errors.Is(err, errFenced):
		c.fenced = err
	case errors.Is(err, context.Canceled):
		// the lane stopped: abandoned, not failed
	default:
		c.fatal = err
	}
	r.lane.results <- c
}

// workSlab is the memory of a batch's work: the values and the pointers to
// them, one allocation each whatever the batch's size, reused by later
// batches instead of allocated and zeroed for each.
type workSlab struct {
	ws  []work
	all []*work
	// parts is the scratch of batchRun.encoded.
	parts [][]byte
}

var workSlabs sync.Pool // of *workSlab

func getWorkSlab(n int) *workSlab {
	if s, ok := workSlabs.Get().(*workSlab); ok && cap(s.ws) >= n {
		s.ws, s.all = s.ws[:n], s.all[:n]
		return s
	}
	return &workSlab{ws: make([]work, n), all: make([]*work, n)}
}

// recycle gives the batch's work back for reuse. The lane calls it when it
// has taken the batch's last completion: the batch's goroutine has ended,
// and the lane has dropped the batch from its live set, so nothing refers
// to r.all or its values any more.
func (r *batchRun) recycle() {
	s := r.slab
	if s == nil {
		return
	}
	// Its records' deliveries may be done with too: the records of a
	// delivery are in no queue and no other batch once every batch that
	// took one has ended (runs of one delivery are counted at once).
	var d *delivery
	n := 0
	for _, w := range r.all {
		if w.item.d != d {
			if d != nil {
				d.ended(n)
			}
			d, n = w.item.d, 0
		}
		n++
	}
	if d != nil {
		d.ended(n)
	}
	// Not cleared: startBatch overwrites each value it takes, and clearing
	// would cost write barriers on every pointer while the collector runs.
	r.slab, r.all = nil, nil
	workSlabs.Put(s)
}

// isDone reports whether w was reported complete to the lane. A work value
// is only touched by its batch's goroutine.
func (w *work) isDone() bool { return w.done }

// complete marks ws done in Redis (with idempotency on), then reports them
// complete to the lane. An error (the lane stopped, or the partition was
// fenced) means they were not reported.
func (r *batchRun) complete(ws []*work) error {
	if len(ws) == 0 {
		return nil
	}
	if err := r.markDone(ws); err != nil {
		return err
	}
	r.sendComplete(ws)
	return nil
}

// sendComplete reports ws complete to the lane. The lane only reads each
// work's item, which does not change while the batch runs; ws itself must
// not change after the call.
func (r *batchRun) sendComplete(ws []*work) {
	for _, w := range ws {
		w.done = true
	}
	r.lane.results <- completion{works: ws}
}

// park gives up the batch's concurrency slot in its lane while it retries
// a few records (ordering key or none): their keys stay held, so later
// records of those keys wait, while the lane goes on with other keys.
func (r *batchRun) park() {
	if r.parked || r.pl.cfg.Ordering == config.OrderingPartition {
		return
	}
	r.parked = true
	r.pl.stats.Parked.Add(1)
	r.lane.results <- completion{freeSlot: true}
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
		if retryN > 0 {
			r.retrying.Store(true)
			r.pl.stats.Retries.Add(int64(len(todo)))
			if !sleep(r.ctx, backoff(retryN, r.pl.cfg.Retry.InitialBackoff, r.pl.cfg.Retry.MaxBackoff)) {
				return nil
			}
		}
		retryN++
		res, before, err := r.call(todo)
		if r.ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if err != nil {
			class := plugins.ClassOf(err)
			ver, _ := handlerOf(err)
			for _, w := range todo {
				w.failed(now, class, err.Error(), plugins.IsRetryable(err), before)
				w.handler = ver
			}
			r.pl.stats.countHandlerError(class)
			if todo[0].attempts < maxAttempts && plugins.IsRetryable(err) {
				r.log.Warn().Err(err).Str("class", class.String()).Int("records", len(todo)).Func(logTraces(todo)).
					Int("attempt", todo[0].attempts).Msg("batch failed; retrying")
				continue
			}
			if len(todo) > 1 && r.pl.cfg.Retry.Bisect {
				mid := len(todo) / 2
				r.log.Warn().Err(err).Int("records", len(todo)).Func(logTraces(todo)).Msg("batch keeps failing; bisecting to isolate the poison records")
				// Halves have had their retries; each failure from here splits again.
				if err := r.settle(todo[:mid], todo[0].attempts); err != nil {
					return err
				}
				return r.settle(todo[mid:], todo[mid].attempts)
			}
			held, err := r.deadLetter(todo)
			if err != nil {
				return err
			}
			todo = held
			continue
		}
		next, err := r.outcome(todo, res, now, maxAttempts, before)
		if err != nil {
			return err
		}
		if len(next) > 0 && len(next) < len(todo) {
			r.park()
		}
		todo = next
	}
	return nil
}

// call sends todo to the handler as one batch, through the handler breaker:
// a call that times out, crashes the plugin, fails as a whole retryably, or
// has every record fail retryably counts against it; a record's own bad data
// does not. While the breaker is open, call waits.
//
// It also returns the pipeline's count of successful calls before this one.
func (r *batchRun) call(todo []*work) (*plugins.Result, int64, error) {
	attempt := 1
	for _, w := range todo {
		attempt = max(attempt, w.attempts+1)
	}
	b := &plugins.Batch{
		Pipeline: r.pl.cfg.Name, Stream: r.lane.part.Stream, Partition: r.lane.part.ID,
		Attempt: attempt,
	}
	enc, encoded := r.encoded(todo)
	if !encoded {
		recs := getRecords(len(todo))
		defer putRecords(recs)
		for i, w := range todo {
			recs[i] = *w.rec
		}
		b.Records = recs
	}
	var (
		res    *plugins.Result
		err    error
		before int64
	)
	ok := r.pl.handlerBreaker.do(r.ctx, func() error {
		before = r.pl.successes.Load()
		start := time.Now()
		if encoded {
			res, err = r.pl.encoded.HandleEncoded(r.ctx, b, enc)
		} else {
			res, err = r.pl.handler.Handle(r.ctx, b)
		}
		r.pl.stats.observeCall(time.Since(start))
		if err == nil {
			err = validateResult(res, len(todo))
		}
		sys := systemic(res, err, len(todo))
		if sys == nil {
			r.pl.successes.Add(1)
		}
		return sys
	})
	if !ok {
		return nil, before, r.ctx.Err()
	}
	if err != nil {
		return nil, before, fmt.Errorf("handling batch %d of %s: %w", r.id, r.lane.part, err)
	}
	return res, before, nil
}

// encoded returns todo's records in their wire form, if the pipeline's
// dispatcher takes them so and the lane encoded each of them as it came
// (delivery.encode): the parts are runs of records that follow each other
// in a delivery's wire buffer, one or a few for a batch under ordering
// partition. They are valid until the batch ends.
func (r *batchRun) encoded(todo []*work) (plugins.EncodedRecords, bool) {
	if r.pl.encoded == nil {
		return plugins.EncodedRecords{}, false
	}
	parts := r.slab.parts[:0]
	var d *delivery
	var start, end uint32
	for _, w := range todo {
		it := w.item
		if it.d.wire == nil {
			return plugins.EncodedRecords{}, false
		}
		if it.d == d && it.wireAt == end {
			end += it.wireLen
			continue
		}
		if d != nil {
			parts = append(parts, d.wire[start:end])
		}
		d, start, end = it.d, it.wireAt, it.wireAt+it.wireLen
	}
	if d != nil {
		parts = append(parts, d.wire[start:end])
	}
	// Not cleared afterwards: the slab's next batch overwrites what it
	// takes (see recycle).
	r.slab.parts = parts
	return plugins.EncodedRecords{Parts: parts, N: len(todo)}, true
}

// recordsPool recycles the record slices of handler calls (a Dispatcher
// keeps no batch after Handle returns): a batch of a thousand records would
// otherwise cost a fresh 150 KB allocation per call, zeroed, and garbage a
// moment later.
var recordsPool sync.Pool // of *[]record.Record

// getRecords returns a slice of n records from the pool.
func getRecords(n int) []record.Record {
	if p, ok := recordsPool.Get().(*[]record.Record); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]record.Record, n)
}

// putRecords gives recs back to the pool. Its records are not cleared (a
// slice of a thousand records is 150 KB of pointers, which clearing makes
// the garbage collector's write barriers visit): getRecords' callers
// overwrite every record they take, and what the stale ones point to is
// record memory the source pools and reuses anyway.
func putRecords(recs []record.Record) {
	recs = recs[:0]
	recordsPool.Put(&recs)
}

// errAllRetryable marks, for the breaker, a call in which every record
// failed retryably: the handler's dependency is down, not the data bad.
var errAllRetryable = errors.New("every record failed retryably")

// systemic says whether a handler call's outcome counts against the handler
// breaker (non-nil) or as a success (nil). n is the batch's record count.
func systemic(res *plugins.Result, err error, n int) error {
	if err != nil {
		if plugins.ClassOf(err) == plugins.ClassInvalidInput {
			return nil // the batch's data, not the handler
		}
		return err
	}
	if len(res.Failures) < n {
		return nil
	}
	failed := make(map[int]bool, len(res.Failures))
	for _, f := range res.Failures {
		if !f.Retryable {
			return nil // the handler works: it judged a record bad
		}
		failed[f.Index] = true
	}
	if len(failed) == n {
		return errAllRetryable
	}
	return nil
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
func (r *batchRun) outcome(todo []*work, res *plugins.Result, now time.Time, maxAttempts int, before int64) ([]*work, error) {
	if len(res.Failures) == 0 && len(res.Outputs) == 0 {
		// Every record succeeded, with nothing to write: the usual
		// outcome of a filter or a handler with side effects only.
		if err := r.complete(todo); err != nil {
			return nil, err
		}
		if r.pl.guard != nil {
			r.pl.guard.record(len(todo), 0)
		}
		return nil, nil
	}
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
	for i, f := range overLimits(res, len(todo), r.pl.cfg.Handler) {
		if st[i].fail == nil {
			st[i].fail = f
		}
	}
	// A record that will be tried again holds back the later records of its
	// key (they are tried again with it, after it), so a key's outputs keep
	// their order. A record dead-lettered now holds nothing back.
	retry := func(i int) bool {
		f := st[i].fail
		return f != nil && f.Retryable && todo[i].attempts+1 < maxAttempts
	}
	if len(res.Failures) > 0 || len(res.Outputs) > 0 {
		var retryingKeys map[string]struct{}
		for i, w := range todo {
			if _, ok := retryingKeys[string(w.rec.Key)]; ok && st[i].fail == nil {
				st[i].deferred = true
				continue
			}
			if retry(i) {
				if retryingKeys == nil {
					retryingKeys = map[string]struct{}{}
				}
				retryingKeys[string(w.rec.Key)] = struct{}{}
			}
		}
	}

	// outputs of the records that succeeded, per sink, in record order
	var perSink map[string][]record.Message
	if len(res.Outputs) > 0 {
		perSink = map[string][]record.Message{}
	}
	vt := newVersionTagger(res)
	for _, o := range res.Outputs {
		if st[o.Index].fail == nil && !st[o.Index].deferred {
			perSink[o.Sink] = append(perSink[o.Sink], vt.tag(withTrace(o.Message, todo[o.Index].rec)))
		}
	}
	for name, msgs := range perSink {
		if err := r.write(r.pl.sinks[name], r.pl.sinkBreakers[name], "sink "+name, msgs); err != nil {
			return nil, nil // stopped: abandon
		}
		r.pl.stats.Outputs.Add(int64(len(msgs)))
	}

	ok := make([]*work, 0, len(todo))
	var dead, next []*work
	for i, w := range todo {
		switch {
		case st[i].deferred:
			next = append(next, w)
		case st[i].fail == nil:
			ok = append(ok, w)
		default:
			f := st[i].fail
			w.failed(now, f.Class, f.Message, f.Retryable, before)
			w.handler = res.Handler
			r.pl.stats.countFailure(f.Class)
			if !f.Retryable || w.attempts >= maxAttempts {
				dead = append(dead, w)
			} else {
				next = append(next, w)
			}
		}
	}
	if err := r.complete(ok); err != nil {
		return nil, err
	}
	if r.pl.guard != nil {
		r.pl.guard.record(len(ok), 0)
	}
	held, err := r.deadLetter(dead)
	if err != nil {
		return nil, err
	}
	if len(held) > 0 {
		next = mergeInOrder(todo, next, held)
	}
	return next, nil
}

// mergeInOrder returns the members of a and b in the order they have in
// all (both are subsets of it).
func mergeInOrder(all, a, b []*work) []*work {
	in := make(map[*work]bool, len(a)+len(b))
	for _, w := range a {
		in[w] = true
	}
	for _, w := range b {
		in[w] = true
	}
	out := make([]*work, 0, len(in))
	for _, w := range all {
		if in[w] {
			out = append(out, w)
		}
	}
	return out
}

// deadLetter writes the records of ws that failed for good to the DLQ and
// reports them complete. It holds back (returns, to be retried) the records
// whose failure may pass on its own and that no other call has succeeded
// since: they met an outage, not their own bad data, and the DLQ is for
// poison records. Without a DLQ, a record that failed for good is a fatal
// error naming it; the DLQ guard is one too.
func (r *batchRun) deadLetter(ws []*work) (held []*work, err error) {
	if len(ws) == 0 {
		return nil, nil
	}
	var dead []*work
	for _, w := range ws {
		if w.retryable && r.pl.successes.Load() <= w.successesBefore {
			held = append(held, w)
			continue
		}
		dead = append(dead, w)
	}
	if len(held) > 0 {
		r.log.Warn().Int("records", len(held)).Str("class", held[0].class.String()).Str("error", held[0].msg).Func(logTraces(held)).
			Msg("records failed past retry.max_attempts but nothing has succeeded since: treating it as an outage, not dead-lettering; retrying")
	}
	if len(dead) == 0 {
		return held, nil
	}
	if r.pl.dlq == nil {
		w := dead[0]
		return nil, fmt.Errorf("pipeline %s: %s at %s: %s (%s): %w", r.pl.cfg.Name, r.lane.part, w.rec.Position, w.msg, w.class, ErrNoDLQ)
	}
	if err := r.pl.guard.check(len(dead)); err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", r.pl.cfg.Name, err)
	}
	msgs := make([]record.Message, len(dead))
	for i, w := range dead {
		origin := r.pl.origin(w.handler)
		msgs[i] = dlq.Envelope(w.rec, dlq.Failure{Message: w.msg, Class: w.class.String(), Attempts: w.attempts,
			FirstFailure: w.first, LastFailure: w.last}, origin)
		r.log.Debug().Str("position", w.rec.Position.String()).Str("class", w.class.String()).Func(logTraces([]*work{w})).
			Int("attempts", w.attempts).Str("error", w.msg).Msg("record dead-lettered")
	}
	if err := r.write(r.pl.dlq, r.pl.dlqBreaker, "dlq", msgs); err != nil {
		return nil, nil // stopped: abandon, nothing committed past these records
	}
	w := dead[0]
	r.log.Info().Int("records", len(dead)).Str("position", w.rec.Position.String()).Str("class", w.class.String()).Func(logTraces(dead)).
		Int("attempts", w.attempts).Str("error", w.msg).Msg("dead-lettered (first of them shown; debug level lists each)")
	r.pl.stats.DLQ.Add(int64(len(msgs)))
	r.pl.guard.record(0, len(dead))
	if err := r.complete(dead); err != nil {
		return nil, err
	}
	return held, nil
}

// write writes msgs to s through its breaker, retrying the messages that
// failed with backoff until all are written or the lane is stopped (then it
// returns ctx's error). A destination that is down therefore holds the
// batch, and with it the partition's commit, instead of losing records;
// once its breaker opens, the pipeline's partitions pause.
func (r *batchRun) write(s Sink, b *breaker, what string, msgs []record.Message) error {
	for n := 1; ; n++ {
		var err error
		if !b.do(r.ctx, func() error {
			err = s.Write(r.ctx, msgs)
			return err
		}) {
			return r.ctx.Err()
		}
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
