package kafka

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
)

func fetchOf(topic string, partition int32, err error, offsets ...int64) kgo.Fetches {
	fp := kgo.FetchPartition{Partition: partition, Err: err}
	for _, o := range offsets {
		fp.Records = append(fp.Records, &kgo.Record{Topic: topic, Partition: partition, Offset: o, LeaderEpoch: int32(o / 10)})
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{fp}}}}}
}

func offsetsOf(recs []record.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Position.Offset
	}
	return out
}

// Records the lane has already seen are never handed to it again, except
// after the broker lost data, when offsets are reused by new records.
func TestDeliverDropsRedeliveries(t *testing.T) {
	s, err := New(Config{Topics: []string{"t"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	s.lanes = rec
	p := record.KafkaPartition("t", 0)
	rec.owned[p] = 1
	s.parts[p] = &partState{gen: 1, next: -1}

	steps := []struct {
		name  string
		err   error
		offs  []int64
		total []int64
	}{
		{"first fetch", nil, []int64{5, 6, 7}, []int64{5, 6, 7}},
		{"overlap dropped", nil, []int64{6, 7, 8, 9}, []int64{5, 6, 7, 8, 9}},
		{"all old", nil, []int64{3, 4}, []int64{5, 6, 7, 8, 9}},
		{"gap kept (compaction, txn markers)", nil, []int64{12}, []int64{5, 6, 7, 8, 9, 12}},
		{"data loss rewinds", &kgo.ErrDataLoss{Topic: "t", Partition: 0, ConsumedTo: 13, ResetTo: 10}, []int64{10, 11}, []int64{5, 6, 7, 8, 9, 12, 10, 11}},
	}
	for _, st := range steps {
		f := fetchOf("t", 0, st.err, st.offs...)
		if err := s.handleErrors(context.Background(), f); err != nil {
			t.Fatalf("%s: handleErrors: %v", st.name, err)
		}
		f.EachPartition(s.deliver)
		got := offsetsOf(rec.records(p))
		if len(got) != len(st.total) {
			t.Fatalf("%s: delivered %v, want %v", st.name, got, st.total)
		}
		for i := range got {
			if got[i] != st.total[i] {
				t.Fatalf("%s: delivered %v, want %v", st.name, got, st.total)
			}
		}
	}

	// A partition not owned delivers nothing.
	fetchOf("t", 1, nil, 0, 1).EachPartition(s.deliver)
	if n := rec.count(record.KafkaPartition("t", 1)); n != 0 {
		t.Fatalf("delivered %d records of an unowned partition", n)
	}
}

func TestHandleErrorsFatal(t *testing.T) {
	s, err := New(Config{Topics: []string{"t"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		err   error
		fatal bool
	}{
		{"retryable fetch error", errors.New("connection reset"), false},
		{"group auth", &kgo.ErrGroupSession{Err: kerr.GroupAuthorizationFailed}, true},
		{"client closed", kgo.ErrClientClosed, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := s.handleErrors(context.Background(), fetchOf("t", 0, c.err))
			if (got != nil) != c.fatal || (got != nil && !errors.Is(got, c.err)) {
				t.Fatalf("handleErrors(%v) = %v, fatal want %v", c.err, got, c.fatal)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.handleErrors(ctx, fetchOf("", -1, context.Canceled)); err != nil {
		t.Fatalf("own cancellation reported as fatal: %v", err)
	}
}

func TestEpochAt(t *testing.T) {
	st := &partState{next: -1}
	for _, m := range []struct {
		off   int64
		epoch int32
	}{{0, 3}, {1, 3}, {5, 4}, {6, 4}, {9, 7}} {
		st.noteEpoch(m.off, m.epoch)
	}
	for off, want := range map[int64]int32{0: 3, 4: 3, 5: 4, 8: 4, 9: 7, 20: 7} {
		if got := st.epochAt(off); got != want {
			t.Errorf("epochAt(%d) = %d, want %d", off, got, want)
		}
	}
	st.forgetEpochsBefore(6)
	if len(st.epochs) != 2 || st.epochAt(6) != 4 || st.epochAt(9) != 7 {
		t.Errorf("after forgetting below 6: %+v", st.epochs)
	}
	if got := (&partState{}).epochAt(3); got != -1 {
		t.Errorf("epoch with nothing delivered = %d, want -1", got)
	}
}

// Records must not alias kgo's fetch buffers: a record a lane keeps would
// otherwise pin the whole fetch, unseen by in-flight accounting.
func TestConvertCopies(t *testing.T) {
	fetchBuf := []byte("keyvalueh1")
	r := &kgo.Record{
		Key:     fetchBuf[0:3],
		Value:   fetchBuf[3:8],
		Headers: []kgo.RecordHeader{{Key: "h", Value: fetchBuf[8:10]}, {Key: "empty", Value: []byte{}}},
		Offset:  7,
	}
	p := record.KafkaPartition("t", 0)
	var chunk []byte
	got := convert(p, r, &chunk)
	copy(fetchBuf, "XXXXXXXXXX")
	if string(got.Key) != "key" || string(got.Value) != "value" || string(got.Headers[0].Value) != "h1" ||
		got.Headers[1].Value == nil || got.Position.Offset != 7 || got.Partition != p {
		t.Fatalf("convert = %+v", got)
	}
	if cap(got.Key) != 3 {
		t.Fatalf("key capacity %d lets an append overwrite the value", cap(got.Key))
	}
	if null := convert(p, &kgo.Record{}, &chunk); null.Key != nil || null.Value != nil {
		t.Fatalf("null key/value became %q/%q", null.Key, null.Value)
	}
	// Records share a chunk without overlapping; one larger than a chunk
	// gets its own.
	next := convert(p, &kgo.Record{Key: []byte("k2"), Value: []byte("v2")}, &chunk)
	big := convert(p, &kgo.Record{Value: make([]byte, chunkSize+1)}, &chunk)
	after := convert(p, &kgo.Record{Key: []byte("k3")}, &chunk)
	next.Key = append(next.Key, '!')
	if string(got.Key) != "key" || string(got.Value) != "value" || string(next.Value) != "v2" ||
		len(big.Value) != chunkSize+1 || string(after.Key) != "k3" {
		t.Fatalf("records sharing a chunk: %q %q %q, big %d bytes, after %q", got.Key, got.Value, next.Value, len(big.Value), after.Key)
	}
}
