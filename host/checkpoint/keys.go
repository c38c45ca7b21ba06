package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/weirhq/weir/record"
)

// Key is a record's idempotency key, made by Store.KeyOf (or PositionKey
// under ModePosition). It is a small comparable value; the zero Key is the
// key of every record under ModeOff.
type Key struct {
	// pos is the record's encoded position (see encodePosition); set in
	// ModePosition and ModeTemplate.
	pos string
	// mark is the Redis key of the record's mark in ModeTemplate.
	mark string
}

// PositionKey returns the ModePosition key of the record at p: a Kafka
// offset (not negative) or a Kinesis sequence number (decimal digits).
func PositionKey(p record.Position) (Key, error) {
	enc, err := encodePosition(p)
	if err != nil {
		return Key{}, err
	}
	return Key{pos: enc}, nil
}

// String returns the key for logs: the Redis key of a template mark, or the
// decimal position.
func (k Key) String() string {
	if k.mark != "" {
		return k.mark
	}
	if len(k.pos) > 2 {
		return k.pos[2:]
	}
	return ""
}

// encodePosition writes a position as two decimal digits of length
// followed by the number's decimal digits without leading zeros: offset 42
// is "0242". Byte order of encoded positions is numeric order, for Kafka
// offsets (int64) and for Kinesis sequence numbers alike (decimal strings
// longer than any integer type), so Redis compares them as strings (sorted
// set lexicographic ranges) and Lua with plain string comparison.
func encodePosition(p record.Position) (string, error) {
	var buf [2 + 20]byte // the length, and an int64's digits
	b, err := appendPosition(buf[:0], p)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendPosition appends p's encoded form (see encodePosition) to b.
func appendPosition(b []byte, p record.Position) ([]byte, error) {
	if err := CheckPosition(p); err != nil {
		return nil, err
	}
	start := len(b)
	b = append(b, '0', '0')
	if p.Seq != "" {
		digits := strings.TrimLeft(p.Seq, "0")
		if digits == "" {
			digits = "0"
		}
		b = append(b, digits...)
		b = appendPadded(b, p.Offset, subSeqDigits)
	} else {
		b = strconv.AppendInt(b, p.Offset, 10)
	}
	n := len(b) - start - 2
	b[start], b[start+1] = '0'+byte(n/10), '0'+byte(n%10)
	return b, nil
}

// A Kinesis position is encoded as one number: the sequence number
// followed by the sub-sequence number (the index of a KPL user record in
// its aggregate, 0 for plain records) in subSeqDigits digits, so that the
// user records of one aggregate get keys of their own and byte order stays
// (sequence, sub-sequence) order.
const (
	subSeqDigits = 6
	subSeqLimit  = 1_000_000 // an aggregate is at most 1 MB
)

func appendPadded(b []byte, n int64, width int) []byte {
	s := strconv.FormatInt(n, 10)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// appendPositions appends the encoded positions of keys to b: the packed,
// self-delimiting form the scripts read with each().
func appendPositions(b []byte, keys []Key) []byte {
	for _, k := range keys {
		b = append(b, k.pos...)
	}
	return b
}

// checkpointValue is the stored form of a checkpoint: "o:" and an offset,
// or "s:" and a sequence number (and "/SUB" for a KPL user record past the
// first of its aggregate), so Load returns the Position it was given.
func checkpointValue(p record.Position) string {
	if p.Seq != "" {
		return "s:" + p.String()
	}
	return "o:" + strconv.FormatInt(p.Offset, 10)
}

func parseCheckpointValue(v string) (record.Position, error) {
	switch {
	case strings.HasPrefix(v, "s:"):
		seq, sub, found := strings.Cut(v[2:], "/")
		if !found {
			return record.Position{Seq: seq}, nil
		}
		n, err := strconv.ParseInt(sub, 10, 64)
		if err != nil {
			return record.Position{}, fmt.Errorf("checkpoint: stored checkpoint %q has a bad sub-sequence number", v)
		}
		return record.Position{Seq: seq, Offset: n}, nil
	case strings.HasPrefix(v, "o:"):
		n, err := strconv.ParseInt(v[2:], 10, 64)
		if err != nil {
			return record.Position{}, fmt.Errorf("checkpoint: stored checkpoint %q is not an offset", v)
		}
		return record.Position{Offset: n}, nil
	}
	return record.Position{}, fmt.Errorf("checkpoint: stored checkpoint %q is not one this package wrote", v)
}

// rawMarkMax is the longest template value kept as it is in a mark's Redis
// key; longer ones, and ones with bytes outside printable ASCII, are hashed.
const rawMarkMax = 64

// markKey returns the Redis key of the mark of template value v: base,
// then "=" and v itself when v is short printable ASCII (readable in
// redis-cli), else "#" and 32 hex digits of its SHA-256. The two prefixes
// keep a raw value from ever equalling a hash. One allocation.
func markKey(base string, v []byte) string {
	raw := len(v) <= rawMarkMax
	for i := 0; raw && i < len(v); i++ {
		raw = v[i] > ' ' && v[i] <= '~'
	}
	var b strings.Builder
	b.Grow(len(base) + 1 + max(len(v), 32))
	b.WriteString(base)
	if raw {
		b.WriteByte('=')
		b.Write(v)
	} else {
		sum := sha256.Sum256(v)
		var hx [32]byte
		hex.Encode(hx[:], sum[:16])
		b.WriteByte('#')
		b.Write(hx[:])
	}
	return b.String()
}

// partKeys are the Redis keys of one partition.
type partKeys struct {
	state string // hash: gen, ck, ckm
	wm    string // string: the watermark (ModePosition)
	done  string // sorted set: done positions above the watermark (ModePosition)
}

func (s *Store) partKeys(p record.Partition) partKeys {
	tail := p.Stream + "/" + p.ID
	return partKeys{
		state: s.base + "ck/" + tail,
		wm:    s.base + "wm/" + tail,
		done:  s.base + "done/" + tail,
	}
}
