package host

import (
	"context"
	"errors"
	"time"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// Lag, and its split.
//
// The lag of a partition is the number of records between the first one
// this owner has not completed and the end of the partition's log: End
// minus Next. Next is the lane's oldest record not complete (or one past
// its watermark when every record it had is complete); before the lane has
// had a record, the group's committed offset. It differs from Kafka's
// consumer-group lag (End minus the committed offset) only by what
// completed since the last commit (commit_interval).
//
// Lag is split in two, and the two add up to it by construction:
//   - drainable: the work there is for workers, which more of them would
//     get through sooner: records not fetched yet (End minus the offset
//     after the last record delivered), plus records delivered and not
//     complete that are not waiting on a retry. None while any breaker of
//     the pipeline is open or half-open (every partition is paused, and
//     another process would meet the same broken dependency), nor while,
//     under ordering partition, the partition's one batch is retrying.
//   - blocked: the rest, lag minus drainable: records of retrying batches
//     (parked ones included), under ordering key the queued records of
//     their keys, and records already complete that wait for the commit to
//     get past an older record. More workers would not drain any of it.

// laneLag is a lane's own view of its partition, taken by its goroutine.
type laneLag struct {
	// seen: the lane has had records. next is then the offset of its
	// oldest record not complete, or one past its watermark, and
	// delivered the offset after its newest record.
	seen      bool
	next      int64
	delivered int64
	// incomplete counts the records delivered and not complete; held
	// those of them waiting on a retry. allHeld says the whole partition
	// waits on a retrying batch (ordering partition).
	incomplete int64
	held       int64
	allHeld    bool
	// oldest is when the oldest record not complete arrived; zero if none.
	oldest time.Time
}

// lag takes the lane's laneLag. Called by run only, after takeIncoming.
func (l *lane) lag() laneLag {
	ll := laneLag{incomplete: int64(l.tracker.incomplete())}
	if pos, at, ok := l.tracker.oldest(); ok {
		ll.seen, ll.next, ll.oldest = true, pos.Offset, time.Unix(0, at)
	} else if pos, ok := l.tracker.watermark(); ok {
		ll.seen, ll.next = true, pos.Offset+1
	}
	ll.delivered = l.lastOffset + 1
	byKey := l.pl.cfg.Ordering == config.OrderingKey
	var keys map[*keyState]struct{}
	for _, b := range l.live {
		if !b.retrying.Load() {
			continue
		}
		if l.pl.cfg.Ordering == config.OrderingPartition {
			ll.allHeld = true
			return ll
		}
		// b.all and each work's item are fixed when the batch starts; the
		// tracker, which says what completed, is the lane's own.
		for _, w := range b.all {
			if l.tracker.isComplete(w.seq) {
				continue
			}
			ll.held++
			if byKey {
				if keys == nil {
					keys = map[*keyState]struct{}{}
				}
				keys[w.ks] = struct{}{}
			}
		}
	}
	if len(keys) > 0 {
		for _, it := range l.queue {
			if _, ok := keys[it.ks]; ok {
				ll.held++
			}
		}
	}
	return ll
}

// requestLag asks the lane's goroutine for its laneLag; ok is false if the
// lane ended or ctx is done first.
func (l *lane) requestLag(ctx context.Context) (laneLag, bool) {
	reply := make(chan laneLag, 1)
	select {
	case l.lagReq <- reply:
	case <-l.done:
		return laneLag{}, false
	case <-ctx.Done():
		return laneLag{}, false
	}
	select {
	case ll := <-reply:
		return ll, true
	case <-ctx.Done():
		return laneLag{}, false
	}
}

// PartitionLag is the lag of one owned partition, as /status reports it
// and the weir_lag_* metrics export it.
type PartitionLag struct {
	// Known is false until the end of the partition's log and a starting
	// point are known (the first poll, or a source that cannot report
	// offsets); the counts are then 0.
	Known bool `json:"known"`
	// End is the offset of the next record to be written to the partition.
	End int64 `json:"end"`
	// Next is the first offset this owner has not completed.
	Next int64 `json:"next"`
	// Lag = End - Next = Drainable + Blocked.
	Lag       int64 `json:"lag"`
	Drainable int64 `json:"drainable"`
	Blocked   int64 `json:"blocked"`
	// BlockedBy says why Blocked is not 0: "breaker", "retrying batch"
	// (ordering partition), "retrying records", or "" (records complete
	// that wait for the commit).
	BlockedBy string `json:"blocked_by,omitempty"`
	// Oldest is when the oldest record delivered and not complete arrived;
	// zero if there is none.
	Oldest time.Time `json:"oldest_unfinished,omitzero"`
	// MillisBehind is, for a Kinesis shard, how far behind the shard's
	// newest record its reader was at BehindAt: MillisBehindLatest of its
	// latest GetRecords. Kinesis does not say how many records are behind,
	// so Known stays false for a shard and this is its lag. BehindAt is
	// zero when the source does not report it or has not read the shard
	// yet; a paused shard is not read, so BehindAt then stops moving.
	MillisBehind int64     `json:"millis_behind,omitempty"`
	BehindAt     time.Time `json:"millis_behind_at,omitzero"`
	// At is when this was measured.
	At time.Time `json:"at"`
}

// OldestAge is how long the oldest unfinished record has been in the host
// at now; 0 if there is none.
func (pl PartitionLag) OldestAge(now time.Time) time.Duration {
	if pl.Oldest.IsZero() || now.Before(pl.Oldest) {
		return 0
	}
	return now.Sub(pl.Oldest)
}

// splitLag computes a partition's lag from the source's offsets (have:
// known) and the lane's view, with breakerOpen saying whether a breaker of
// the pipeline is not closed. Drainable + Blocked == Lag by construction.
func splitLag(o sources.Offsets, have bool, ll laneLag, breakerOpen bool, now time.Time) PartitionLag {
	pl := PartitionLag{Oldest: ll.oldest, At: now}
	if !have || o.End < 0 {
		return pl
	}
	next, delivered := int64(-1), int64(-1)
	switch {
	case ll.seen:
		next, delivered = ll.next, ll.delivered
	case o.Committed >= 0:
		next, delivered = o.Committed, o.Committed
	case o.End == 0:
		next, delivered = 0, 0
	}
	if next < 0 {
		return pl
	}
	pl.Known, pl.End, pl.Next = true, o.End, next
	pl.Lag = max(o.End-next, 0)
	switch {
	case breakerOpen:
		pl.BlockedBy = "breaker"
	case ll.allHeld:
		pl.BlockedBy = "retrying batch"
	default:
		pl.Drainable = min(max(o.End-delivered, 0)+max(ll.incomplete-ll.held, 0), pl.Lag)
		if ll.held > 0 {
			pl.BlockedBy = "retrying records"
		}
	}
	pl.Blocked = pl.Lag - pl.Drainable
	if pl.Blocked == 0 {
		pl.BlockedBy = ""
	}
	return pl
}

// defaultLagInterval is how often lag is measured when the config does not
// say (admin.lag_interval).
const defaultLagInterval = 5 * time.Second

// pollLag measures every owned partition's lag now and every interval
// until ctx is done; while the source cannot be asked (not joined yet, the
// broker down) it asks again every second at most, so that readiness
// follows quickly. It owns no lane: it asks each for its view.
func (pl *pipeline) pollLag(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = defaultLagInterval
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pl.measureLag(ctx, interval)
		next := interval
		if pl.sourceErr() != nil {
			next = min(interval, time.Second)
		}
		t.Reset(next)
	}
}

// errNotMeasured is the source state before the first lag poll.
var errNotMeasured = errors.New("not checked yet")

func (pl *pipeline) measureLag(ctx context.Context, timeout time.Duration) {
	pl.mu.Lock()
	lanes := make(map[record.Partition]*lane, len(pl.lanes))
	parts := make([]record.Partition, 0, len(pl.lanes))
	for p, l := range pl.lanes {
		lanes[p] = l
		parts = append(parts, p)
	}
	pl.mu.Unlock()

	var offs map[record.Partition]sources.Offsets
	rep, isReporter := pl.src.(sources.OffsetReporter)
	if isReporter {
		octx, cancel := context.WithTimeout(ctx, max(timeout, 5*time.Second))
		var err error
		offs, err = rep.Offsets(octx, parts)
		cancel()
		if ctx.Err() != nil {
			return
		}
		pl.setSourceErr(err)
	}
	var tlags map[record.Partition]sources.TimeLag
	if tr, ok := pl.src.(sources.TimeLagReporter); ok {
		tlags = tr.TimeLags(parts)
	}
	breakerOpen := false
	for _, b := range pl.breakers() {
		if b.open() {
			breakerOpen = true
		}
	}
	now := time.Now()
	out := make(map[record.Partition]PartitionLag, len(lanes))
	lctx, cancel := context.WithTimeout(ctx, max(timeout, 5*time.Second))
	defer cancel()
	for p, l := range lanes {
		ll, ok := l.requestLag(lctx)
		if !ok {
			continue
		}
		o, have := offs[p]
		lag := splitLag(o, have, ll, breakerOpen, now)
		if t, ok := tlags[p]; ok {
			lag.MillisBehind, lag.BehindAt = t.Behind.Milliseconds(), t.At
		}
		out[p] = lag
	}
	pl.lagMu.Lock()
	pl.lag = out
	pl.lagMu.Unlock()
}

// setSourceErr records the outcome of the latest offsets poll, logging when
// it changes.
func (pl *pipeline) setSourceErr(err error) {
	pl.lagMu.Lock()
	was, before := pl.srcErr, pl.srcWasUp
	pl.srcErr = err
	if err == nil {
		pl.srcWasUp = true
	}
	pl.lagMu.Unlock()
	switch {
	case err != nil && was == nil:
		pl.log.Warn().Err(err).Msg("source not connected: asking the broker for offsets failed")
	case err == nil && was != nil && before:
		pl.log.Info().Msg("source connected again")
	}
}

// sourceErr is why the source is not connected (nil: it is, or it cannot
// tell).
func (pl *pipeline) sourceErr() error {
	pl.lagMu.Lock()
	defer pl.lagMu.Unlock()
	return pl.srcErr
}

// partitionLags returns the latest lag of each owned partition; partitions
// whose lane is gone are left out.
func (pl *pipeline) partitionLags() map[record.Partition]PartitionLag {
	pl.mu.Lock()
	owned := make(map[record.Partition]bool, len(pl.lanes))
	for p := range pl.lanes {
		owned[p] = true
	}
	pl.mu.Unlock()
	pl.lagMu.Lock()
	defer pl.lagMu.Unlock()
	out := make(map[record.Partition]PartitionLag, len(pl.lag))
	for p, l := range pl.lag {
		if owned[p] {
			out[p] = l
		}
	}
	return out
}
