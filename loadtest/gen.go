package loadtest

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Values made by a Generator start with a fixed-width header that the
// Verifier parses back:
//
//	"WL1 " + 16 hex digits of the sequence number + " " +
//	16 hex digits of the producer timestamp (Unix ns) + " "
//
// and are padded with '.' up to the generator's size. A value is never
// shorter than the header (MinValueSize bytes).
const (
	valueMagic = "WL1 "
	// MinValueSize is the length of a generated value's header: values
	// asked to be smaller are this long.
	MinValueSize = len(valueMagic) + 16 + 1 + 16 + 1
)

// Generator makes the records of a load test: record seq has key
// "k<seq mod Keys>" and a value of Size bytes carrying seq and the time it
// was made. A Generator is safe for concurrent use once made.
type Generator struct {
	size int
	keys [][]byte
	pad  []byte
}

// NewGenerator returns a generator of values of size bytes (at least
// MinValueSize) over keys distinct keys (at least 1).
func NewGenerator(size, keys int) *Generator {
	size = max(size, MinValueSize)
	keys = max(keys, 1)
	g := &Generator{size: size, keys: make([][]byte, keys), pad: make([]byte, size-MinValueSize)}
	for i := range g.keys {
		g.keys[i] = []byte("k" + strconv.Itoa(i))
	}
	for i := range g.pad {
		g.pad[i] = '.'
	}
	return g
}

// Size is the length of every value made.
func (g *Generator) Size() int { return g.size }

// Keys is the key cardinality.
func (g *Generator) Keys() int { return len(g.keys) }

// Key returns the key of record seq (shared; do not modify).
func (g *Generator) Key(seq int64) []byte { return g.keys[seq%int64(len(g.keys))] }

// AppendValue appends the value of record seq, made at now, to dst.
func (g *Generator) AppendValue(dst []byte, seq int64, now time.Time) []byte {
	dst = append(dst, valueMagic...)
	dst = appendHex16(dst, uint64(seq))
	dst = append(dst, ' ')
	dst = appendHex16(dst, uint64(now.UnixNano()))
	dst = append(dst, ' ')
	return append(dst, g.pad...)
}

// Record returns record seq made at now, with its timestamp set to now. The
// value is freshly allocated: the producer holds on to it.
func (g *Generator) Record(seq int64, now time.Time) *kgo.Record {
	return &kgo.Record{
		Key:       g.Key(seq),
		Value:     g.AppendValue(make([]byte, 0, g.size), seq, now),
		Timestamp: now,
	}
}

func appendHex16(dst []byte, v uint64) []byte {
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	var h [16]byte
	hex.Encode(h[:], b[:])
	return append(dst, h[:]...)
}

// ErrNotGenerated means a value was not made by a Generator.
var ErrNotGenerated = errors.New("loadtest: value was not made by a generator")

// ParseValue returns the sequence number and producer timestamp (Unix ns)
// carried by a generated value.
func ParseValue(v []byte) (seq int64, producedNs int64, err error) {
	if len(v) < MinValueSize || string(v[:len(valueMagic)]) != valueMagic {
		return 0, 0, ErrNotGenerated
	}
	s, ok1 := parseHex16(v[len(valueMagic) : len(valueMagic)+16])
	t, ok2 := parseHex16(v[len(valueMagic)+17 : len(valueMagic)+33])
	if !ok1 || !ok2 {
		return 0, 0, ErrNotGenerated
	}
	return int64(s), int64(t), nil
}

func parseHex16(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// ProduceGenerated writes records 0..n-1 of g to topic at rate records per
// second (0: as fast as the client allows), counting acknowledged records in
// acked (if not nil), and returns when all are acknowledged. Each record's
// timestamp and value carry the time it was handed to the client.
func ProduceGenerated(ctx context.Context, cl *kgo.Client, topic string, g *Generator, n int, rate float64, acked *atomic.Int64) error {
	return produce(ctx, cl, topic, n, rate, acked, func(i int) *kgo.Record { return g.Record(int64(i), time.Now()) })
}
