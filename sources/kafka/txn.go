package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/record"
)

// Exactly-once mode (Config.TransactionalID set).
//
// The source's group member is a franz-go GroupTransactSession: the pipeline's
// Kafka sinks produce through it (TxnProducer), and EndTransaction commits
// what they produced together with the input offsets the host completed,
// in one Kafka transaction. franz-go forbids polling or producing while a
// transaction ends; the source keeps its own poll loop out (it preempts a
// poll in progress), and the host keeps its lanes from producing (it quiesces
// them before it calls EndTransaction).
//
// A transaction that does not commit (the host asked for an abort, a
// rebalance happened since it began, the commit failed) is aborted: every
// record delivered since the last commit must be handled again. franz-go
// rewinds its fetch positions to the committed offsets; the source tells
// the lanes to drop what they hold (Rewinder) and delivers again from there.

// ErrTransactional is returned by Commit in exactly-once mode: progress is
// committed only by EndTransaction.
var ErrTransactional = errors.New("kafka source: exactly-once mode commits through EndTransaction")

// Rewinder is what the lanes of an exactly-once source must also do: drop
// everything delivered for parts (in-flight batches included) because it will
// be delivered again, from the last committed offset.
type Rewinder interface {
	Rewind(ctx context.Context, parts []record.Partition)
}

// txnState is the exactly-once machinery of a Source.
type txnState struct {
	sess *kgo.GroupTransactSession

	// mu is held by the poll loop for a poll and its delivery, and by
	// EndTransaction for the end and the next begin.
	mu sync.Mutex

	// pollMu guards ending and cancelPoll: an ending transaction cancels
	// the poll in progress and holds new ones back until it is done.
	pollMu     sync.Mutex
	pollCond   *sync.Cond
	ending     int
	cancelPoll context.CancelFunc
}

func newTxnState() *txnState {
	t := &txnState{}
	t.pollCond = sync.NewCond(&t.pollMu)
	return t
}

// pollOnce runs one poll and its delivery while no transaction is ending.
func (s *Source) pollOnce(ctx context.Context, poll func(context.Context)) {
	t := s.txn
	t.pollMu.Lock()
	for t.ending > 0 {
		t.pollCond.Wait()
	}
	pctx, cancel := context.WithCancel(ctx)
	t.cancelPoll = cancel
	t.pollMu.Unlock()
	defer cancel()

	t.mu.Lock()
	poll(pctx)
	t.mu.Unlock()

	t.pollMu.Lock()
	t.cancelPoll = nil
	t.pollMu.Unlock()
}

// TxnProducer returns the producer through which an exactly-once
// pipeline's Kafka sinks write, inside the current transaction. It fails
// every record produced before Run has begun the first transaction. It is
// nil when the source is not in exactly-once mode.
func (s *Source) TxnProducer() *TxnProducer {
	if s.txn == nil {
		return nil
	}
	return &TxnProducer{s: s}
}

// TxnProducer produces records inside the source's current transaction.
type TxnProducer struct{ s *Source }

// errNotRunning fails records produced while the source is not running.
var errNotRunning = errors.New("kafka source: exactly-once producer used before Run began a transaction")

// Produce implements the Kafka sink's Producer.
func (p *TxnProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	cl := p.s.cl.Load()
	if cl == nil {
		promise(r, errNotRunning)
		return
	}
	cl.Produce(ctx, r, promise)
}

// EndTransaction ends the current transaction and begins the next one.
// With commit, it commits the records produced through TxnProducer and, for
// each partition of positions, the offset after its position; it reports
// whether the transaction committed. Without commit, or when the commit is
// not possible (a rebalance began since the transaction did), it aborts:
// the lanes are rewound (Rewinder) before EndTransaction returns, and
// nothing delivered after the last commit counts. Partitions no longer
// owned are left out. An error is not retryable: the transactional
// producer is in a failed state and the pipeline must stop.
//
// The caller must make sure nothing is produced through TxnProducer while
// EndTransaction runs. It must not be called from inside a Lanes callback.
func (s *Source) EndTransaction(ctx context.Context, positions map[record.Partition]record.Position, commit bool) (committed bool, err error) {
	t := s.txn
	if t == nil {
		return false, errors.New("kafka source: EndTransaction: not in exactly-once mode")
	}
	t.pollMu.Lock()
	t.ending++
	if t.cancelPoll != nil {
		t.cancelPoll()
	}
	t.pollMu.Unlock()
	defer func() {
		t.pollMu.Lock()
		t.ending--
		t.pollCond.Broadcast()
		t.pollMu.Unlock()
	}()

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess == nil {
		return false, errNotRunning
	}
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	s.mu.Lock()
	for p, pos := range positions {
		st := s.parts[p]
		if st == nil || pos.Offset < 0 {
			continue
		}
		if offsets[p.Stream] == nil {
			offsets[p.Stream] = make(map[int32]kgo.EpochOffset)
		}
		offsets[p.Stream][p.KafkaID()] = kgo.EpochOffset{Epoch: st.epochAt(pos.Offset), Offset: pos.Offset + 1}
	}
	s.mu.Unlock()
	// Marks make sure the partitions are in the commit; the request is then
	// rewritten to hold exactly these offsets. franz-go's own idea of a
	// partition's uncommitted head can be past the host's (it moved with
	// what was polled, in a case we could not pin down), and committing it
	// would skip records whose outputs are not in this transaction.
	t.sess.Client().MarkCommitOffsets(offsets)
	ctx = kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
		keepTopics := req.Topics[:0]
		for _, rt := range req.Topics {
			keep := rt.Partitions[:0]
			for _, rp := range rt.Partitions {
				if eo, ok := offsets[rt.Topic][rp.Partition]; ok {
					rp.Offset, rp.LeaderEpoch = eo.Offset, eo.Epoch
					keep = append(keep, rp)
				}
			}
			if len(keep) > 0 {
				rt.Partitions = keep
				keepTopics = append(keepTopics, rt)
			}
		}
		req.Topics = keepTopics
		return nil
	})
	committed, err = t.sess.End(ctx, kgo.TransactionEndTry(commit))
	if err != nil {
		return false, fmt.Errorf("kafka source: ending the transaction of group %q: %w", s.cfg.Group, err)
	}
	if committed {
		s.mu.Lock()
		for p, pos := range positions {
			if st := s.parts[p]; st != nil {
				st.forgetEpochsBefore(pos.Offset)
			}
		}
		s.mu.Unlock()
	} else {
		s.rewind(ctx)
	}
	if err := t.sess.Begin(); err != nil {
		return committed, fmt.Errorf("kafka source: beginning a transaction for group %q: %w", s.cfg.Group, err)
	}
	return committed, nil
}

// rewind makes every owned partition accept records from anywhere again
// (franz-go now fetches from the committed offsets) and has the lanes drop
// what they hold.
func (s *Source) rewind(ctx context.Context) {
	s.mu.Lock()
	parts := make([]record.Partition, 0, len(s.parts))
	for p, st := range s.parts {
		st.next = -1
		st.epochs = nil
		parts = append(parts, p)
	}
	s.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	s.log.Warn().Stringers("partitions", partitionStringers(parts)).Msg("transaction aborted; partitions rewound to their last commit")
	s.callLanes(func() { s.lanes.(Rewinder).Rewind(ctx, parts) })
}

// runTxn is Run's loop in exactly-once mode.
func (s *Source) runTxn(ctx context.Context) error {
	if _, ok := s.lanes.(Rewinder); !ok {
		return errors.New("kafka source: exactly-once mode needs Lanes that implement Rewinder")
	}
	sess, err := kgo.NewGroupTransactSession(s.opts...)
	if err != nil {
		return fmt.Errorf("kafka source: create transactional client: %w", err)
	}
	if err := sess.Begin(); err != nil {
		sess.Close()
		return fmt.Errorf("kafka source: begin the first transaction: %w", err)
	}
	s.txn.mu.Lock()
	s.txn.sess = sess
	s.txn.mu.Unlock()
	s.cl.Store(sess.Client())
	s.running.Store(true)
	s.log.Info().Strs("topics", s.cfg.Topics).Str("transactional_id", s.cfg.TransactionalID).Msg("joining consumer group (exactly-once)")

	var fatal error
	for fatal == nil && ctx.Err() == nil {
		s.pollOnce(ctx, func(pctx context.Context) {
			fetches := sess.PollFetches(pctx)
			fatal = s.handleErrors(pctx, fetches)
			if fatal == nil {
				fetches.EachPartition(s.deliver)
			}
			sess.AllowRebalance()
		})
	}

	// Whatever the host did not commit is aborted; then leaving the group
	// revokes every partition (the lanes drop them, committing nothing).
	s.log.Info().Msg("leaving consumer group")
	s.running.Store(false)
	s.txn.mu.Lock()
	if _, err := sess.End(context.WithoutCancel(ctx), kgo.TryAbort); err != nil {
		s.log.Warn().Err(err).Msg("aborting the last transaction failed; the broker aborts it at its timeout")
	}
	s.txn.sess = nil
	s.txn.mu.Unlock()
	sess.Close()
	s.finish(ctx)
	if fatal != nil {
		return fmt.Errorf("kafka source: group %q: %w", s.cfg.Group, fatal)
	}
	return nil
}
