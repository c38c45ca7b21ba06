package kafka

import (
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchPools lets franz-go decode fetched records into, and decompress
// record batches into, memory recycled from earlier fetches
// (kgo.WithPools). Without them every fetched batch costs a fresh slice of
// kgo.Record (about 200 bytes a record, pointers the garbage collector
// scans) and a fresh decompression buffer, all garbage as soon as deliver
// has copied the records out. deliver recycles each record once converted.
type fetchPools struct {
	// records pools slices by size class: class c holds capacity 1<<c, so
	// that a batch of any size finds one that fits.
	records [maxRecordClass + 1]sync.Pool // of *[]kgo.Record
	bytes   sync.Pool                     // of *[]byte
}

// maxRecordClass is the largest pooled size class of kgo.Record slices
// (1<<17 records in one Kafka record batch).
const maxRecordClass = 17

func recordClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

var (
	_ kgo.PoolRecords         = (*fetchPools)(nil)
	_ kgo.PoolDecompressBytes = (*fetchPools)(nil)
)

// GetRecords implements kgo.PoolRecords.
func (p *fetchPools) GetRecords(n int) []kgo.Record {
	c := recordClass(n)
	if c > maxRecordClass {
		return make([]kgo.Record, 0, n)
	}
	if s, ok := p.records[c].Get().(*[]kgo.Record); ok {
		return (*s)[:0]
	}
	return make([]kgo.Record, 0, 1<<c)
}

// PutRecords implements kgo.PoolRecords. Each record was zeroed by its
// Recycle.
func (p *fetchPools) PutRecords(s []kgo.Record) {
	if c := recordClass(cap(s)); c <= maxRecordClass && cap(s) == 1<<c {
		p.records[c].Put(&s)
	}
}

// GetDecompressBytes implements kgo.PoolDecompressBytes: a buffer of at
// least four times the compressed size (franz-go grows it when short, and
// puts the grown one back).
func (p *fetchPools) GetDecompressBytes(compressed []byte, _ kgo.CompressionCodecType) []byte {
	want := 4 * len(compressed)
	if b, ok := p.bytes.Get().(*[]byte); ok && cap(*b) >= want {
		return (*b)[:0]
	}
	return make([]byte, 0, want)
}

// PutDecompressBytes implements kgo.PoolDecompressBytes; franz-go zeroed the
// bytes used.
func (p *fetchPools) PutDecompressBytes(b []byte) {
	p.bytes.Put(&b)
}
