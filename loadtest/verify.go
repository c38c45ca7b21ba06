// Package loadtest generates records into a topic and verifies what a
// pipeline made of them: nothing lost, nothing duplicated, order kept per key,
// offsets committed to the end. The quickstart, the end-to-end tests and
// `weir loadtest` share it.
package loadtest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Produce writes n records made by gen to topic, as fast as the client
// allows, and returns when all are acknowledged. gen is called in order from
// one goroutine.
func Produce(ctx context.Context, cl *kgo.Client, topic string, n int, gen func(i int) *kgo.Record) error {
	return produce(ctx, cl, topic, n, 0, nil, gen)
}

// produce writes records gen(0)..gen(n-1) to topic at rate records per
// second (0: as fast as the client allows), counting acknowledged records in
// acked (if not nil), and returns when all are acknowledged or the first
// failure is known.
func produce(ctx context.Context, cl *kgo.Client, topic string, n int, rate float64, acked *atomic.Int64, gen func(i int) *kgo.Record) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < n; i++ {
		if rate > 0 && i%16 == 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if err := ctx.Err(); err != nil {
			wg.Wait()
			return fmt.Errorf("producing to %s: %w", topic, err)
		}
		r := gen(i)
		r.Topic = topic
		wg.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				return
			}
			if acked != nil {
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("producing to %s: %w", topic, first)
	}
	return nil
}

// EndOffsets returns the end offset (the next offset to be written) of each
// partition of topic.
func EndOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	var lerr error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && lerr == nil {
			lerr = fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out, lerr
}

// Count returns how many records topic holds (end minus start offsets, summed;
// exact for a topic that is neither compacted nor transactional).
func Count(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	end, err := EndOffsets(ctx, adm, topic)
	if err != nil {
		return 0, err
	}
	lo, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	var n int64
	for p, e := range end {
		s, _ := lo.Lookup(topic, p)
		n += e - max(s.Offset, 0)
	}
	return n, nil
}

// Lag is a partition whose committed offset is behind its end.
type Lag struct {
	Partition int32
	Committed int64 // -1: nothing committed
	End       int64
}

// Uncommitted compares group's committed offsets on topic with the topic's
// end offsets, and returns the partitions that lag (none: all committed).
func Uncommitted(ctx context.Context, adm *kadm.Client, group, topic string) ([]Lag, error) {
	end, err := EndOffsets(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	var lags []Lag
	for p, e := range end {
		c := int64(-1)
		if o, ok := committed.Lookup(topic, p); ok && o.Err == nil {
			c = o.At
		}
		if e > 0 && c != e {
			lags = append(lags, Lag{Partition: p, Committed: c, End: e})
		}
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i].Partition < lags[j].Partition })
	return lags, nil
}
