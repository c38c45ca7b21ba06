package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirhq/weir/host/checkpoint"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// Marks is what the host needs of the idempotency and checkpoint store
// (host/checkpoint.Store): keys for records, claims before dispatch, done
// marks after the outcome, and fenced checkpoints. Every write carries the
// lane's generation and fails with checkpoint.ErrFenced once a newer owner
// has fenced the partition.
//
// In position mode the host claims and marks positions (ClaimPositions,
// MarkPositionsDone) instead of keys, so that the store can send and keep
// runs of consecutive records rather than every record's position.
type Marks interface {
	Mode() checkpoint.Mode
	KeyOf(r *record.Record) (checkpoint.Key, error)
	Claim(ctx context.Context, part record.Partition, gen int64, keys []checkpoint.Key) (checkpoint.Claims, error)
	MarkDone(ctx context.Context, part record.Partition, gen int64, keys []checkpoint.Key) error
	ClaimPositions(ctx context.Context, part record.Partition, gen int64, ps checkpoint.Positions) (checkpoint.Claims, error)
	MarkPositionsDone(ctx context.Context, part record.Partition, gen int64, ps checkpoint.Positions) error
	Release(ctx context.Context, part record.Partition, gen int64, keys []checkpoint.Key) error
	Commit(ctx context.Context, part record.Partition, gen int64, pos record.Position) error
	Fence(ctx context.Context, part record.Partition, gen int64) error
}

// errFenced stops a lane whose partition another owner has fenced: nothing
// more of it is handled, marked or committed here.
var errFenced = errors.New("partition fenced by a newer owner")

// redisSystemic says whether a store call's error counts against the Redis
// breaker: an unreachable or failing Redis does; a fence does not (Redis
// answered, and said no).
func redisSystemic(err error) error {
	if err == nil || errors.Is(err, checkpoint.ErrFenced) {
		return nil
	}
	return err
}

// redisCall runs fn through the Redis breaker, retrying with backoff while
// it fails, until it succeeds, is fenced, or the lane stops. Nothing is
// handled, marked or committed without Redis: a Redis that is down holds
// the batch, and its breaker pauses the partitions.
func (r *batchRun) redisCall(what string, fn func(ctx context.Context) error) error {
	for n := 1; ; n++ {
		var err error
		if !r.pl.redisBreaker.do(r.ctx, func() error {
			ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
			defer cancel()
			err = fn(ctx)
			return redisSystemic(err)
		}) {
			return r.ctx.Err()
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, checkpoint.ErrFenced):
			return fmt.Errorf("%s: %w: %w", what, errFenced, err)
		case r.ctx.Err() != nil:
			return r.ctx.Err()
		}
		d := backoff(n, r.pl.cfg.Retry.InitialBackoff, r.pl.cfg.Retry.MaxBackoff)
		r.log.Warn().Err(err).Str("redis", what).Dur("backoff", d).Msg("redis call failed; retrying")
		if !sleep(r.ctx, d) {
			return r.ctx.Err()
		}
	}
}

// claim gets the batch's idempotency keys and claims them before anything
// is dispatched. It returns the records to handle, in order. Records
// already done (duplicates: redelivered after a crash, or resent by their
// producer) are reported complete without being handled; a record whose
// key cannot be made (the template's field is missing) is dead-lettered as
// bad input; a key that another owner holds (template mode) is asked for
// again until it is claimed or done.
func (r *batchRun) claim(all []*work) ([]*work, error) {
	m := r.pl.marks
	if m.Mode() == checkpoint.ModePosition {
		return r.claimPositions(all)
	}
	var bad, pending []*work
	for _, w := range all {
		k, err := m.KeyOf(w.rec)
		if err != nil {
			w.failed(time.Now(), plugins.ClassInvalidInput, "idempotency key: "+err.Error(), false, 0)
			bad = append(bad, w)
			continue
		}
		w.key, w.hasKey = k, true
		pending = append(pending, w)
	}
	if _, err := r.deadLetter(bad); err != nil {
		return nil, err
	}
	// claimed is in batch order unless a record was busy and claimed in a
	// later round: only then is the order restored (a map per batch costs
	// more than the rest of the loop).
	var claimed []*work
	reordered := false
	for n := 1; len(pending) > 0; n++ {
		keys := keysOf(pending)
		var cl checkpoint.Claims
		err := r.redisCall("claim", func(ctx context.Context) error {
			var err error
			cl, err = m.Claim(ctx, r.lane.part, r.lane.gen, keys)
			return err
		})
		if err != nil {
			return nil, err
		}
		var busy, dup []*work
		for i, w := range pending {
			switch cl.Status[i] {
			case checkpoint.Done:
				dup = append(dup, w)
			case checkpoint.Busy:
				busy = append(busy, w)
			default:
				claimed = append(claimed, w)
			}
		}
		r.dropDuplicates(dup)
		pending = busy
		if len(busy) > 0 {
			reordered = true
			d := backoff(n, r.pl.cfg.Retry.InitialBackoff, r.pl.cfg.Retry.MaxBackoff)
			r.log.Debug().Int("records", len(busy)).Dur("backoff", d).Msg("idempotency keys held by another owner; asking again")
			if !sleep(r.ctx, d) {
				return nil, nil
			}
		}
	}
	if !reordered {
		return claimed, nil
	}
	in := make(map[*work]bool, len(claimed))
	for _, w := range claimed {
		in[w] = true
	}
	todo := make([]*work, 0, len(claimed))
	for _, w := range all {
		if in[w] {
			todo = append(todo, w)
		}
	}
	return todo, nil
}

// dropDuplicates reports records already done complete without handling
// them or marking them again.
func (r *batchRun) dropDuplicates(dup []*work) {
	if len(dup) == 0 {
		return
	}
	r.pl.stats.Duplicates.Add(int64(len(dup)))
	r.log.Info().Int("records", len(dup)).Str("first", dup[0].rec.Position.String()).
		Msg("dropped records already handled (redelivered, or sent twice by their producer)")
	r.sendComplete(dup)
}

// claimPositions is claim in position mode: one ClaimPositions call with
// the batch's positions (no key per record; the store sends runs of
// records that arrived one after another), and no record is ever busy.
//
// Could the host skip this call for records above every position marked
// when it fenced the partition? For finding duplicates, yes: the fence
// script is atomic, so once Fence returned no older owner's mark lands,
// and a newer owner's marks come with a newer fence. But the call is also
// the lane's last check of the fence before it hands records to the
// handler: without it, an owner that was fenced while idle (a zombie)
// would handle its next batch, writing outputs the new owner writes too,
// before its MarkDone is refused (TestFencedOwnerCannotMoveItsCheckpoint
// requires that it does not); and with Redis down, a batch per lane would
// be handled before the breaker paused it, its marks waiting. The call
// costs one round trip of a few hundred bytes and a few comparisons in
// Redis per batch, so the host keeps it.
func (r *batchRun) claimPositions(all []*work) ([]*work, error) {
	var bad []*work
	for _, w := range all {
		if err := checkpoint.CheckPosition(w.rec.Position); err != nil {
			w.failed(time.Now(), plugins.ClassInvalidInput, "idempotency key: "+err.Error(), false, 0)
			bad = append(bad, w)
			continue
		}
		w.hasKey = true
	}
	pending := all
	if len(bad) > 0 {
		if _, err := r.deadLetter(bad); err != nil {
			return nil, err
		}
		pending = keyed(all)
		if len(pending) == 0 {
			return nil, nil
		}
	}
	var cl checkpoint.Claims
	err := r.redisCall("claim", func(ctx context.Context) error {
		var err error
		cl, err = r.pl.marks.ClaimPositions(ctx, r.lane.part, r.lane.gen, workPositions(pending))
		return err
	})
	if err != nil {
		return nil, err
	}
	if cl.Done == 0 {
		return pending, nil
	}
	todo := make([]*work, 0, cl.Claimed)
	var dup []*work
	for i, w := range pending {
		if cl.Status[i] == checkpoint.Done {
			dup = append(dup, w)
		} else {
			todo = append(todo, w)
		}
	}
	r.dropDuplicates(dup)
	return todo, nil
}

// workPositions are a batch's records as checkpoint.Positions: two records
// arrived one right after the other when the lane numbered them so (seq),
// which lets the store keep them in one run.
type workPositions []*work

func (ws workPositions) Len() int { return len(ws) }

func (ws workPositions) At(i int) (record.Position, bool) {
	return ws[i].rec.Position, i > 0 && ws[i].seq == ws[i-1].seq+1
}

// keyed returns the records of ws that have an idempotency key: ws itself
// when all have (no copy).
func keyed(ws []*work) []*work {
	for i, w := range ws {
		if !w.hasKey {
			out := append(make([]*work, 0, len(ws)), ws[:i]...)
			for _, w := range ws[i+1:] {
				if w.hasKey {
					out = append(out, w)
				}
			}
			return out
		}
	}
	return ws
}

func keysOf(ws []*work) []checkpoint.Key {
	keys := make([]checkpoint.Key, 0, len(ws))
	for _, w := range ws {
		if w.hasKey {
			keys = append(keys, w.key)
		}
	}
	return keys
}

// markDone marks ws done in Redis before they count as complete: the
// commit never passes a record that is not marked, so a record handled
// before a crash is dropped when it is redelivered.
func (r *batchRun) markDone(ws []*work) error {
	if r.pl.marks == nil {
		return nil
	}
	if r.pl.marks.Mode() == checkpoint.ModePosition {
		ps := keyed(ws) // a record dead-lettered for a bad position has no mark
		if len(ps) == 0 {
			return nil
		}
		return r.redisCall("mark done", func(ctx context.Context) error {
			return r.pl.marks.MarkPositionsDone(ctx, r.lane.part, r.lane.gen, workPositions(ps))
		})
	}
	keys := keysOf(ws)
	if len(keys) == 0 {
		return nil
	}
	return r.redisCall("mark done", func(ctx context.Context) error {
		return r.pl.marks.MarkDone(ctx, r.lane.part, r.lane.gen, keys)
	})
}

// release gives up the claims of records abandoned on a stop, so the
// partition's next owner can claim them at once. Best effort: an unreleased
// claim expires after idempotency.claim_ttl.
func (r *batchRun) release(ws []*work) {
	if r.pl.marks == nil || len(ws) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.pl.marks.Release(ctx, r.lane.part, r.lane.gen, keysOf(ws)); err != nil {
		r.log.Debug().Err(err).Msg("releasing the claims of abandoned records failed; they expire after claim_ttl")
	}
}
