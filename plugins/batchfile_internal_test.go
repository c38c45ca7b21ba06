package plugins

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"

	"github.com/weirhq/weir/record"
)

// testBatchFile is a host's batch file for the test (which it skips where
// there are no memfds: CI runs on Linux).
func testBatchFile(t *testing.T, slots, slotSize, replyCap int) *batchFile {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("batch files are Linux memfds")
	}
	bf, err := newBatchFile(slots, slotSize, replyCap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bf.Close() })
	return bf
}

// sharedBatch writes b's records into a batch file at slot 1 and returns
// the batch as the host sends it then, and the file's reader.
func sharedBatch(t *testing.T, b *Batch) ([]byte, *batchReader) {
	t.Helper()
	bf := testBatchFile(t, 2, 1<<20, 1<<20)
	w := encodeRecords(b)
	w.setHead(b)
	off, err := bf.write(1, w)
	if err != nil {
		t.Fatal(err)
	}
	if off != 2<<20 {
		t.Fatalf("slot 1 at %d", off)
	}
	// The handler's own descriptor of the file, as it would inherit it.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(bf.f.Fd())), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	return appendSharedRecords(w.head, shared{offset: uint64(off), length: uint64(len(w.recs))}), &batchReader{f: f, size: st.Size()}
}

func TestSharedBatchDecodesAsInline(t *testing.T) {
	b := loadBatch(300, 100)
	b.Records[7].Headers = nil
	msg, r := sharedBatch(t, b)
	var got handleRequest
	if err := (wireCodec{batches: r}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &got); err != nil {
		t.Fatal(err)
	}
	var want Batch
	if err := decodeBatch(marshalBatch(b), &want); err != nil {
		t.Fatal(err)
	}
	if len(got.batch.Records) != len(want.Records) || got.batch.Pipeline != want.Pipeline {
		t.Fatalf("decoded %d records of pipeline %q, want %d of %q", len(got.batch.Records), got.batch.Pipeline, len(want.Records), want.Pipeline)
	}
	for i := range want.Records {
		g, w := got.batch.Records[i], want.Records[i]
		if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.Position != w.Position || len(g.Headers) != len(w.Headers) || g.Partition != w.Partition {
			t.Fatalf("record %d: %+v, want %+v", i, g, w)
		}
	}
}

// TestBorrowedBatchDecodesInPlace: for a handler that borrows its records,
// a batch in the batch file decodes into the slab given, its bytes where
// the host wrote them (what changes in the file shows in the records).
func TestBorrowedBatchDecodesInPlace(t *testing.T) {
	b := loadBatch(300, 100)
	msg, r := sharedBatch(t, b)
	r.mapped = mapShared(r.f.(*os.File), r.size)
	if r.mapped == nil {
		t.Fatal("the batch file could not be mapped")
	}
	t.Cleanup(func() { _ = unmap(r.mapped) })
	slab := make([]record.Record, 0, 512)
	var got handleRequest
	done, err := r.decodeInPlace(msg, &got, slab)
	if !done || err != nil {
		t.Fatalf("decodeInPlace: done %v, err %v", done, err)
	}
	var want Batch
	if err := decodeBatch(marshalBatch(b), &want); err != nil {
		t.Fatal(err)
	}
	if len(got.batch.Records) != len(want.Records) || got.batch.Pipeline != want.Pipeline || got.shared.length == 0 {
		t.Fatalf("decoded %d records of pipeline %q (shared %+v), want %d of %q", len(got.batch.Records), got.batch.Pipeline, got.shared, len(want.Records), want.Pipeline)
	}
	for i := range want.Records {
		g, w := got.batch.Records[i], want.Records[i]
		if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.Position != w.Position || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %+v, want %+v", i, g, w)
		}
	}
	if &got.batch.Records[0] != &slab[:1][0] {
		t.Error("the records were not decoded into the slab given")
	}
	// The host rewrites the slot: a borrowed record sees it.
	s := got.shared
	for i := s.offset; i < s.offset+s.length; i++ {
		r.mapped[i] = 'X'
	}
	if v := got.batch.Records[0].Value; !bytes.Equal(v, bytes.Repeat([]byte("X"), len(v))) {
		t.Errorf("record 0's value is %q after the slot was rewritten: a copy, not the file's bytes", v)
	}

	// A batch sent inline is not decoded in place.
	var inline handleRequest
	if done, err := r.decodeInPlace(marshalBatch(b), &inline, slab); done || err != nil {
		t.Errorf("an inline batch: done %v, err %v; want it left to the usual decoder", done, err)
	}
}

func TestSharedBatchWithoutABatchFileFails(t *testing.T) {
	msg, _ := sharedBatch(t, loadBatch(3, 10))
	var got handleRequest
	err := wireCodec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &got)
	if !errors.Is(err, errNoBatchFile) {
		t.Fatalf("decoding shared records without a batch file: %v, want errNoBatchFile (never an empty batch)", err)
	}
}

func TestSharedRecordsOutsideTheFileFail(t *testing.T) {
	_, r := sharedBatch(t, loadBatch(3, 10))
	for _, c := range []struct{ off, n uint64 }{{4 << 20, 1}, {4<<20 - 10, 11}, {0, 5 << 20}, {1 << 62, 1 << 62}} {
		msg := appendSharedRecords(nil, shared{offset: c.off, length: c.n})
		var got handleRequest
		err := (wireCodec{batches: r}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &got)
		if !errors.Is(err, errWire) {
			t.Errorf("shared records at %d, %d bytes, in a file of 4 MiB: %v, want a wire error", c.off, c.n, err)
		}
	}
}

// replyThroughFile is a host's wireReply for a batch of n records whose
// call offered the reply area of slot 0 of a fresh batch file, which it
// returns too.
func replyThroughFile(t *testing.T, n int) (*wireReply, *batchFile) {
	t.Helper()
	bf := testBatchFile(t, 1, 1<<20, 1<<10)
	return &wireReply{n: n, shared: bf, replyAt: bf.replyAt(0), replyCap: bf.replyCap}, bf
}

func TestResultReadFromTheBatchFile(t *testing.T) {
	m, bf := replyThroughFile(t, 2)
	res := &Result{Outputs: []Output{{Index: 1, Sink: "out"}}, Failures: []Failure{{Index: 0, Message: "no", Class: ClassInvalidInput}}}
	enc, err := encodeResult(res, mem.DefaultBufferPool())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bf.f.WriteAt(enc.Materialize(), m.replyAt); err != nil {
		t.Fatal(err)
	}
	msg := appendSharedResult(nil, enc.Len())
	if err := (wireCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, m); err != nil || m.bad != nil {
		t.Fatalf("Unmarshal: %v, bad reply %v", err, m.bad)
	}
	if len(m.res.Outputs) != 1 || m.res.Outputs[0].Sink != "out" || len(m.res.Failures) != 1 || m.res.Failures[0].Message != "no" {
		t.Fatalf("result %+v", m.res)
	}
}

func TestResultInTheBatchFileBreakingTheProtocol(t *testing.T) {
	for name, c := range map[string]struct {
		msg  []byte
		want string
	}{
		"larger than offered": {appendSharedResult(nil, 1<<10+1), "more than the 1024 offered"},
		"with outputs inline too": {append(appendSharedResult(nil, 10), 0x0a, 0x02, 0x12, 'x'),
			"outputs or failures as well"},
	} {
		t.Run(name, func(t *testing.T) {
			m, _ := replyThroughFile(t, 2)
			if err := (wireCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(c.msg)}, m); err != nil {
				t.Fatalf("Unmarshal: %v, want a bad reply", err)
			}
			if e, ok := errors.AsType[*Error](m.bad); !ok || e.Class != ClassBadReply || !strings.Contains(m.bad.Error(), c.want) {
				t.Fatalf("bad reply %v, want ClassBadReply saying %q", m.bad, c.want)
			}
		})
	}
	// Where no room was offered, a result "in the file" is refused, never
	// taken for an empty one.
	m := &wireReply{n: 2}
	if err := (wireCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(appendSharedResult(nil, 0))}, m); err != nil || !errors.Is(m.bad, errBadReply) {
		t.Fatalf("a result in a batch file not offered: err %v, bad %v; want a bad reply", err, m.bad)
	}
}
