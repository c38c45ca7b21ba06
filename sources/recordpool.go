package sources

import (
	"math/bits"
	"sync"

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
func GetRecords(n int) []record.Record {
	c := sizeClass(n)
	if c > maxPooledClass {
		return make([]record.Record, 0, n)
	}
	if p, ok := recordSlices[c].Get().(*[]record.Record); ok {
		return (*p)[:0]
	}
	return make([]record.Record, 0, 1<<c)
}

// PutRecords gives recs back to the pool GetRecords draws from, dropping
// what its records point to. Nothing may use recs, or a pointer into it,
// afterwards. A slice GetRecords did not make is pooled too when its
// capacity is a size class, and dropped otherwise.
func PutRecords(recs []record.Record) {
	c := sizeClass(cap(recs))
	if c > maxPooledClass || cap(recs) != 1<<c {
		return
	}
	recs = recs[:cap(recs)]
	clear(recs)
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
