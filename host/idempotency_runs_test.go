package host

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// Position mode marks runs of records that arrived one after another. A
// record held back from its batch (ordering key: a later record of a key
// whose earlier record is being retried) or failing in it lies inside the
// batch's range of offsets but not in any of its runs: when the owner
// dies before that record completes, the next owner must handle it, while
// it drops the records around it as done.
func TestHeldBackRecordsAreNotMarkedWithTheirBatch(t *testing.T) {
	addr := testenv.Redis(t)
	name := "runs-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := testPipelineConfig()
	cfg.Name = name
	cfg.Ordering = config.OrderingKey
	cfg.Retry.MaxAttempts = 1 << 20
	cfg.Breaker.MinRequests = 1 << 30 // the stuck key must not open the breaker
	const n, keys = 400, 10
	stuck := func(r record.Record) bool { return string(r.Key) == "k3" }

	// The first owner handles every key but k3, whose first record fails
	// retryably for as long as the owner lives.
	first := newHarnessWithMarks(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		res := echo(b)
		var outs []plugins.Output
		for _, o := range res.Outputs {
			if stuck(b.Records[o.Index]) {
				res.Failures = append(res.Failures, plugins.Failure{Index: o.Index, Retryable: true, Class: plugins.ClassTransient, Message: "k3 is down"})
				continue
			}
			outs = append(outs, o)
		}
		res.Outputs = outs
		return res, nil
	}), false, newStore(t, addr, name))
	p := record.KafkaPartition("in", 0)
	first.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 1}})
	recs := records(p, 0, n, keys)
	for i := 0; i < n; i += 50 {
		first.pl.Deliver(p, recs[i:i+50])
	}
	first.waitCompleted(n - n/keys)
	if got := len(first.out.all()); got != n-n/keys {
		t.Fatalf("the first owner wrote %d outputs, want %d", got, n-n/keys)
	}

	// It dies (nothing more of it lands once the next owner has fenced);
	// the partition is redelivered from its last commit, which is below
	// k3's first record.
	next := newHarnessWithMarks(t, cfg, handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) {
		return echo(b), nil
	}), false, newStore(t, addr, name))
	next.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 2}})
	for i := 0; i < n; i += 50 {
		next.pl.Deliver(p, recs[i:i+50])
	}
	next.waitCompleted(n)
	var got []string
	for _, m := range next.out.all() {
		got = append(got, string(m.Value))
	}
	sort.Slice(got, func(i, j int) bool { a, _ := strconv.Atoi(got[i]); b, _ := strconv.Atoi(got[j]); return a < b })
	var want []string
	for _, r := range recs {
		if stuck(r) {
			want = append(want, strconv.FormatInt(r.Position.Offset, 10))
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the next owner handled offsets %v; want exactly k3's, %v", got, want)
	}
	if d := next.pl.stats.Duplicates.Load(); d != n-n/keys {
		t.Fatalf("duplicates dropped = %d, want %d", d, n-n/keys)
	}
}
