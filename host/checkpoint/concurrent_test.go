package checkpoint

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
)

// Six lanes (three processes, two partitions each) receive the same 200
// message ids in batches and race to handle them: each id is handled
// exactly once, and every lane ends up seeing every id done.
func TestConcurrentDuplicatesAreHandledOnce(t *testing.T) {
	addr := testenv.Redis(t)
	cfg := Config{Mode: ModeTemplate, Template: "header:message_id", KeyPrefix: uniquePrefix(), ClaimTTL: time.Minute}
	const ids, batch = 200, 25
	var handled [ids]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	var stores []*Store
	for proc := range 3 {
		s := open(t, addr, cfg)
		stores = append(stores, s)
		for _, part := range []record.Partition{p0, p1} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- lane(s, part, proc, ids, batch, handled[:])
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range handled {
		if n := handled[i].Load(); n != 1 {
			t.Errorf("id %d handled %d times", i, n)
		}
	}
	var dups, busy uint64
	for _, s := range stores {
		dups += s.Stats().Duplicates
		busy += s.Stats().Busy
	}
	// 6 lanes x 200 ids: 200 handled, 1000 dropped as duplicates.
	if dups != 5*ids {
		t.Errorf("duplicates dropped = %d, want %d", dups, 5*ids)
	}
	t.Logf("%d duplicates dropped, %d claims found busy (lanes racing)", dups, busy)
}

// lane plays a host lane: claim a batch, handle what it claimed, mark it
// done, and ask again about the busy ones until none is left.
func lane(s *Store, part record.Partition, proc, ids, batch int, handled []atomic.Int32) error {
	ctx := context.Background()
	var pending []int
	for i := range ids {
		pending = append(pending, (i*7+proc*13)%ids) // each lane in its own order
	}
	off := int64(proc * 1_000_000)
	deadline := time.Now().Add(30 * time.Second)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("lane %d/%s: %d ids still busy after 30s", proc, part, len(pending))
		}
		n := min(batch, len(pending))
		recs := make([]record.Record, n)
		for j, id := range pending[:n] {
			recs[j] = msg(part, off, fmt.Sprintf("id-%d", id))
			off++
		}
		keys := make([]Key, n)
		for j := range recs {
			k, err := s.KeyOf(&recs[j])
			if err != nil {
				return err
			}
			keys[j] = k
		}
		c, err := s.Claim(ctx, part, 1, keys)
		if err != nil {
			return err
		}
		var mine []Key
		var busy []int
		for j, st := range c.Status {
			switch st {
			case Claimed:
				handled[pending[j]].Add(1) // the side effect
				mine = append(mine, keys[j])
			case Busy:
				busy = append(busy, pending[j])
			}
		}
		if err := s.MarkDone(ctx, part, 1, mine); err != nil {
			return err
		}
		pending = append(busy, pending[n:]...)
		if len(busy) == n {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}
