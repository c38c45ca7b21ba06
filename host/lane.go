package host

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// item is a record waiting in, or taken from, a lane's queue.
type item struct {
	// rec is in the slice the source delivered, which the host owns: the
	// record is not copied again on its way to the handler's encoder.
	rec  *record.Record
	seq  int64
	size int64 // rec.Size(): what counts against batch.max_bytes
	// wireAt and wireLen say where the record is in its delivery's wire
	// form (delivery.encode), if it has one.
	wireAt, wireLen uint32
	// unsendable is set for a record the handler protocol cannot carry
	// (see unsendable).
	unsendable bool
	// ks is the state of the record's key in its lane, under ordering key.
	ks *keyState
	// d is the delivery the record came in (see delivery.ended).
	d *delivery
}

// keyState is what a lane knows of one key under ordering key. Items point
// to it, so that forming a batch checks a key with a pointer, not a hash of
// the key per record scanned; the lane forgets a key once it has no record
// of it.
type keyState struct {
	key string
	// refs counts the lane's records of this key, queued or in flight.
	refs int
	// busy counts those in flight: later records of the key wait.
	busy int
	// blocked is the takeByKey pass that held this key back (see scans).
	blocked int64
}

// cost is what the item counts against the in-flight budget.
func (it *item) cost() int64 { return it.size + RecordOverhead }

// completion is what a batch worker tells its lane: these records are
// complete (handled, or dead-lettered), or the batch ended.
type completion struct {
	// works are the batch's records that became complete; the lane reads
	// only their items.
	works []*work
	// abandoned are records of the batch given up on a hard stop: not
	// complete, they will be redelivered to the partition's next owner.
	abandoned []*item
	// done is set on a batch's last message.
	done bool
	// freeSlot says the batch no longer occupies one of the lane's
	// concurrent batch slots: sent once per batch, when it ends or parks.
	freeSlot bool
	// fatal stops the pipeline: a record failed for good with no DLQ.
	fatal error
	// fenced says a newer owner fenced the partition: the lane must go,
	// committing nothing.
	fenced error
	// batch is the id of the batch, on its last message (done).
	batch int64
}

// lane owns one partition while it is claimed. Its goroutine (run) alone
// decides what to dispatch, so ordering needs no locks: it forms batches from
// the queue under the pipeline's ordering mode, starts a worker per batch (at
// most one under ordering partition, at most maxConcurrent otherwise), and
// folds their completions into the commit tracker.
type lane struct {
	pl   *pipeline
	part record.Partition
	gen  int64
	log  zerolog.Logger

	mu       sync.Mutex
	incoming []*item
	spare    []*item       // the other of incoming's two buffers
	wake     chan struct{} // capacity 1; a send means "look at incoming"
	// incomingToEnd is set when incoming's newest record is the
	// partition's last for now (deliveredToEnd), and cleared by the next
	// delivery.
	incomingToEnd bool

	// waiting and waitingBytes count the records delivered and not yet
	// dispatched (and their sizes); full is set, by the pipeline under its
	// mu, when they reached pauseRecords or pauseBytes and the partition
	// was paused for it (see pipeline.Deliver and laneDrained).
	waiting      atomic.Int64
	waitingBytes atomic.Int64
	full         atomic.Bool
	pauseRecords int64
	pauseBytes   int64

	// stop is closed to ask for a soft stop: no new batches, finish the
	// in-flight ones. Cancelling hardCtx abandons them.
	stop     chan struct{}
	stopOnce sync.Once
	hardCtx  context.Context
	hardStop context.CancelFunc
	done     chan struct{}
	// holds receives the exactly-once barrier's holds (see hold).
	holds chan hold
	// idle hands a batch to a batch goroutine waiting for one (see
	// runBatch).
	idle chan *batchRun

	// owned by run
	queue []*item
	// queueBuf is the array queue is a window of, from its start or
	// further on: taking batches moves the window's start, and the queue
	// moves back to the array's start rather than into a new one (see
	// makeRoom).
	queueBuf []*item
	// atEnd is set while the queue's newest record is the partition's last
	// for now, and lastFull when the last batch taken was full (not closed
	// by max_wait): together they close a batch at once (see take).
	atEnd, lastFull bool

	picked        []int   // takeByKey's scratch: indexes of the batch's records
	keyBatch      []*item // takeByKey's scratch: the batch
	tracker       *tracker
	keys          map[string]*keyState // under ordering key
	scans         int64                // takeByKey passes so far
	inflight      int                  // batches holding a concurrency slot
	workers       int                  // batch goroutines running, parked ones included
	maxConcurrent int
	batchN        int64
	maxDispatched int64 // seq of the newest record dispatched; -1 before any
	results       chan completion
	// live are the batches running, parked ones included, by id.
	live map[int64]*batchRun

	// lagReq asks run for a laneLag (see lag.go); the reply channel has
	// room for one.
	lagReq chan chan laneLag
	// lastOffset is the Kafka offset of the newest record taken in; -1
	// before any.
	lastOffset int64
}

func newLane(pl *pipeline, part record.Partition, gen int64) *lane {
	hardCtx, hardStop := context.WithCancel(context.Background())
	conc := 1
	if pl.cfg.Ordering != config.OrderingPartition {
		conc = pl.cfg.Handler.Instances
	}
	// A lane keeps several batches' worth of records waiting, so that it
	// does not run dry while its partition, resumed at half of that, waits
	// for the fetch in flight to return before it is fetched again; and no
	// more: records queued beyond that only add latency and memory (the
	// in-flight budget still bounds the pipeline as a whole). At 4 batches
	// the bench's noop row ran 10% slower than at 8, lanes waiting on
	// their resumes; at 16 it was no faster.
	batches := int64(max(8, 2*conc))
	return &lane{
		pauseRecords: batches * int64(pl.cfg.Batch.MaxRecords), pauseBytes: batches * pl.cfg.Batch.MaxBytes,
		pl: pl, part: part, gen: gen,
		log:  pl.log.With().Str("stream", part.Stream).Str("partition", part.ID).Logger(),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		hardCtx: hardCtx, hardStop: hardStop, holds: make(chan hold, 1), idle: make(chan *batchRun),
		tracker: newTracker(), keys: map[string]*keyState{},
		maxConcurrent: conc, results: make(chan completion, 2*conc), maxDispatched: -1,
		live: map[int64]*batchRun{}, lagReq: make(chan chan laneLag), lastOffset: -1,
	}
}

// RecordOverhead is what the host holds in memory per record besides its
// key, value and headers (record.Size): the record in its delivery (152
// bytes) and its lane item (56), the queue's pointers, its slot in the
// commit tracker (33, more while the ring is larger than the backlog), the
// part of a delivery (its records and their bytes) kept alive by its
// records not yet complete, and the Kafka client's decoded copy while a
// fetch waits to be delivered; measured with `weir loadtest memory` and
// rounded up. A record counts against max_inflight_bytes with its size plus
// this, so that the budget bounds memory for small records too: a 100-byte
// record costs the host several times its 100 bytes.
const RecordOverhead = 384

// deliver appends records to the lane. It is called by the source's
// goroutine and never blocks on processing. It returns what the records
// count against the in-flight budget, and whether the lane now has enough
// records waiting that its partition should pause.
func (l *lane) deliver(recs []record.Record, now time.Time) (int64, bool) {
	d := newDelivery(recs)
	d.arrived = now.UnixNano()
	var bytes, sizes int64
	encode := l.pl.encoded != nil
	wireSize := 0
	for i := range recs {
		r := &recs[i]
		it := &d.items[i]
		// The whole item: pooled items are not cleared (see ended).
		*it = item{rec: r, size: int64(r.Size()), d: d, unsendable: !sendable(r)}
		bytes += it.cost()
		sizes += it.size
		if encode {
			n := plugins.RecordWireSize(r)
			it.wireLen = uint32(n) // for encode; (a record is less than 4 GiB)
			wireSize += n
		}
	}
	if encode {
		d.encode(wireSize)
	}
	waiting := l.waiting.Add(int64(len(recs)))
	waitingBytes := l.waitingBytes.Add(sizes)
	l.mu.Lock()
	for i := range d.items {
		l.incoming = append(l.incoming, &d.items[i])
	}
	l.incomingToEnd = false
	l.mu.Unlock()
	l.poke()
	return bytes, waiting >= l.pauseRecords || waitingBytes >= l.pauseBytes
}

// deliveredToEnd notes that the newest record delivered is, for now, the
// partition's last.
func (l *lane) deliveredToEnd() {
	l.mu.Lock()
	l.incomingToEnd = true
	l.mu.Unlock()
	l.poke()
}

// poke wakes the lane's goroutine to look at its incoming records and
// whether it can resume.
func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// hold is the exactly-once barrier's hold on a lane: the lane finishes the
// batches it dispatched (and the records below them it skipped, under
// ordering key), starts nothing newer, closes idle once it has no batch in
// flight, and goes on as usual when release is closed.
type hold struct {
	idle    chan struct{}
	release <-chan struct{}
}

// holdLane hands h to the lane; false if the lane has ended.
func (l *lane) holdLane(h hold) bool {
	select {
	case l.holds <- h:
		return true
	case <-l.done:
		return false
	}
}

// requestStop asks the lane to stop taking new batches.
func (l *lane) requestStop() { l.stopOnce.Do(func() { close(l.stop) }) }

// drain stops the lane: soft first, hard when ctx is done. It returns when
// the lane's goroutine and all its workers have exited.
func (l *lane) drain(ctx context.Context) {
	l.requestStop()
	select {
	case <-l.done:
	case <-ctx.Done():
		l.log.Warn().Msg("in-flight batches did not finish before the shutdown deadline; abandoning them (they will be redelivered)")
		l.hardStop()
		<-l.done
	}
	l.hardStop()
}

// kill abandons everything at once (partition lost).
func (l *lane) kill() {
	l.requestStop()
	l.hardStop()
	<-l.done
}

func (l *lane) run() {
	defer close(l.done)
	if err := l.fence(); err != nil {
		l.abandonQueue()
		if errors.Is(err, errFenced) {
			l.pl.fenced(l, err)
		}
		return
	}
	stopping := false
	stopC := l.stop
	var timer *time.Timer
	var timerC <-chan time.Time
	var held *hold // the barrier holding this lane, if any
	var releaseC <-chan struct{}
	cut := int64(-1)
	for {
		l.takeIncoming()
		var wait time.Duration
		switch {
		case !stopping && held == nil:
			wait = l.dispatch(time.Now(), math.MaxInt64, false)
		case !stopping:
			// Held: finish what was dispatched, filling the gaps below
			// it, and start nothing past it.
			l.dispatch(time.Now(), cut, true)
			if l.workers == 0 && held.idle != nil {
				close(held.idle)
				held.idle = nil
			}
		case l.hardCtx.Err() == nil:
			// Soft stop: dispatch nothing new, but fill the gaps below
			// the newest record already dispatched. Under ordering key,
			// records of busy keys wait in the queue while later ones
			// run; abandoning them would hold the commit below records
			// that completed, and the next owner would repeat those.
			l.dispatch(time.Now(), l.maxDispatched, true)
		}
		if stopping && l.workers == 0 {
			l.abandonQueue()
			return
		}
		l.maybeResume()
		timerC = nil
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}
		select {
		case <-l.wake:
		case c := <-l.results:
			l.finish(c)
		case <-timerC:
		case reply := <-l.lagReq:
			l.takeIncoming()
			reply <- l.lag()
		case <-stopC:
			stopping, stopC = true, nil
		case h := <-l.holds:
			held, releaseC, cut = &h, h.release, l.maxDispatched
		case <-releaseC:
			held, releaseC = nil, nil
		}
		if timer != nil && timerC != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// fence raises the partition's generation in Redis to the lane's before
// anything is handled, so that the previous owner's marks and checkpoints
// are refused from now on. It returns errFenced if a newer owner got there
// first, or the stop's error.
func (l *lane) fence() error {
	if l.pl.marks == nil {
		return nil
	}
	r := &batchRun{pl: l.pl, lane: l, ctx: l.hardCtx, log: l.log}
	return r.redisCall("fence", func(ctx context.Context) error {
		return l.pl.marks.Fence(ctx, l.part, l.gen)
	})
}

func (l *lane) takeIncoming() {
	l.mu.Lock()
	in := l.incoming
	l.incoming, l.spare = l.spare, nil // swap buffers: deliver reuses the last one
	toEnd := l.incomingToEnd
	l.incomingToEnd = false
	l.mu.Unlock()
	if len(in) > 0 || toEnd {
		l.atEnd = toEnd
	}
	if len(in) == 0 {
		l.mu.Lock()
		l.spare = in
		l.mu.Unlock()
		return
	}
	byKey := l.pl.cfg.Ordering == config.OrderingKey
	l.makeRoom(len(in))
	for _, it := range in {
		it.seq = l.tracker.add(it.rec.Position, it.d.arrived)
		if byKey {
			ks := l.keys[string(it.rec.Key)]
			if ks == nil {
				ks = &keyState{key: string(it.rec.Key)}
				l.keys[ks.key] = ks
			}
			ks.refs++
			it.ks = ks
		}
		l.queue = append(l.queue, it)
	}
	l.lastOffset = in[len(in)-1].rec.Position.Offset
	clear(in)
	l.mu.Lock()
	if l.spare == nil {
		l.spare = in[:0]
	}
	l.mu.Unlock()
}

// makeRoom makes room for k more records at the end of the queue, moving
// the queue to the start of its array when the array has room for it, and
// to a new, larger, array otherwise.
func (l *lane) makeRoom(k int) {
	if cap(l.queue)-len(l.queue) >= k {
		return
	}
	n := len(l.queue)
	if cap(l.queueBuf) < n+k {
		buf := make([]*item, n, max(2*cap(l.queueBuf), n+k))
		copy(buf, l.queue)
		l.queueBuf, l.queue = buf, buf
		return
	}
	// The window starts at offset cap(queueBuf)-cap(queue) of the array
	// (a nil queue: past its end).
	start := cap(l.queueBuf) - cap(l.queue)
	copy(l.queueBuf[:n], l.queue)
	clear(l.queueBuf[n : start+n])
	l.queue = l.queueBuf[:n]
}

// abandonQueue gives back the budget of records that will not be handled
// by this lane (they will be redelivered to the partition's next owner).
func (l *lane) abandonQueue() {
	l.takeIncoming()
	var bytes int64
	for _, it := range l.queue {
		bytes += it.cost()
	}
	endDeliveries(l.queue)
	l.queue = nil
	l.pl.release(bytes)
}

// dispatch starts as many batches as the ordering mode allows, of records
// up to seq limit. It returns how long to wait before a partial batch
// becomes due (0: nothing to wait for); with force, a partial batch is due
// at once.
func (l *lane) dispatch(now time.Time, limit int64, force bool) time.Duration {
	for l.inflight < l.maxConcurrent && len(l.queue) > 0 {
		batch, wait := l.take(now, limit, force)
		if batch == nil {
			return wait
		}
		l.maxDispatched = max(l.maxDispatched, batch[len(batch)-1].seq)
		unsendable := l.dispatched(batch)
		l.inflight++
		l.workers++
		l.batchN++
		l.live[l.batchN] = l.pl.startBatch(l, l.batchN, batch, unsendable)
		clear(batch) // the batch has its own copy (see take)
	}
	return 0
}

// runBatch runs r on a goroutine of the lane's that ended its batch and
// waits for another, or on a new one. Those goroutines are the lane's: each
// waits for the next batch until the lane's goroutine has ended (which is
// only once every batch has), then exits. Their stacks, grown deep by the
// handler call (gRPC), serve batch after batch, instead of a new goroutine
// growing one again, in several copies, for each batch.
func (l *lane) runBatch(r *batchRun) {
	select {
	case l.idle <- r:
	default:
		go l.batchLoop(r)
	}
}

// batchLoop runs r, then the batches runBatch hands it, until the lane
// ends.
func (l *lane) batchLoop(r *batchRun) {
	for {
		r.run()
		select {
		case r = <-l.idle:
		case <-l.done:
			return
		}
	}
}

// dispatched takes batch's records off the lane's waiting counts, and
// returns how many of them the handler protocol cannot carry.
func (l *lane) dispatched(batch []*item) (unsendable int) {
	var sizes int64
	for _, it := range batch {
		sizes += it.size
		if it.unsendable {
			unsendable++
		}
	}
	l.waiting.Add(-int64(len(batch)))
	l.waitingBytes.Add(-sizes)
	return unsendable
}

// maybeResume resumes the lane's partition, paused for having enough
// records waiting, once they are down to half the pause mark. The lane's
// goroutine calls it each time round its loop: the pipeline pokes the lane
// after pausing it, so a lane that drained meanwhile still resumes.
func (l *lane) maybeResume() {
	if l.full.Load() && l.waiting.Load() <= l.pauseRecords/2 && l.waitingBytes.Load() <= l.pauseBytes/2 {
		l.pl.laneDrained(l)
	}
}

// take removes the next batch from the queue, or returns how long until one
// is due. The batch is valid until the lane takes incoming records. A batch
// closes at max_records or max_bytes, or when its oldest record has waited
// max_wait; or at once when it holds the rest of a backlog: the batch
// before it was full and the partition has nothing past its newest record
// (endOfBacklog).
func (l *lane) take(now time.Time, limit int64, force bool) ([]*item, time.Duration) {
	b := l.pl.cfg.Batch
	if l.pl.cfg.Ordering == config.OrderingKey {
		return l.takeByKey(now, limit, force)
	}
	n, bytes := 0, int64(0)
	for n < len(l.queue) && n < b.MaxRecords && l.queue[n].seq <= limit {
		if n > 0 && bytes+l.queue[n].size > b.MaxBytes {
			break
		}
		bytes += l.queue[n].size
		n++
	}
	if n == 0 {
		return nil, 0
	}
	full := force || n == b.MaxRecords || n < len(l.queue)
	if !full && !l.endOfBacklog(n == len(l.queue)) {
		if wait := time.Duration(l.queue[0].d.arrived + int64(b.MaxWait) - now.UnixNano()); wait > 0 {
			return nil, wait
		}
	}
	l.lastFull = full
	// The batch is the queue's first n records, in place: dispatch clears
	// them once the batch has taken them, so that the queue's array does
	// not keep them (and the deliveries they point into) reachable.
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = l.queueBuf[:0]
	}
	return batch, 0
}

// endOfBacklog says whether a batch that is not full may close before
// max_wait because it holds the rest of a backlog: the lane's last batch
// was full, whole says the batch takes every record the queue could give
// it, and the partition has nothing past the newest of them. max_wait is
// there to gather records arriving one by one into fewer calls; at the end
// of a backlog nothing more is arriving, and waiting would only hold the
// backlog's last records back, each time a lane catches up. Records that
// then trickle in wait as usual: the batch before them was not full.
func (l *lane) endOfBacklog(whole bool) bool {
	return whole && l.lastFull && l.atEnd
}

// keyScanLimit bounds how far past the head takeByKey looks for records of
// keys that are free; past it, records wait for the head to move.
func (l *lane) keyScanLimit() int { return 16 * l.pl.cfg.Batch.MaxRecords }

// takeByKey forms a batch of records whose keys have nothing in flight. A
// record of a busy key blocks every later record of that key, so each key's
// records leave the queue in order.
func (l *lane) takeByKey(now time.Time, limit int64, force bool) ([]*item, time.Duration) {
	b := l.pl.cfg.Batch
	picked := l.picked[:0]
	defer func() { l.picked = picked[:0] }()
	blocked := 0
	l.scans++
	bytes := int64(0)
	sizeFull := false
	scan := min(len(l.queue), l.keyScanLimit())
	var oldest int64
	for i := 0; i < scan && len(picked) < b.MaxRecords; i++ {
		it := l.queue[i]
		if it.seq > limit {
			break
		}
		ks := it.ks
		if ks.busy > 0 || ks.blocked == l.scans {
			continue
		}
		if len(picked) > 0 && bytes+it.size > b.MaxBytes {
			// keep later records of this key behind this one
			sizeFull = true
			ks.blocked = l.scans
			if blocked++; blocked > b.MaxRecords {
				break
			}
			continue
		}
		if len(picked) == 0 {
			oldest = it.d.arrived
		}
		picked = append(picked, i)
		bytes += it.size
	}
	if len(picked) == 0 {
		return nil, 0 // every key at the head is busy: a completion will wake us
	}
	full := force || len(picked) == b.MaxRecords || sizeFull
	if !full && !l.endOfBacklog(scan == len(l.queue)) {
		if wait := time.Duration(oldest + int64(b.MaxWait) - now.UnixNano()); wait > 0 {
			return nil, wait
		}
	}
	l.lastFull = full
	// The batch goes in the lane's scratch slice: dispatch clears it once
	// the batch has taken its records.
	batch := l.keyBatch[:0]
	rest := l.queue[:0]
	p := 0
	last := picked[len(picked)-1]
	for i, it := range l.queue[:last+1] {
		if p < len(picked) && picked[p] == i {
			batch = append(batch, it)
			it.ks.busy++
			p++
			continue
		}
		rest = append(rest, it)
	}
	rest = append(rest, l.queue[last+1:]...)
	clear(l.queue[len(rest):])
	l.queue = rest
	l.keyBatch = batch[:0]
	return batch, 0
}

// finish folds a worker's report into the tracker and the key set, and asks
// for a commit when the watermark moved.
func (l *lane) finish(c completion) {
	var bytes int64
	moved := false
	for _, it := range c.abandoned {
		bytes += it.cost()
	}
	l.pl.release(bytes)
	bytes = 0
	// Runs of consecutive records (a whole batch, under ordering
	// partition) are completed in the tracker at once.
	run, runN := int64(-1), 0
	for _, w := range c.works {
		it := w.item
		if runN > 0 && it.seq == run+int64(runN) {
			runN++
		} else {
			if runN > 0 && l.tracker.completeRun(run, runN) {
				moved = true
			}
			run, runN = it.seq, 1
		}
		bytes += it.cost()
		if ks := it.ks; ks != nil {
			ks.busy--
			if ks.refs--; ks.refs == 0 {
				delete(l.keys, ks.key)
			}
		}
	}
	if runN > 0 && l.tracker.completeRun(run, runN) {
		moved = true
	}
	l.tracker.trim(time.Now())
	l.pl.completed(len(c.works), bytes)
	if c.freeSlot {
		l.inflight--
	}
	if c.done {
		l.workers--
		if r := l.live[c.batch]; r != nil {
			delete(l.live, c.batch)
			r.recycle()
		}
	}
	if c.fatal != nil {
		l.pl.fail(c.fatal)
	}
	if c.fenced != nil {
		l.pl.fenced(l, c.fenced)
	}
	if moved {
		if pos, ok := l.tracker.watermark(); ok {
			l.pl.commits.request(l.part, pos)
		}
	}
}
