package sources

import (
	"testing"

	"github.com/weirhq/weir/record"
)

func TestRecordPoolSizesAndClears(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 500, 1000, 1024, 1025, 1 << maxPooledClass, 1<<maxPooledClass + 1} {
		recs := GetRecords(n)
		if len(recs) != 0 || cap(recs) < n {
			t.Fatalf("GetRecords(%d): len %d cap %d", n, len(recs), cap(recs))
		}
	}
	recs := GetRecords(100)
	recs = append(recs, record.Record{Key: []byte("k"), Value: []byte("v")})
	PutRecords(recs)
	// Whatever comes back next, from the pool or new, holds no old record.
	again := GetRecords(100)[:100]
	for i, r := range again {
		if r.Key != nil || r.Value != nil {
			t.Fatalf("record %d of a pooled slice kept %q/%q", i, r.Key, r.Value)
		}
	}
	PutRecords(make([]record.Record, 3)) // not a size class: dropped, no panic
}
