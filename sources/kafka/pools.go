package kafka

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchPools lets franz-go decode fetched records into, and decompress
// record batches into, memory recycled from earlier fetches
// (kgo.WithPools). Without them every fetched batch costs a fresh slice of
// kgo.Record (160 bytes a record, pointers the garbage collector scans)
// and a fresh decompression buffer, all garbage as soon as deliver has
// copied the records out. deliver recycles each record once converted.
type fetchPools struct {
	// records pools slices by size class: class c holds capacity 1<<c, so
	// that a batch of any size finds one that fits.
	records [maxClass + 1]sync.Pool // of *[]kgo.Record
	// bytes pools decompression buffers the same way, by capacity.
	bytes [maxClass + 1]sync.Pool // of *[]byte
}

// maxClass is the largest pooled size class: 1<<27 records in one Kafka
// record batch, or 128 MiB in one decompressed batch (more than franz-go
// accepts by default). Larger ones are allocated, and dropped after use.
const maxClass = 27

// classUp is the smallest class c with 1<<c >= n: where a slice of n
// elements is taken from.
func classUp(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// classDown is the largest class c with 1<<c <= n (n > 0): where a slice of
// capacity n goes back, so that whatever a class holds fits its size.
func classDown(n int) int { return bits.Len(uint(n)) - 1 }

var (
	_ kgo.PoolRecords         = (*fetchPools)(nil)
	_ kgo.PoolDecompressBytes = (*fetchPools)(nil)
)

// GetRecords implements kgo.PoolRecords.
func (p *fetchPools) GetRecords(n int) []kgo.Record {
	c := classUp(n)
	if c > maxClass {
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
	if cap(s) == 0 {
		return
	}
	if c := classDown(cap(s)); c <= maxClass {
		s = s[:0]
		p.records[c].Put(&s)
	}
}

// GetDecompressBytes implements kgo.PoolDecompressBytes: a buffer the batch
// decompresses into without growing it. A snappy block (franz-go's default
// codec) states its decompressed length up front; other codecs get four
// times the compressed size, and franz-go grows the buffer when that is
// short, and puts the grown one back.
func (p *fetchPools) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	want := decompressedSize(compressed, codec)
	c := classUp(want)
	if c > maxClass {
		return make([]byte, 0, want)
	}
	if b, ok := p.bytes[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1<<c)
}

// PutDecompressBytes implements kgo.PoolDecompressBytes; franz-go zeroed
// the buffer.
func (p *fetchPools) PutDecompressBytes(b []byte) {
	if cap(b) == 0 {
		return
	}
	if c := classDown(cap(b)); c <= maxClass {
		b = b[:0]
		p.bytes[c].Put(&b)
	}
}

// xerialPrefix starts snappy data in the xerial framing (old Java
// producers), which does not state the total length up front.
var xerialPrefix = []byte{130, 83, 78, 65, 80, 80, 89, 0}

// decompressedSize is the size of a buffer to decompress compressed into:
// exact for a snappy block (its header states it; franz-go checks it
// against its own bound before decoding), a guess of four times the
// compressed size otherwise.
func decompressedSize(compressed []byte, codec kgo.CompressionCodecType) int {
	guess := 4 * len(compressed)
	if codec != kgo.CodecSnappy || bytes.HasPrefix(compressed, xerialPrefix) {
		return guess
	}
	if n, k := binary.Uvarint(compressed); k > 0 && n <= 1<<maxClass {
		return int(n)
	}
	return guess
}
