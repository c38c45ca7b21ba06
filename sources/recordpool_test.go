package sources

import (
	"runtime"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

func TestRecordPoolSizes(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 500, 1000, 1024, 1025, 1 << maxPooledClass, 1<<maxPooledClass + 1} {
		recs := GetRecords(n)
		if len(recs) != 0 || cap(recs) < n {
			t.Fatalf("GetRecords(%d): len %d cap %d", n, len(recs), cap(recs))
		}
	}
	recs := GetRecords(100)
	recs = append(recs, record.Record{Key: []byte("k"), Value: []byte("v")})
	PutRecords(recs)
	// Whatever comes back next, from the pool or new, is empty.
	if again := GetRecords(100); len(again) != 0 || cap(again) < 100 {
		t.Fatalf("GetRecords(100) after a put: len %d cap %d", len(again), cap(again))
	}
	PutRecords(make([]record.Record, 3)) // not a size class: dropped, no panic
}

// A record slice's buffer goes back with it, and one dropped without
// PutRecords does not stay registered once collected.
func TestBytesGoBackWithRecords(t *testing.T) {
	entries := func() int {
		bytesMu.Lock()
		defer bytesMu.Unlock()
		return len(bytesOf)
	}
	base := entries()
	recs := GetRecords(10)
	buf := GetBytes(recs, 100)
	if len(buf) != 0 || cap(buf) < 100 {
		t.Fatalf("GetBytes(100): len %d cap %d", len(buf), cap(buf))
	}
	buf = append(buf, "key"...)
	recs = append(recs, record.Record{Key: buf[0:3:3]})
	if got := entries(); got != base+1 {
		t.Fatalf("%d buffers registered, want %d", got, base+1)
	}
	PutRecords(recs)
	if got := entries(); got != base {
		t.Fatalf("%d buffers registered after PutRecords, want %d", got, base)
	}

	dropped := GetRecords(3) // never given back
	GetBytes(dropped, 10)
	dropped = nil
	deadline := time.Now().Add(10 * time.Second)
	for entries() != base {
		if time.Now().After(deadline) {
			t.Fatal("the buffer of a collected record slice is still registered")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
