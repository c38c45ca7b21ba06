package checkpoint

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/weirhq/weir/record"
)

// Positions are the records of one ClaimPositions or MarkPositionsDone
// call in position mode: their positions, in the order the partition
// delivered them, and which of them arrived one right after another. The
// host implements it over a batch's records without copying them.
type Positions interface {
	// Len is the number of records.
	Len() int
	// At returns the position of record i and whether record i arrived
	// right after record i-1 (ignored for i = 0): no other record of the
	// partition was delivered between them. See Store.ClaimPositions for
	// why that is what lets the store keep runs instead of positions.
	At(i int) (p record.Position, adjacent bool)
}

// CheckPosition returns the error PositionKey would for p, without making
// a key: a negative Kafka offset, or a Kinesis sequence number that is not
// decimal or too long, or a sub-sequence number out of range.
func CheckPosition(p record.Position) error {
	if p.Seq == "" {
		if p.Offset < 0 {
			return fmt.Errorf("checkpoint: offset %d is negative", p.Offset)
		}
		return nil
	}
	for i := 0; i < len(p.Seq); i++ {
		if p.Seq[i] < '0' || p.Seq[i] > '9' {
			return fmt.Errorf("checkpoint: sequence number %q is not decimal", p.Seq)
		}
	}
	if p.Offset < 0 || p.Offset >= subSeqLimit {
		return fmt.Errorf("checkpoint: sub-sequence number %d of %s is not in 0..%d", p.Offset, p.Seq, subSeqLimit-1)
	}
	if len(strings.TrimLeft(p.Seq, "0"))+subSeqDigits > 99 {
		return fmt.Errorf("checkpoint: sequence number %q has more than %d digits", p.Seq, 99-subSeqDigits)
	}
	return nil
}

// follows reports whether q may extend a run that ends at p: q comes
// after p in the partition and either no record of it can lie between
// them (contiguous: the next offset, or the next user record of the same
// KPL aggregate) or none was delivered between them (adjacent). Positions
// of different kinds never join.
func follows(p, q record.Position, adjacent bool) bool {
	if (p.Seq == "") != (q.Seq == "") {
		return false
	}
	if p.Seq == "" {
		return q.Offset == p.Offset+1 || (adjacent && q.Offset > p.Offset)
	}
	switch d := compareSeq(q.Seq, p.Seq); {
	case d == 0:
		return q.Offset == p.Offset+1 || (adjacent && q.Offset > p.Offset)
	default:
		return adjacent && d > 0
	}
}

// compareSeq orders two decimal sequence numbers (longer than any integer
// type): by length without leading zeros, then digit by digit.
func compareSeq(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// appendRuns packs ps as runs for the scripts: per run, the encoded first
// and last positions (see encodePosition). A run is records each of which
// follows the one before it (see follows); every position strictly between
// a run's first and last that is a record of the partition is one of the
// run's records. It returns the packed runs and how many there are.
func appendRuns(b []byte, ps Positions) ([]byte, int, error) {
	n := ps.Len()
	var first, last record.Position
	runs := 0
	var err error
	for i := 0; i < n; i++ {
		p, adj := ps.At(i)
		if err := CheckPosition(p); err != nil {
			return nil, 0, fmt.Errorf("record %d: %w", i, err)
		}
		if i > 0 && follows(last, p, adj) {
			last = p
			continue
		}
		if i > 0 {
			if b, err = appendRun(b, first, last); err != nil {
				return nil, 0, err
			}
			runs++
		}
		first, last = p, p
	}
	if n > 0 {
		if b, err = appendRun(b, first, last); err != nil {
			return nil, 0, err
		}
		runs++
	}
	return b, runs, nil
}

func appendRun(b []byte, first, last record.Position) ([]byte, error) {
	b, err := appendPosition(b, first)
	if err != nil {
		return nil, err
	}
	return appendPosition(b, last)
}

// appendKeyRuns packs keys as runs: keys made by KeyOf carry no word on
// what arrived between them, so only keys whose positions are consecutive
// numbers (consecutive Kafka offsets) join a run; no position lies between
// them.
func appendKeyRuns(b []byte, keys []Key) []byte {
	for i := 0; i < len(keys); {
		j := i
		for j+1 < len(keys) && nextEnc(keys[j].pos, keys[j+1].pos) {
			j++
		}
		b = append(append(b, keys[i].pos...), keys[j].pos...)
		i = j + 1
	}
	return b
}

// nextEnc reports whether encoded position b is encoded position a plus
// one. It only looks at positions of up to 18 digits (Kafka offsets).
func nextEnc(a, b string) bool {
	if len(a) > 2+18 || len(b) > 2+18 || len(a) < 3 || len(b) < 3 {
		return false
	}
	x, err := strconv.ParseInt(a[2:], 10, 64)
	if err != nil {
		return false
	}
	y, err := strconv.ParseInt(b[2:], 10, 64)
	return err == nil && y == x+1
}

// doneRanges are the ranges of encoded positions a claim script reported
// done, sorted and merged: lo[i] <= hi[i] < lo[i+1].
type doneRanges struct{ lo, hi []string }

// parseDone reads a claim script's reply: packed pairs of encoded
// positions, each pair a range of done positions.
func parseDone(reply string) (doneRanges, error) {
	var r doneRanges
	var all []string
	for i := 0; i < len(reply); {
		if i+2 > len(reply) {
			return r, fmt.Errorf("the claim script answered a damaged range list %q", reply)
		}
		l, err := strconv.Atoi(reply[i : i+2])
		if err != nil || i+2+l > len(reply) {
			return r, fmt.Errorf("the claim script answered a damaged range list %q", reply)
		}
		all = append(all, reply[i:i+2+l])
		i += 2 + l
	}
	if len(all)%2 != 0 {
		return r, fmt.Errorf("the claim script answered an odd number of range ends (%d)", len(all))
	}
	type span struct{ lo, hi string }
	spans := make([]span, 0, len(all)/2)
	for i := 0; i < len(all); i += 2 {
		spans = append(spans, span{all[i], all[i+1]})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for _, s := range spans {
		if k := len(r.hi) - 1; k >= 0 && s.lo <= r.hi[k] {
			r.hi[k] = max(r.hi[k], s.hi)
			continue
		}
		r.lo, r.hi = append(r.lo, s.lo), append(r.hi, s.hi)
	}
	return r, nil
}

// has reports whether the encoded position e is in a range. Encoded
// positions compare as numbers when compared as strings.
func (r doneRanges) has(e []byte) bool {
	// the first range whose hi is >= e
	i := sort.Search(len(r.hi), func(i int) bool { return compareEnc(e, r.hi[i]) <= 0 })
	return i < len(r.hi) && compareEnc(e, r.lo[i]) >= 0
}

// compareEnc compares an encoded position with another, byte by byte.
func compareEnc(a []byte, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return len(a) - len(b)
}
