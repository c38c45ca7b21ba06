package harness

import (
	"slices"
	"testing"
)

func TestSelectMeasurements(t *testing.T) {
	all := []string{MeasureRaw, MeasureNoop, MeasureNoopKey, MeasureIdempote}
	for _, c := range []struct {
		only []string
		want []string
	}{
		{nil, all},
		{[]string{"redis"}, []string{MeasureRaw, MeasureIdempote}},
		// the limit always runs, and the order is the bench's, not the flag's
		{[]string{"redis", "partition"}, []string{MeasureRaw, MeasureNoop, MeasureIdempote}},
		{[]string{MeasureNoopKey}, []string{MeasureRaw, MeasureNoopKey}},
	} {
		got, err := selectMeasurements(c.only)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("selectMeasurements(%q) = %q, %v; want %q", c.only, got, err, c.want)
		}
	}
	if _, err := selectMeasurements([]string{"fast"}); err == nil {
		t.Error("an unknown measurement was accepted")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{1, 2, 9}, 2}, {[]float64{1, 2, 4, 9}, 3}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}
