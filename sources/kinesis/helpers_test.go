package kinesis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
	"github.com/weirhq/weir/sources/kinesis/lease"
)

// testClient returns a client of a kinesalite of t's own.
func testClient(t *testing.T) *kinesis.Client {
	t.Helper()
	ep := testenv.Kinesis(t)
	cl, err := NewClient(context.Background(), ClientConfig{Region: "us-east-1", Endpoint: ep, Credentials: StaticCredentials("fake", "fake")})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func createStream(t *testing.T, cl *kinesis.Client, name string, shards int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	waitActive(t, cl, name)
}

func waitActive(t *testing.T, cl *kinesis.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := cl.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not active: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// putAll writes recs (key, value) in order, 500 a call; records of one key
// keep their order because each call's entries are written in order.
func putAll(t *testing.T, cl *kinesis.Client, stream string, recs [][2]string) {
	t.Helper()
	for i := 0; i < len(recs); i += 500 {
		var entries []types.PutRecordsRequestEntry
		for _, r := range recs[i:min(i+500, len(recs))] {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(r[0]), Data: []byte(r[1])})
		}
		out, err := cl.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			t.Fatalf("put records: %v", err)
		}
		if aws.ToInt32(out.FailedRecordCount) > 0 {
			t.Fatalf("put records: %d failed", aws.ToInt32(out.FailedRecordCount))
		}
	}
}

// fakeLanes is a sources.Lanes that completes every record at once: each
// Deliver commits its last position (synchronously, as the host's
// committer would later).
type fakeLanes struct {
	t   *testing.T
	src *Source

	mu       sync.Mutex
	owned    map[record.Partition]int64
	got      map[record.Partition][]record.Record
	assigned []record.Partition
	revoked  []record.Partition
	lost     []record.Partition
}

func newFakeLanes(t *testing.T) *fakeLanes {
	return &fakeLanes{t: t, owned: map[record.Partition]int64{}, got: map[record.Partition][]record.Record{}}
}

func (f *fakeLanes) Assign(_ context.Context, claims []sources.Claim) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range claims {
		if _, dup := f.owned[c.Partition]; dup {
			f.t.Errorf("%s assigned twice", c.Partition)
		}
		f.owned[c.Partition] = c.Generation
		f.assigned = append(f.assigned, c.Partition)
	}
}

func (f *fakeLanes) Revoke(_ context.Context, parts []record.Partition) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range parts {
		delete(f.owned, p)
		f.revoked = append(f.revoked, p)
	}
}

func (f *fakeLanes) Lost(_ context.Context, parts []record.Partition) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range parts {
		delete(f.owned, p)
		f.lost = append(f.lost, p)
	}
}

func (f *fakeLanes) Deliver(p record.Partition, recs []record.Record) {
	f.mu.Lock()
	if _, ok := f.owned[p]; !ok {
		f.t.Errorf("records delivered to %s, which is not assigned", p)
	}
	f.got[p] = append(f.got[p], recs...)
	f.mu.Unlock()
	if err := f.src.Commit(context.Background(), map[record.Partition]record.Position{p: recs[len(recs)-1].Position}); err != nil {
		f.t.Errorf("commit %s: %v", p, err)
	}
}

func (f *fakeLanes) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, rs := range f.got {
		n += len(rs)
	}
	return n
}

func (f *fakeLanes) records() map[record.Partition][]record.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[record.Partition][]record.Record{}
	for p, rs := range f.got {
		out[p] = slices.Clone(rs)
	}
	return out
}

// newLeases returns a lease store of worker on rdb for stream.
func newLeases(t *testing.T, rdb redis.UniversalClient, base, stream, worker string, ttl time.Duration) *lease.Store {
	t.Helper()
	ls, err := lease.New(lease.Config{Client: rdb, Base: base, Stream: stream, Worker: worker, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func keyed(n, keys int) [][2]string {
	out := make([][2]string, n)
	for i := range out {
		k := i % keys
		out[i] = [2]string{fmt.Sprintf("k%03d", k), fmt.Sprintf("k%03d:%d", k, i/keys)}
	}
	return out
}
