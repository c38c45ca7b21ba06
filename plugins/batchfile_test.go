package plugins_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// viaFile sends b to the viafile handler of p and checks that every output
// echoes its record (key, value, headers); it returns how many batches the
// handler process had read from its batch file when it handled b.
func viaFile(t *testing.T, p *plugins.Pool, b *plugins.Batch) int {
	t.Helper()
	res, err := p.Handle(context.Background(), b)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return checkEchoes(t, res, b)
}

// checkEchoes checks that res, of the viafile handler, echoes b's records,
// and returns how many batches the handler had read from its batch file.
func checkEchoes(t *testing.T, res *plugins.Result, b *plugins.Batch) int {
	t.Helper()
	reads, _ := echoCounts(t, res, b)
	return reads
}

// echoCounts checks that res, of a viafile handler, echoes b's records
// (keys, values and headers, null ones null), and returns how many batches
// the handler had read from its batch file, and decoded in place.
func echoCounts(t *testing.T, res *plugins.Result, b *plugins.Batch) (reads, inPlace int) {
	t.Helper()
	if len(res.Outputs) != len(b.Records) {
		t.Fatalf("%d outputs for %d records", len(res.Outputs), len(b.Records))
	}
	reads, inPlace = -1, -1
	for i, o := range res.Outputs {
		r := b.Records[i]
		value, counts, ok := bytes.Cut(o.Value, []byte("|"))
		if o.Index != i || !sameBytes(o.Key, r.Key) || !bytes.Equal(value, r.Value) || !ok {
			t.Fatalf("output %d: index %d, key %q, value %q; want record %d, key %q, value %q", i, o.Index, o.Key, o.Value, i, r.Key, r.Value)
		}
		if len(o.Headers) != len(r.Headers) || len(r.Headers) > 0 && !bytes.Equal(o.Headers[0].Value, r.Headers[0].Value) {
			t.Fatalf("output %d: headers %v, want %v", i, o.Headers, r.Headers)
		}
		rs, ps, _ := bytes.Cut(counts, []byte("|"))
		reads, _ = strconv.Atoi(string(rs))
		inPlace, _ = strconv.Atoi(string(ps))
	}
	return reads, inPlace
}

// sameBytes says a and b are equal, both null or neither.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// TestBorrowedRecordsAreDecodedInPlace: a handler that borrows its records
// gets them in place, batch after batch, each batch's and no other's: the
// storage one batch leaves is cleared for the next (a record without a key
// or headers after records with them has none).
func TestBorrowedRecordsAreDecodedInPlace(t *testing.T) {
	needBatchFiles(t)
	keyless := batchOfSize("keyless", 300, 80)
	for i := range keyless.Records {
		keyless.Records[i].Key, keyless.Records[i].Headers = nil, nil
	}
	batches := []*plugins.Batch{batchOfSize("a", 500, 100), keyless, batchOfSize("c", 200, 50), keyless}
	for _, tc := range []struct {
		handler string
		inPlace bool
	}{{"viafile-borrowed", true}, {"viafile", false}} {
		t.Run(tc.handler, func(t *testing.T) {
			p, _ := newPool(t, plugins.PoolConfig{Builtin: tc.handler, Instances: 1, AutoMTLS: true})
			for i, b := range batches {
				res, err := p.Handle(context.Background(), b)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				want := 0
				if tc.inPlace {
					want = i + 1
				}
				if _, inPlace := echoCounts(t, res, b); inPlace != want {
					t.Fatalf("batch %d: %d batches decoded in place so far, want %d", i, inPlace, want)
				}
			}
		})
	}
}

func batchOfSize(prefix string, n, size int) *plugins.Batch {
	b := &plugins.Batch{Pipeline: "test", Stream: "s", Partition: "0", Attempt: 1}
	for i := range n {
		v := fmt.Sprintf("%s-%d-", prefix, i)
		v += strings.Repeat("v", max(size-len(v), 0))
		b.Records = append(b.Records, record.Record{
			Key:      []byte(prefix + strconv.Itoa(i)),
			Value:    []byte(v),
			Headers:  []record.Header{{Key: "i", Value: []byte(strconv.Itoa(i))}},
			Position: record.Position{Offset: int64(i)},
		})
	}
	return b
}

func TestBatchFileCarriesAGoHandlersRecords(t *testing.T) {
	needBatchFiles(t)
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 1, AutoMTLS: true})
	results := plugins.BatchFileResults()
	for i := 1; i <= 3; i++ {
		if reads := viaFile(t, p, batchOfSize("b"+strconv.Itoa(i), 200, 100)); reads != i {
			t.Fatalf("batch %d: the handler had read %d batches from its batch file, want %d", i, reads, i)
		}
		if got := plugins.BatchFileResults() - results; got != int64(i) {
			t.Fatalf("batch %d: %d results came through the batch file, want %d", i, got, i)
		}
	}
}

// encodedCall is viaFile of b with its records encoded first, as a lane
// does, and given to HandleEncoded in three parts.
func encodedCall(t *testing.T, p *plugins.Pool, b *plugins.Batch) int {
	t.Helper()
	recs := make([]record.Record, len(b.Records))
	var parts [][]byte
	for i, r := range b.Records {
		var buf []byte
		if len(parts) < 3 && i%(len(b.Records)/3+1) == 0 {
			parts = append(parts, nil)
		}
		r.Headers = slices.Clone(r.Headers)
		buf = plugins.AppendRecord(parts[len(parts)-1], &r)
		parts[len(parts)-1] = buf
		recs[i] = r
	}
	res, err := p.HandleEncoded(context.Background(), &plugins.Batch{Pipeline: b.Pipeline, Stream: b.Stream, Partition: b.Partition},
		plugins.EncodedRecords{Parts: parts, N: len(recs)})
	if err != nil {
		t.Fatalf("HandleEncoded: %v", err)
	}
	// The outputs must echo the records: check them as viaFile does.
	return checkEchoes(t, res, b)
}

// TestHandleEncodedCarriesRecords: records encoded as they arrive, in
// parts, reach the handler whole, through the batch file (written from the
// parts) and inline.
func TestHandleEncodedCarriesRecords(t *testing.T) {
	needBatchFiles(t)
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 1, AutoMTLS: true})
	for i := 1; i <= 2; i++ {
		if reads := encodedCall(t, p, batchOfSize("e"+strconv.Itoa(i), 200, 100)); reads != i {
			t.Fatalf("batch %d: the handler had read %d batches from its batch file, want %d", i, reads, i)
		}
	}
	inline, _ := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 1, BatchFileSlot: -1})
	if reads := encodedCall(t, inline, batchOfSize("e", 200, 100)); reads != 0 {
		t.Fatalf("the handler read %d batches from a batch file it should not have", reads)
	}
}

func TestBatchFileOffSendsRecordsInline(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 1, BatchFileSlot: -1})
	if reads := viaFile(t, p, batchOfSize("b", 200, 100)); reads != 0 {
		t.Fatalf("the handler read %d batches from a batch file it should not have", reads)
	}
}

func TestBatchTooLargeForItsSlotGoesInline(t *testing.T) {
	needBatchFiles(t)
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 1, BatchFileSlot: 8 << 10})
	if reads := viaFile(t, p, batchOfSize("small", 10, 100)); reads != 1 {
		t.Fatalf("small batch: %d batches read from the batch file, want 1", reads)
	}
	if reads := viaFile(t, p, batchOfSize("large", 200, 100)); reads != 1 {
		t.Fatalf("a batch larger than its slot: %d batches read from the batch file, want still 1 (inline)", reads)
	}
	if reads := viaFile(t, p, batchOfSize("small2", 10, 100)); reads != 2 {
		t.Fatalf("small batch after a large one: %d batches read from the batch file, want 2", reads)
	}
}

// TestBatchFileSlotsOfConcurrentCalls sends batches of different records
// concurrently to processes serving several calls at once: each call must
// see its own records, never another call's slot.
func TestBatchFileSlotsOfConcurrentCalls(t *testing.T) {
	p, _ := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 2, MaxConcurrency: 3})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 15 {
				// Sizes vary so that a call reading another's slot
				// would see other lengths as well as other values.
				viaFile(t, p, batchOfSize(fmt.Sprintf("g%d-c%d", g, i), 50+g*7+i, 60+g*13))
			}
		})
	}
	wg.Wait()
}

// A handler that says it reads its batch file but answers the wrong check
// bytes gets its batches inline: trusted with the file, a handler that does
// not read it would be handed batches it cannot see.
func TestHandlerWithTheWrongBatchFileCheckGetsBatchesInline(t *testing.T) {
	needBatchFiles(t)
	p, logs := newPool(t, plugins.PoolConfig{Builtin: "viafile", Instances: 1,
		Env: map[string]string{"WEIR_TEST_WRONG_BATCH_CHECK": "1"}})
	results := plugins.BatchFileResults()
	if reads := viaFile(t, p, batchOfSize("b", 200, 100)); reads != 0 {
		t.Fatalf("the handler read %d batches from its batch file, want 0", reads)
	}
	if got := plugins.BatchFileResults() - results; got != 0 {
		t.Fatalf("%d results came through the batch file, want 0", got)
	}
	if !strings.Contains(logs.String(), "answered the wrong check bytes") {
		t.Fatalf("no warning about the check bytes in the log:\n%s", logs)
	}
}

// needBatchFiles skips a test that needs a batch file where there are none
// (memfds are Linux's; CI runs on Linux, so these tests run there).
func needBatchFiles(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("batch files are Linux memfds")
	}
}
