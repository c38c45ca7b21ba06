package kafka

import (
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
	records sync.Pool // of *[]kgo.Record
	bytes   sync.Pool // of *[]byte
}

var (
	_ kgo.PoolRecords         = (*fetchPools)(nil)
	_ kgo.PoolDecompressBytes = (*fetchPools)(nil)
)

// GetRecords implements kgo.PoolRecords.
func (p *fetchPools) GetRecords(n int) []kgo.Record {
	if s, ok := p.records.Get().(*[]kgo.Record); ok && cap(*s) >= n {
		return (*s)[:0]
	}
	return make([]kgo.Record, 0, n)
}

// PutRecords implements kgo.PoolRecords. Each record was zeroed by its
// Recycle.
func (p *fetchPools) PutRecords(s []kgo.Record) {
	p.records.Put(&s)
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
