package plugins

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"testing"

	"google.golang.org/grpc/mem"
)

// sharedBatch writes b's records into a batch file at slot 1 and returns
// the batch as the host sends it then, and the file's reader.
func sharedBatch(t *testing.T, b *Batch) ([]byte, *batchReader) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("batch files are Linux memfds")
	}
	bf, err := newBatchFile(2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bf.Close() })
	w := encodeRecords(b)
	w.setHead(b)
	off, err := bf.write(1, w.recs)
	if err != nil {
		t.Fatal(err)
	}
	if off != 1<<20 {
		t.Fatalf("slot 1 at %d", off)
	}
	// The handler's own descriptor of the file, as it would inherit it.
	f, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(bf.f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	return appendSharedRecords(w.head, off, len(w.recs)), &batchReader{f: f, size: st.Size()}
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
	for _, c := range []struct{ off, n int64 }{{2 << 20, 1}, {2<<20 - 10, 11}, {0, 3 << 20}, {1 << 62, 1 << 62}} {
		msg := appendSharedRecords(nil, c.off, int(c.n))
		var got handleRequest
		err := (wireCodec{batches: r}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &got)
		if !errors.Is(err, errWire) {
			t.Errorf("shared records at %d, %d bytes, in a file of 2 MiB: %v, want a wire error", c.off, c.n, err)
		}
	}
}
