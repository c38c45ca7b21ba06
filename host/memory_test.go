package host

import (
	"testing"

	"github.com/weirhq/weir/host/config"
)

func TestFetchSizes(t *testing.T) {
	for _, c := range []struct {
		budget         int64
		fetch, perPart int32
	}{
		{1 << 20, 512 << 10, 64 << 10},  // the 512 KiB floor of a fetch
		{64 << 20, 512 << 10, 64 << 10}, // the default budget
		{256 << 20, 2 << 20, 256 << 10}, // an eighth of the fetch
		{1 << 30, 8 << 20, 1 << 20},     // franz-go's default per partition
		{64 << 30, 50 << 20, 1 << 20},   // both at their ceilings
	} {
		pc := &config.Pipeline{MaxInflightBytes: c.budget}
		if got := fetchMaxBytes(pc); got != c.fetch {
			t.Errorf("budget %d: fetchMaxBytes = %d, want %d", c.budget, got, c.fetch)
		}
		if got := fetchMaxPartitionBytes(pc); got != c.perPart {
			t.Errorf("budget %d: fetchMaxPartitionBytes = %d, want %d", c.budget, got, c.perPart)
		}
	}
}
