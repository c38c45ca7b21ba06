package sources

import (
	"math/bits"
	"runtime"
	"sync"
	"unsafe"

	"github.com/weirhq/weir/record"
)

// maxPooledClass is the largest size class of pooled record slices: 1<<17
// records. A larger delivery gets a slice of its own.
const maxPooledClass = 17

// recordSlices pools record slices by size class: class c holds slices of
// capacity 1<<c.
var recordSlices [maxPooledClass + 1]sync.Pool

// GetRecords returns an empty slice with room for n records. A source
// builds the slices it delivers with it: the host gives each back
// (PutRecords) once every record of it is complete, so that deliveries
// reuse memory instead of allocating, and zeroing, a slice of records each.
// Past its length the slice holds old records: build it with append, or
// overwrite each record taken.
func GetRecords(n int) []record.Record {
	c := sizeClass(n)
	if c > maxPooledClass {
		return newRecords(n)
	}
	if p, ok := recordSlices[c].Get().(*[]record.Record); ok {
		return (*p)[:0]
	}
	return newRecords(1 << c)
}

// newRecords makes a record slice of capacity n. Should it ever be dropped
// without PutRecords, its buffer (GetBytes) is forgotten when it is
// collected.
func newRecords(n int) []record.Record {
	recs := make([]record.Record, 0, n)
	first := unsafe.SliceData(recs)
	runtime.AddCleanup(first, forgetBytes, uintptr(unsafe.Pointer(first)))
	return recs
}

// PutRecords gives recs back to the pool GetRecords draws from, with its
// buffer (GetBytes) if it has one. Nothing may use recs, a pointer into
// it, or its buffer afterwards. A slice GetRecords did not make is pooled too when its
// capacity is a size class, and dropped otherwise.
func PutRecords(recs []record.Record) {
	if cap(recs) > 0 {
		putBytes(uintptr(unsafe.Pointer(unsafe.SliceData(recs))))
	}
	c := sizeClass(cap(recs))
	if c > maxPooledClass || cap(recs) != 1<<c {
		return
	}
	// Not cleared: a slice of a thousand records is 150 KB of pointers,
	// which clearing makes the garbage collector's write barriers visit
	// while it runs. Users build slices with append, overwriting each
	// record, and what the stale records point to is memory of the same
	// pools.
	recs = recs[:0]
	recordSlices[c].Put(&recs)
}

// sizeClass is the smallest c with 1<<c >= n.
func sizeClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// maxBytesClass is the largest size class of pooled byte buffers: 1<<24
// bytes. A larger buffer is allocated, and dropped once given back.
const maxBytesClass = 24

var (
	// byteBufs pools the buffers of GetBytes by size class: class c holds
	// capacity 1<<c.
	byteBufs [maxBytesClass + 1]sync.Pool // of *[]byte
	// bytesMu guards bytesOf, the buffer of each record slice given one,
	// by the address of the slice's first element. An address, not a
	// pointer, so that the map does not keep the slice alive: a slice
	// dropped without PutRecords has its entry removed when collected
	// (forgetBytes); its buffer is then left to the garbage collector.
	bytesMu sync.Mutex
	bytesOf = map[uintptr][]byte{}
)

// GetBytes returns an empty buffer with room for n bytes, for a source to
// copy the keys, values and header values of recs into: the bytes go back
// to a pool with recs (PutRecords), so that a steady stream of records
// reuses memory instead of allocating it. recs comes from GetRecords and
// has no buffer yet; only records of recs may point into the buffer, and
// nothing may use it once recs is given back.
func GetBytes(recs []record.Record, n int) []byte {
	var buf []byte
	if c := sizeClass(n); c > maxBytesClass {
		buf = make([]byte, 0, n)
	} else if p, ok := byteBufs[c].Get().(*[]byte); ok {
		buf = (*p)[:0]
	} else {
		buf = make([]byte, 0, 1<<c)
	}
	bytesMu.Lock()
	bytesOf[uintptr(unsafe.Pointer(unsafe.SliceData(recs[:1])))] = buf
	bytesMu.Unlock()
	return buf
}

// ReleaseBytes gives back the buffer of recs (GetBytes) before recs itself,
// for a holder of recs that has pointed every record elsewhere: the next
// GetBytes may hand the buffer out again at once. PutRecords then gives
// back recs alone.
func ReleaseBytes(recs []record.Record) {
	if cap(recs) > 0 {
		putBytes(uintptr(unsafe.Pointer(unsafe.SliceData(recs))))
	}
}

// putBytes gives back the buffer of the record slice whose first element is
// at first, if it has one.
func putBytes(first uintptr) {
	bytesMu.Lock()
	buf, ok := bytesOf[first]
	if ok {
		delete(bytesOf, first)
	}
	bytesMu.Unlock()
	if !ok {
		return
	}
	if c := sizeClass(cap(buf)); c <= maxBytesClass && cap(buf) == 1<<c {
		buf = buf[:0]
		byteBufs[c].Put(&buf)
	}
}

// forgetBytes drops the entry of a collected record slice. The address may
// since have been given to a new slice, whose entry this then drops: that
// buffer is left to the garbage collector instead of pooled, which is
// harmless.
func forgetBytes(first uintptr) {
	bytesMu.Lock()
	delete(bytesOf, first)
	bytesMu.Unlock()
}
