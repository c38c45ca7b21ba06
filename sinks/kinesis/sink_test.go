package kinesis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
)

// flakyAPI fails the entries whose data is in failTimes as many times as
// given there (ProvisionedThroughputExceeded), and records what it wrote.
type flakyAPI struct {
	mu        sync.Mutex
	failTimes map[string]int
	calls     [][]string
	written   []string
}

func (f *flakyAPI) PutRecords(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &kinesis.PutRecordsOutput{}
	var call []string
	keys := map[string]bool{}
	for _, r := range in.Records {
		d := string(r.Data)
		call = append(call, d)
		if keys[aws.ToString(r.PartitionKey)] {
			return nil, fmt.Errorf("two entries of key %s in one request", aws.ToString(r.PartitionKey))
		}
		keys[aws.ToString(r.PartitionKey)] = true
		if f.failTimes[d] > 0 {
			f.failTimes[d]--
			out.Records = append(out.Records, types.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException"), ErrorMessage: aws.String("slow down")})
			continue
		}
		f.written = append(f.written, d)
		out.Records = append(out.Records, types.PutRecordsResultEntry{SequenceNumber: aws.String("1"), ShardId: aws.String("s")})
	}
	f.calls = append(f.calls, call)
	return out, nil
}

func msgs(keys, per int) []record.Message {
	var out []record.Message
	for i := range per {
		for k := range keys {
			out = append(out, record.Message{Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(fmt.Sprintf("k%d:%d", k, i))})
		}
	}
	return out
}

// Only the entries that failed are sent again, and a key's messages stay
// in order even when one of them is throttled.
func TestRetriesOnlyFailedEntriesInKeyOrder(t *testing.T) {
	api := &flakyAPI{failTimes: map[string]int{"k1:0": 2, "k3:1": 1}}
	s, err := New(Config{API: api, Stream: "out", Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), msgs(5, 3)); err != nil {
		t.Fatal(err)
	}
	if len(api.written) != 15 {
		t.Fatalf("%d written, want 15: %v", len(api.written), api.written)
	}
	// Round 1 (5 entries), its retries (k1:0 twice), round 2 (5), its
	// retry (k3:1), round 3 (5).
	want := [][]string{
		{"k0:0", "k1:0", "k2:0", "k3:0", "k4:0"}, {"k1:0"}, {"k1:0"},
		{"k0:1", "k1:1", "k2:1", "k3:1", "k4:1"}, {"k3:1"},
		{"k0:2", "k1:2", "k2:2", "k3:2", "k4:2"},
	}
	if fmt.Sprint(api.calls) != fmt.Sprint(want) {
		t.Fatalf("calls\n%v\nwant\n%v", api.calls, want)
	}
}

// An entry that keeps failing fails its message and the later messages of
// its key (unsent), and nothing else.
func TestAnEntryThatKeepsFailingFailsItsKeyOnly(t *testing.T) {
	api := &flakyAPI{failTimes: map[string]int{"k2:0": 100}}
	s, err := New(Config{API: api, Stream: "out", MaxAttempts: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := msgs(3, 2)
	m = append(m, record.Message{Key: []byte("big"), Value: make([]byte, maxRecordBytes)}, record.Message{Key: []byte("big"), Value: []byte("after")})
	err = s.Write(context.Background(), m)
	failed := sinks.Failed(err, len(m))
	for i, msg := range m {
		want := strings.HasPrefix(string(msg.Value), "k2:") || string(msg.Key) == "big"
		if failed[i] != want {
			t.Errorf("message %d (%s): failed=%v, want %v (err %v)", i, msg.Value, failed[i], want, err)
		}
	}
	if len(api.written) != 4 {
		t.Errorf("written %v, want the 4 messages of k0 and k1", api.written)
	}
}

func TestBatchesOf500And5MB(t *testing.T) {
	var es []entry
	for i := range 1200 {
		es = append(es, entry{idx: i, key: fmt.Sprint(i), data: make([]byte, 10)})
	}
	if got := split(es); len(got) != 3 || len(got[0]) != 500 || len(got[2]) != 200 {
		t.Fatalf("1200 small entries split into %d requests", len(got))
	}
	es = es[:0]
	for i := range 12 {
		es = append(es, entry{idx: i, key: fmt.Sprint(i), data: make([]byte, 1<<20-10)})
	}
	for _, req := range split(es) {
		n := 0
		for _, e := range req {
			n += len(e.key) + len(e.data)
		}
		if n > maxRequestBytes {
			t.Fatalf("a request of %d bytes", n)
		}
	}
}

// Against kinesalite: every message lands, per-key order holds.
func TestWritesToKinesalite(t *testing.T) {
	ep := testenv.Kinesis(t)
	ctx := context.Background()
	cl := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(ep),
		Credentials: credentials.NewStaticCredentialsProvider("fake", "fake", "")})
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("out"), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	s, err := New(Config{API: cl, Stream: "out"})
	if err != nil {
		t.Fatal(err)
	}
	m := msgs(50, 30)
	if err := s.Write(ctx, m); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(ctx)
	got := 0
	next := map[string]int{}
	for _, sh := range []string{"shardId-000000000000", "shardId-000000000001"} {
		it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("out"), ShardId: aws.String(sh), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		out, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records {
			k, idx, _ := strings.Cut(string(r.Data), ":")
			if k != aws.ToString(r.PartitionKey) || idx != fmt.Sprint(next[k]) {
				t.Fatalf("%s: %q after %d of its key", sh, r.Data, next[k])
			}
			next[k]++
			got++
		}
	}
	if got != len(m) {
		t.Fatalf("%d records in the stream, want %d", got, len(m))
	}
}
