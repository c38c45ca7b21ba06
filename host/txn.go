package host

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/record"
)

// Transactor is what delivery: exactly_once needs of the source: ending the
// transaction that holds the outputs written since the last one, with the
// input positions they came from (see kafka.Source.EndTransaction).
type Transactor interface {
	EndTransaction(ctx context.Context, positions map[record.Partition]record.Position, commit bool) (committed bool, err error)
}

// taintingSink reports a failed write to the committer: a record the broker
// refused leaves the Kafka transaction unable to commit, so the next one
// aborts and every record since the last commit is handled again.
type taintingSink struct {
	Sink
	c *committer
}

func (s taintingSink) Write(ctx context.Context, msgs []record.Message) error {
	err := s.Sink.Write(ctx, msgs)
	if err != nil {
		s.c.tainted.Store(true)
	}
	return err
}

// abortSoon asks for the open transaction to end (aborted) at the next
// flush, even with nothing to commit.
func (c *committer) abortSoon() {
	c.abortNext.Store(true)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flushTxn is flush under exactly-once: it holds every lane at a barrier
// (their in-flight batches finish; nothing new starts), so that the
// transaction holds exactly the outputs of the records up to the positions
// it commits, then ends the transaction and lets the lanes go on. A
// transaction is aborted instead when a lane did not reach the barrier in
// time, a write in it failed, or a partition was revoked since it began;
// the source then rewinds the lanes. With final, the lanes stay held: the
// pipeline is shutting down.
func (c *committer) flushTxn(ctx context.Context, within time.Duration, final bool) {
	c.txnMu.Lock()
	defer c.txnMu.Unlock()
	if c.txnClosed.Load() {
		return
	}
	release, idle := c.quiesce(within)
	if final {
		c.txnClosed.Store(true)
	} else {
		defer release()
	}
	batch := c.takePending()
	abort := c.abortNext.Swap(false)
	tainted := c.tainted.Swap(false)
	if len(batch) == 0 && !abort && !tainted && idle {
		c.finalDone.Store(final)
		return
	}
	commit := idle && !abort && !tainted
	if tainted {
		c.log.Warn().Msg("a write in the transaction failed; aborting it (its records are handled again)")
	}
	committed, err := c.txn.EndTransaction(ctx, batch, commit)
	if err != nil {
		c.onTxnError(err)
		return
	}
	if !committed {
		return // the lanes were rewound; their pending positions are gone
	}
	c.mu.Lock()
	for p, pos := range batch {
		c.committed[p] = pos
	}
	c.mu.Unlock()
	c.finalDone.Store(final)
	if e := c.log.Debug(); e.Enabled() {
		d := zerolog.Dict()
		for p, pos := range batch {
			d = d.Str(p.String(), pos.String())
		}
		e.Dict("positions", d).Msg("transaction committed")
	}
	if c.onDone != nil && len(batch) > 0 {
		c.onDone(batch)
	}
}

// txnEnded reports whether the last transaction (finalTxn) committed, or
// had nothing to commit. It does not wait for a transaction in progress
// (it is called from the source's revoke callback, which an ending
// transaction may be waiting on).
func (c *committer) txnEnded() bool {
	return c.finalDone.Load()
}

// finalTxn commits the lanes' completed work on shutdown, waiting up to
// within for in-flight batches, and leaves the lanes held.
func (c *committer) finalTxn(within time.Duration) {
	c.flushTxn(context.Background(), within, true)
}
