package loadtest

import (
	"math/bits"
	"time"
)

// histSubBits is the number of mantissa bits a Histogram keeps per power of
// two: 2^6 = 64 sub-buckets, so a recorded value is off by less than 1.6%.
const histSubBits = 6

// Histogram counts durations (kept in microseconds) in log-linear buckets,
// in a fixed 32 KiB, whatever the count. The zero value is ready to use; it
// is not safe for concurrent use.
type Histogram struct {
	counts [64 << histSubBits]uint64
	n      uint64
	max    int64
	sum    int64
}

func histIndex(us uint64) int {
	if us < 1<<histSubBits {
		return int(us)
	}
	exp := bits.Len64(us) - histSubBits // >= 1
	return exp<<histSubBits | int(us>>(exp-1))&(1<<histSubBits-1)
}

// histValue is the largest value of bucket i (an upper bound).
func histValue(i int) int64 {
	if i < 1<<histSubBits {
		return int64(i)
	}
	exp := i >> histSubBits
	mant := uint64(i&(1<<histSubBits-1)) | 1<<histSubBits
	return int64((mant+1)<<(exp-1) - 1)
}

// Record counts d (negative durations count as 0).
func (h *Histogram) Record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[histIndex(uint64(us))]++
	h.n++
	h.sum += us
	h.max = max(h.max, us)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) * time.Microsecond }

// Mean is the mean recorded value.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum/int64(h.n)) * time.Microsecond
}

// Quantile returns the value below or at which a fraction q of the values
// lie (within 1.6%, never above Max). 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return time.Duration(min(histValue(i), h.max)) * time.Microsecond
		}
	}
	return h.Max()
}
