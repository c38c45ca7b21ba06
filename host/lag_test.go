package host

import (
	"context"
	"testing"
	"time"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// The split adds up to the lag in every case, and puts each kind of record
// on the side the design says.
func TestSplitLag(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name        string
		o           sources.Offsets
		have        bool
		ll          laneLag
		breakerOpen bool
		want        PartitionLag
	}{
		{name: "no offsets yet", ll: laneLag{seen: true, next: 5, delivered: 9},
			want: PartitionLag{}},
		{name: "nothing delivered, committed known", o: sources.Offsets{End: 100, Committed: 40}, have: true,
			want: PartitionLag{Known: true, End: 100, Next: 40, Lag: 60, Drainable: 60}},
		{name: "empty partition, nothing committed", o: sources.Offsets{End: 0, Committed: -1}, have: true,
			want: PartitionLag{Known: true}},
		{name: "nothing delivered, nothing committed: unknown", o: sources.Offsets{End: 10, Committed: -1}, have: true,
			want: PartitionLag{}},
		{name: "slow handler: fetched and queued work is drainable", o: sources.Offsets{End: 100, Committed: 0}, have: true,
			ll:   laneLag{seen: true, next: 20, delivered: 50, incomplete: 30},
			want: PartitionLag{Known: true, End: 100, Next: 20, Lag: 80, Drainable: 80}},
		{name: "parked key: its records and the completed ones after it are blocked", o: sources.Offsets{End: 100, Committed: 0}, have: true,
			ll:   laneLag{seen: true, next: 10, delivered: 100, incomplete: 4, held: 4},
			want: PartitionLag{Known: true, End: 100, Next: 10, Lag: 90, Blocked: 90, BlockedBy: "retrying records"}},
		{name: "parked key with unfetched records behind", o: sources.Offsets{End: 200, Committed: 0}, have: true,
			ll:   laneLag{seen: true, next: 10, delivered: 100, incomplete: 14, held: 4},
			want: PartitionLag{Known: true, End: 200, Next: 10, Lag: 190, Drainable: 110, Blocked: 80, BlockedBy: "retrying records"}},
		{name: "open breaker blocks everything", o: sources.Offsets{End: 100, Committed: 0}, have: true, breakerOpen: true,
			ll:   laneLag{seen: true, next: 10, delivered: 50, incomplete: 40},
			want: PartitionLag{Known: true, End: 100, Next: 10, Lag: 90, Blocked: 90, BlockedBy: "breaker"}},
		{name: "ordering partition batch retrying blocks everything", o: sources.Offsets{End: 100, Committed: 0}, have: true,
			ll:   laneLag{seen: true, next: 10, delivered: 50, incomplete: 40, allHeld: true},
			want: PartitionLag{Known: true, End: 100, Next: 10, Lag: 90, Blocked: 90, BlockedBy: "retrying batch"}},
		{name: "caught up, breaker open: nothing to block", o: sources.Offsets{End: 100, Committed: 100}, have: true, breakerOpen: true,
			ll:   laneLag{seen: true, next: 100, delivered: 100},
			want: PartitionLag{Known: true, End: 100, Next: 100}},
		{name: "end behind what was delivered (a poll older than the fetch)", o: sources.Offsets{End: 50, Committed: 0}, have: true,
			ll:   laneLag{seen: true, next: 40, delivered: 60, incomplete: 20},
			want: PartitionLag{Known: true, End: 50, Next: 40, Lag: 10, Drainable: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := splitLag(tc.o, tc.have, tc.ll, tc.breakerOpen, now)
			tc.want.At = now
			if got != tc.want {
				t.Errorf("splitLag = %+v\nwant        %+v", got, tc.want)
			}
			if got.Drainable+got.Blocked != got.Lag || got.Drainable < 0 || got.Blocked < 0 {
				t.Errorf("split %d + %d does not add up to lag %d", got.Drainable, got.Blocked, got.Lag)
			}
		})
	}
}

// A lane's own view: under ordering partition a retrying batch holds the
// whole partition; under ordering key it holds its failing records and the
// queued records of their keys, and nothing else.
func TestLaneLagCountsWhatWaitsOnARetry(t *testing.T) {
	for _, tc := range []struct {
		ordering    config.Ordering
		wantAllHeld bool
		wantHeld    int64
	}{
		{config.OrderingPartition, true, 0},
		// key "bad" has records at offsets 0, 10, 20, ...: the first fails,
		// the rest wait behind it (in the batch, then in the queue).
		{config.OrderingKey, false, 10},
	} {
		t.Run(string(tc.ordering), func(t *testing.T) {
			cfg := testPipelineConfig()
			cfg.Ordering = tc.ordering
			cfg.Batch.MaxRecords = 5
			cfg.Retry.MaxAttempts = 1 << 30
			cfg.Breaker.MinRequests = 1 << 30
			handler := handlerFunc(func(_ context.Context, b *plugins.Batch) (*plugins.Result, error) {
				res := echo(b)
				for i, r := range b.Records {
					if string(r.Key) == "bad" && r.Position.Offset == 0 {
						res.Failures = append(res.Failures, plugins.Failure{Index: i, Class: plugins.ClassTransient, Retryable: true, Message: "down"})
					}
				}
				return res, nil
			})
			hs := newHarness(t, cfg, handler, true)
			p := record.KafkaPartition("t", 0)
			hs.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 1}})
			recs := records(p, 0, 100, 10)
			for i := range recs {
				if i%10 == 0 {
					recs[i].Key = []byte("bad")
				}
			}
			hs.pl.Deliver(p, recs)
			hs.pl.mu.Lock()
			l := hs.pl.lanes[p]
			hs.pl.mu.Unlock()
			// Wait until the lane shows the retry holding what it should
			// (under ordering key: once the other 90 records completed);
			// a wrong count never gets there.
			var ll laneLag
			deadline := time.Now().Add(10 * time.Second)
			for {
				done := hs.pl.stats.Completed.Load()
				var ok bool
				ll, ok = l.requestLag(context.Background())
				if !ok {
					t.Fatal("the lane ended")
				}
				if tc.wantAllHeld && ll.allHeld {
					break
				}
				if !tc.wantAllHeld && done == 90 && ll.held == tc.wantHeld && ll.incomplete == 10 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("laneLag %+v (completed %d); want allHeld %v, held %d, incomplete 10", ll, done, tc.wantAllHeld, tc.wantHeld)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if !ll.seen || ll.next != 0 || ll.delivered != 100 || ll.oldest.IsZero() {
				t.Errorf("laneLag %+v; want next 0, delivered 100, an oldest arrival", ll)
			}
			hs.pl.Lost(context.Background(), []record.Partition{p})
		})
	}
}
