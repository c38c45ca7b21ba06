package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// ErrNotRunning is returned by Offsets before Run has created the client,
// after it returned, and while the member has not joined its group.
var ErrNotRunning = errors.New("kafka source: not a member of its group yet")

var _ sources.OffsetReporter = (*Source)(nil)

// Offsets implements sources.OffsetReporter: one ListOffsets request per
// partition leader for the ends of the partitions' logs, and one OffsetFetch
// to the group coordinator for the committed offsets. It fails while the
// source is not a member of its group (before the first join, after Run) or
// when either request fails, which is what "not connected" means for
// readiness. Safe for concurrent use with Run.
func (s *Source) Offsets(ctx context.Context, parts []record.Partition) (map[record.Partition]sources.Offsets, error) {
	cl := s.cl.Load()
	if cl == nil || !s.running.Load() {
		return nil, ErrNotRunning
	}
	if member, gen := cl.GroupMetadata(); member == "" || gen < 0 {
		return nil, ErrNotRunning
	}
	adm := kadm.NewClient(cl) // shares cl; closing it would close cl, so it is not closed
	ends, err := adm.ListEndOffsets(ctx, s.cfg.Topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka source: listing end offsets of %v: %w", s.cfg.Topics, err)
	}
	committed, err := adm.FetchOffsets(ctx, s.cfg.Group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka source: fetching the committed offsets of group %q: %w", s.cfg.Group, err)
	}
	out := make(map[record.Partition]sources.Offsets, len(parts))
	for _, p := range parts {
		e, ok := ends.Lookup(p.Stream, p.KafkaID())
		if !ok {
			continue
		}
		o := sources.Offsets{End: e.Offset, Committed: -1}
		if c, ok := committed.Lookup(p.Stream, p.KafkaID()); ok && c.Err == nil && c.At >= 0 {
			o.Committed = c.At
		}
		out[p] = o
	}
	return out, nil
}
