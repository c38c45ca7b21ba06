package kafka

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
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
	buf := make([]byte, 0, 64)
	got := convert(p, r, &buf)
	copy(fetchBuf, "XXXXXXXXXX")
	if string(got.Key) != "key" || string(got.Value) != "value" || string(got.Headers[0].Value) != "h1" ||
		got.Headers[1].Value == nil || got.Position.Offset != 7 || got.Partition != p {
		t.Fatalf("convert = %+v", got)
	}
	if cap(got.Key) != 3 {
		t.Fatalf("key capacity %d lets an append overwrite the value", cap(got.Key))
	}
	if null := convert(p, &kgo.Record{}, &buf); null.Key != nil || null.Value != nil {
		t.Fatalf("null key/value became %q/%q", null.Key, null.Value)
	}
	// Records share the buffer without overlapping.
	next := convert(p, &kgo.Record{Key: []byte("k2"), Value: []byte("v2")}, &buf)
	next.Key = append(next.Key, '!')
	if string(got.Key) != "key" || string(got.Value) != "value" || string(next.Value) != "v2" || len(buf) != 14 {
		t.Fatalf("records sharing a buffer: %q %q %q (%d bytes used)", got.Key, got.Value, next.Value, len(buf))
	}
}

// deliver hands the host slices of at most deliverChunk records and
// deliverBytes bytes (a larger record alone), whose bytes are their own: a
// slice given back, and its memory reused, leaves the others intact.
func TestDeliverSplitsAndOwnsBytes(t *testing.T) {
	s, err := New(Config{Topics: []string{"t"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	var delivered [][]record.Record
	rec.onDeliver = func(_ record.Partition, recs []record.Record) { delivered = append(delivered, recs) }
	s.lanes = rec
	p := record.KafkaPartition("t", 0)
	rec.owned[p] = 1
	s.parts[p] = &partState{gen: 1, next: -1}

	// 3000 small records, then three of deliverBytes/2+1 bytes, one of
	// 2*deliverBytes, and a small one.
	var sizes []int
	for range 3000 {
		sizes = append(sizes, 10)
	}
	sizes = append(sizes, deliverBytes/2+1, deliverBytes/2+1, deliverBytes/2+1, 2*deliverBytes, 10)
	valueOf := func(off int64, n int) []byte {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte('a' + (off+int64(i))%26)
		}
		return v
	}
	fp := kgo.FetchPartition{Partition: 0}
	for i, n := range sizes {
		off := int64(i)
		fp.Records = append(fp.Records, &kgo.Record{Topic: "t", Offset: off, Key: []byte("k" + strconv.Itoa(i)), Value: valueOf(off, n)})
	}
	kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{fp}}}}}.EachPartition(s.deliver)

	var counts []int
	for _, recs := range delivered {
		counts = append(counts, len(recs))
		bytes := 0
		for _, r := range recs {
			bytes += r.Size()
		}
		if len(recs) > deliverChunk || (len(recs) > 1 && bytes > deliverBytes) {
			t.Errorf("a delivery of %d records, %d bytes", len(recs), bytes)
		}
	}
	// The last 952 small records and the first large one fit one slice.
	want := []int{1024, 1024, 953, 1, 1, 1, 1}
	if !slices.Equal(counts, want) {
		t.Fatalf("deliveries of %v records, want %v", counts, want)
	}
	// Give the first slice back and scribble over whatever memory comes
	// out of the pools next: the other slices' records are intact.
	sources.PutRecords(delivered[0])
	for range 4 {
		again := sources.GetRecords(1024)
		buf := sources.GetBytes(again, 1024*20)
		buf = buf[:cap(buf)]
		for i := range buf {
			buf[i] = 'X'
		}
	}
	off := int64(1024)
	for _, recs := range delivered[1:] {
		for _, r := range recs {
			if r.Position.Offset != off || string(r.Key) != "k"+strconv.Itoa(int(off)) || string(r.Value) != string(valueOf(off, sizes[off])) {
				t.Fatalf("record at %d: offset %d key %q, value changed", off, r.Position.Offset, r.Key)
			}
			off++
		}
	}
}

// copier is a recorder that says it copies what it is delivered.
type copier struct{ *recorder }

func (copier) CopiesBytes() bool { return true }

// Lanes that copy the bytes themselves are lent the fetch's bytes, not a
// copy of them; other lanes get copies (TestConvertCopies).
func TestDeliverLendsBytesToACopier(t *testing.T) {
	s, err := New(Config{Topics: []string{"t"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	if copiesBytes(rec) || !copiesBytes(copier{rec}) {
		t.Fatal("copiesBytes does not follow sources.BytesCopier")
	}
	s.lanes, s.lent = copier{rec}, true
	p := record.KafkaPartition("t", 0)
	rec.owned[p] = 1
	s.parts[p] = &partState{gen: 1, next: -1}
	fetchBuf := []byte("keyvalueh1")
	var lent [][]byte
	rec.onDeliver = func(_ record.Partition, recs []record.Record) {
		for _, r := range recs {
			lent = append(lent, r.Key, r.Value, r.Headers[0].Value)
		}
	}
	fp := kgo.FetchPartition{Partition: 0, Records: []*kgo.Record{{Topic: "t", Offset: 3,
		Key: fetchBuf[0:3], Value: fetchBuf[3:8], Headers: []kgo.RecordHeader{{Key: "h", Value: fetchBuf[8:10]}}}}}
	kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{fp}}}}}.EachPartition(s.deliver)
	if len(lent) != 3 || &lent[0][0] != &fetchBuf[0] || &lent[1][0] != &fetchBuf[3] || &lent[2][0] != &fetchBuf[8] {
		t.Fatalf("the copier was not lent the fetch's bytes: %q", lent)
	}
}

// endNoter is a recorder that notes the partitions delivered to their end.
type endNoter struct {
	*recorder
	ends []record.Partition
}

func (e *endNoter) DeliveredToEnd(p record.Partition) { e.ends = append(e.ends, p) }

// A fetch whose last record is the partition's last (below the high
// watermark, and the last stable offset) is followed by DeliveredToEnd;
// one with more past it is not.
func TestDeliverNotesTheEndOfAPartition(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hwm     int64
		lso     int64
		wantEnd bool
	}{
		{"at the high watermark", 5, 5, true},
		{"below the high watermark", 9, 9, false},
		{"at the last stable offset", 9, 5, true},
		{"a marker past the last record", 6, 6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Topics: []string{"t"}, Group: "g"})
			if err != nil {
				t.Fatal(err)
			}
			p := record.KafkaPartition("t", 0)
			rec := &endNoter{recorder: newRecorder(nil)}
			rec.owned[p] = 1
			s.lanes = rec
			s.parts[p] = &partState{gen: 1, next: -1}
			var recs []*kgo.Record
			for off := int64(3); off < 5; off++ {
				recs = append(recs, &kgo.Record{Topic: "t", Offset: off, Value: []byte("v")})
			}
			fp := kgo.FetchPartition{Partition: 0, HighWatermark: tc.hwm, LastStableOffset: tc.lso, Records: recs}
			kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{fp}}}}}.EachPartition(s.deliver)
			if got := len(rec.ends) == 1 && rec.ends[0] == p; got != tc.wantEnd || len(rec.ends) > 1 {
				t.Fatalf("DeliveredToEnd calls %v; want the end noted: %v", rec.ends, tc.wantEnd)
			}
		})
	}
}
