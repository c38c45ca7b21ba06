package kinesis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources/kinesis/lease"
)

// Backoff of a shard reader after an error: throttling starts at the call
// gap, other errors a little higher; both are capped.
const (
	throttleBase = minCallGap
	errorBase    = 500 * time.Millisecond
	backoffMax   = 10 * time.Second
	// iteratorTimeout bounds one GetShardIterator call.
	iteratorTimeout = 10 * time.Second
)

// read is a shard's GetRecords loop; it returns when ctx is done or the
// shard's end was reached. It keeps to the per-shard limits: at most one
// call every 200ms, and after a response of B bytes no call before B/2MB
// seconds have passed since the last one began. It waits PollInterval
// after a call that returned nothing. Throttling and other errors are
// retried after a jittered exponential backoff; an expired iterator is
// replaced by one at the last record delivered (or the checkpoint).
func (s *Source) read(ctx context.Context, sh *shard) {
	defer close(sh.done)
	iter, ok := sh.first, true
	if iter == nil {
		if iter, ok = s.iterator(ctx, sh); !ok {
			return
		}
	}
	limit := s.cfg.MaxRecordsPerCall
	var next time.Time
	fails := 0
	for {
		if !s.waitResumed(ctx, sh) || !sleepCtx(ctx, time.Until(next)) {
			return
		}
		began := time.Now()
		out, err := s.cfg.API.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(limit)})
		next = began.Add(minCallGap)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			switch {
			case IsThrottled(err):
				s.throttled.Add(1)
				d := jitter(fails, throttleBase, backoffMax)
				sh.log.Debug().Err(err).Dur("backoff", d).Msg("GetRecords throttled; backing off")
				next = maxTime(next, time.Now().Add(d))
			case isExpiredIterator(err):
				sh.log.Info().Msg("shard iterator expired; getting a new one at the last record delivered")
				if iter, ok = s.iterator(ctx, sh); !ok {
					return
				}
			default:
				d := jitter(fails, errorBase, backoffMax)
				sh.log.Warn().Err(err).Dur("backoff", d).Msg("GetRecords failed; retrying")
				next = maxTime(next, time.Now().Add(d))
			}
			continue
		}
		fails = 0
		s.mu.Lock()
		sh.behind, sh.behindAt = time.Duration(aws.ToInt64(out.MillisBehindLatest))*time.Millisecond, time.Now()
		s.mu.Unlock()
		bytes := 0
		for i := range out.Records {
			bytes += len(out.Records[i].Data)
		}
		if gap := time.Duration(float64(bytes) / maxBytesPerSec * float64(time.Second)); gap > minCallGap {
			next = began.Add(gap)
		}
		if !s.deliver(ctx, sh, out.Records) {
			return
		}
		if out.NextShardIterator == nil {
			s.mu.Lock()
			sh.atEnd = true
			s.mu.Unlock()
			sh.log.Info().Msg("reached the end of the shard (it was split or merged)")
			select {
			case s.wake <- struct{}{}:
			default:
			}
			return
		}
		iter = out.NextShardIterator
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			next = maxTime(next, began.Add(s.cfg.PollInterval))
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitResumed blocks while the shard is paused; false when ctx is done.
func (s *Source) waitResumed(ctx context.Context, sh *shard) bool {
	for {
		s.mu.Lock()
		paused, ch := sh.paused, sh.resumed
		s.mu.Unlock()
		if !paused {
			return ctx.Err() == nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

// iterator gets a shard iterator at the record after the last one
// delivered under this lease, else after the lease's checkpoint, else at
// the lease's start. It retries until it succeeds or ctx is done.
func (s *Source) iterator(ctx context.Context, sh *shard) (*string, bool) {
	for n := 1; ; n++ {
		it, err := s.iteratorOnce(ctx, sh)
		if err == nil {
			return it, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		base := errorBase
		if IsThrottled(err) {
			base = throttleBase
		}
		d := jitter(n, base, backoffMax)
		sh.log.Warn().Err(err).Dur("backoff", d).Msg("GetShardIterator failed; retrying")
		if !sleepCtx(ctx, d) {
			return nil, false
		}
	}
}

// iteratorOnce makes one GetShardIterator call for iterator.
func (s *Source) iteratorOnce(ctx context.Context, sh *shard) (*string, error) {
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(sh.id)}
	if s.cfg.StreamARN != "" {
		in.StreamARN = aws.String(s.cfg.StreamARN)
	} else {
		in.StreamName = aws.String(s.cfg.Stream)
	}
	s.mu.Lock()
	from, latest := sh.resume, sh.latest
	if sh.delivered {
		from = lease.Checkpoint{Seq: sh.last.Seq, Sub: sh.last.Offset}
	}
	s.mu.Unlock()
	switch {
	case from.Seq != "":
		// AT, not AFTER: the rest of a KPL aggregate may still be due;
		// what was delivered or checkpointed is skipped by deliver.
		in.ShardIteratorType = types.ShardIteratorTypeAtSequenceNumber
		in.StartingSequenceNumber = aws.String(from.Seq)
	case latest:
		// Only the first iterator: a later one (after an expired
		// iterator, with nothing delivered) starts at the lease's time,
		// so nothing written since the first is skipped.
		in.ShardIteratorType = types.ShardIteratorTypeLatest
	case strings.HasPrefix(sh.start, "at:"):
		ms, _ := strconv.ParseInt(strings.TrimPrefix(sh.start, "at:"), 10, 64)
		t := time.UnixMilli(ms)
		if now := time.Now(); t.After(now) {
			t = now // Kinesis refuses a time in its future
		}
		in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(t)
	default:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	}
	// kinesalite never answers AT_TIMESTAMP on a shard with nothing at or
	// after the time yet; the caller asks again rather than wait forever.
	cctx, cancel := context.WithTimeout(ctx, iteratorTimeout)
	defer cancel()
	out, err := s.cfg.API.GetShardIterator(cctx, in)
	if err != nil {
		return nil, fmt.Errorf("GetShardIterator %s of %s: %w", in.ShardIteratorType, sh.id, err)
	}
	if latest {
		s.mu.Lock()
		sh.latest = false
		s.mu.Unlock()
	}
	return out.ShardIterator, nil
}

// deliver converts a response's records (deaggregating KPL aggregates,
// skipping what was already delivered or checkpointed) and hands them to
// the shard's lane. It returns false, delivering nothing, once ctx is done
// (the shard is being given up).
func (s *Source) deliver(ctx context.Context, sh *shard, in []types.Record) bool {
	if len(in) == 0 {
		return ctx.Err() == nil
	}
	s.mu.Lock()
	skip, has := sh.resume, sh.resume.Seq != ""
	if sh.delivered {
		skip, has = lease.Checkpoint{Seq: sh.last.Seq, Sub: sh.last.Offset}, true
	}
	s.mu.Unlock()
	recs := make([]record.Record, 0, len(in))
	for i := range in {
		r := &in[i]
		seq := aws.ToString(r.SequenceNumber)
		ts := aws.ToTime(r.ApproximateArrivalTimestamp)
		users, err := deaggregate(r.Data)
		if err != nil {
			if !errors.Is(err, errNotAggregate) {
				// Damaged: hand it on as it is, so the handler (or the
				// DLQ) sees it; skipping it would lose it silently.
				sh.log.Warn().Err(err).Str("sequence", seq).Msg("record looks KPL-aggregated but does not parse; delivering it as one record")
			}
			pos := record.Position{Seq: seq}
			if has && !after(pos, skip) {
				continue
			}
			recs = append(recs, convert(sh.part, pos, []byte(aws.ToString(r.PartitionKey)), r.Data, ts))
			continue
		}
		for j, u := range users {
			pos := record.Position{Seq: seq, Offset: int64(j)}
			if has && !after(pos, skip) {
				continue
			}
			recs = append(recs, convert(sh.part, pos, []byte(u.PartitionKey), u.Data, ts))
		}
	}
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	if len(recs) > 0 {
		s.mu.Lock()
		sh.last, sh.delivered = recs[len(recs)-1].Position, true
		s.mu.Unlock()
		s.lanes.Deliver(sh.part, recs)
	}
	return true
}

// convert makes a record of one user record, copying key and value into
// one allocation of their own, so that a record held by a lane does not
// pin a whole response.
func convert(p record.Partition, pos record.Position, key, value []byte, ts time.Time) record.Record {
	buf := make([]byte, 0, len(key)+len(value))
	buf = append(buf, key...)
	buf = append(buf, value...)
	return record.Record{
		Key: buf[:len(key):len(key)], Value: buf[len(key):],
		Timestamp: ts, Partition: p, Position: pos,
	}
}

// after reports whether position p comes after checkpoint c in a shard.
func after(p record.Position, c lease.Checkpoint) bool {
	if d := compareSeq(p.Seq, c.Seq); d != 0 {
		return d > 0
	}
	return p.Offset > c.Sub
}

// compareSeq orders two decimal sequence numbers (longer than any integer
// type): by length, then digit by digit.
func compareSeq(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
