package host

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/checkpoint"
	"github.com/weirhq/weir/record"
)

// Committer is what the host needs of a source to persist progress.
type Committer interface {
	Commit(ctx context.Context, positions map[record.Partition]record.Position) error
}

// committer coalesces the watermarks lanes report into few source commits.
// Lanes call request (cheap, never blocks on the network); one goroutine
// (loop) commits what is pending; release commits a revoked partition's final
// position synchronously and forgets it, after which nothing commits that
// partition again until it is owned anew.
type committer struct {
	src    Committer
	marks  Marks // nil: no checkpoint in Redis
	log    zerolog.Logger
	onDone func(map[record.Partition]record.Position) // test hook; may be nil
	// onFenced is told of a partition whose Redis checkpoint was refused
	// because a newer owner fenced it.
	onFenced func(record.Partition, error)

	commitMu sync.Mutex // held across a commit; serializes loop and release

	// Exactly-once only (txn set): see txn.go.
	txn           Transactor
	quiesce       func(within time.Duration) (release func(), idle bool)
	quiesceWithin time.Duration
	onTxnError    func(error)
	txnMu         sync.Mutex  // serializes transactions
	txnClosed     atomic.Bool // set under txnMu: no transaction after the last one
	finalDone     atomic.Bool // the last transaction committed (or had nothing to)
	tainted       atomic.Bool
	abortNext     atomic.Bool

	mu        sync.Mutex
	owned     map[record.Partition]int64 // generation of each owned partition
	pending   map[record.Partition]record.Position
	committed map[record.Partition]record.Position
	kick      chan struct{}
}

func newCommitter(src Committer, marks Marks, log zerolog.Logger) *committer {
	return &committer{
		src: src, marks: marks, log: log,
		owned: map[record.Partition]int64{}, pending: map[record.Partition]record.Position{},
		committed: map[record.Partition]record.Position{}, kick: make(chan struct{}, 1),
	}
}

// own starts accepting requests for p, owned at generation gen.
func (c *committer) own(p record.Partition, gen int64) {
	c.mu.Lock()
	c.owned[p] = gen
	delete(c.committed, p)
	c.mu.Unlock()
}

// request asks for p to be committed up to pos (inclusive).
func (c *committer) request(p record.Partition, pos record.Position) {
	c.mu.Lock()
	if _, ok := c.owned[p]; ok {
		c.pending[p] = pos
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// loop commits pending positions until ctx is done, then once more.
func (c *committer) loop(ctx context.Context, interval time.Duration) {
	for {
		select {
		case <-ctx.Done():
			if c.txn == nil {
				c.flush(context.Background())
			}
			return
		case <-c.kick:
		}
		if c.txn != nil {
			c.flushTxn(ctx, c.quiesceWithin, false)
		} else {
			c.flush(ctx)
		}
		// let requests pile up a little so one commit covers many batches
		sleep(ctx, interval)
	}
}

// flush commits everything pending for owned partitions.
func (c *committer) flush(ctx context.Context) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.commit(ctx, c.takePending())
}

// takePending returns and forgets the pending positions of owned
// partitions.
func (c *committer) takePending() map[record.Partition]record.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := make(map[record.Partition]record.Position, len(c.pending))
	for p, pos := range c.pending {
		if _, ok := c.owned[p]; ok {
			batch[p] = pos
		}
		delete(c.pending, p)
	}
	return batch
}

// commit sends batch; on failure it puts the positions back as pending
// (unless a newer one arrived meanwhile) so the next flush retries them.
func (c *committer) commit(ctx context.Context, batch map[record.Partition]record.Position) bool {
	if len(batch) == 0 {
		return true
	}
	batch = c.checkpoint(ctx, batch)
	if len(batch) == 0 {
		return false
	}
	err := c.src.Commit(ctx, batch)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.log.Warn().Err(err).Int("partitions", len(batch)).Msg("commit failed; will retry")
		for p, pos := range batch {
			if _, newer := c.pending[p]; !newer {
				if _, ok := c.owned[p]; ok {
					c.pending[p] = pos
				}
			}
		}
		return false
	}
	for p, pos := range batch {
		c.committed[p] = pos
	}
	if e := c.log.Debug(); e.Enabled() {
		d := zerolog.Dict()
		for p, pos := range batch {
			d = d.Str(p.String(), pos.String())
		}
		e.Dict("positions", d).Msg("committed")
	}
	if c.onDone != nil {
		c.onDone(batch)
	}
	return true
}

// checkpoint stores each position of batch in Redis, fenced by the
// partition's generation, before the source commit; it returns the
// positions that may go on to the source. A fenced partition is reported
// and left out; one that failed for another reason is kept pending.
func (c *committer) checkpoint(ctx context.Context, batch map[record.Partition]record.Position) map[record.Partition]record.Position {
	if c.marks == nil {
		return batch
	}
	out := make(map[record.Partition]record.Position, len(batch))
	for p, pos := range batch {
		c.mu.Lock()
		gen, owned := c.owned[p]
		c.mu.Unlock()
		if !owned {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.marks.Commit(cctx, p, gen, pos)
		cancel()
		switch {
		case err == nil:
			out[p] = pos
		case errors.Is(err, checkpoint.ErrFenced):
			c.log.Error().Err(err).Str("partition", p.String()).Msg("checkpoint refused: another owner has the partition")
			c.mu.Lock()
			delete(c.owned, p)
			delete(c.pending, p)
			c.mu.Unlock()
			if c.onFenced != nil {
				c.onFenced(p, err)
			}
		default:
			c.log.Warn().Err(err).Str("partition", p.String()).Msg("checkpoint to redis failed; will retry")
			c.mu.Lock()
			if _, newer := c.pending[p]; !newer {
				c.pending[p] = pos
			}
			c.mu.Unlock()
		}
	}
	return out
}

// release commits p's final position (if it moved past what was committed)
// and stops committing p. It returns when no commit of p is in flight.
func (c *committer) release(ctx context.Context, p record.Partition, final record.Position, ok bool) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	delete(c.pending, p)
	last, had := c.committed[p]
	c.mu.Unlock()
	if ok && (!had || last != final) {
		for attempt := 1; attempt <= 3; attempt++ {
			if c.commit(ctx, map[record.Partition]record.Position{p: final}) {
				break
			}
			if !sleep(ctx, backoff(attempt, 100*time.Millisecond, time.Second)) {
				break
			}
		}
	}
	c.mu.Lock()
	delete(c.owned, p)
	delete(c.pending, p)
	delete(c.committed, p)
	c.mu.Unlock()
}

// drop forgets p without committing (partition lost).
func (c *committer) drop(p record.Partition) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	delete(c.owned, p)
	delete(c.pending, p)
	delete(c.committed, p)
	c.mu.Unlock()
}
