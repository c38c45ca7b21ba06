package host

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/weirhq/weir/host/checkpoint"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

func newStore(t *testing.T, addr, pipeline string) *checkpoint.Store {
	t.Helper()
	s, err := checkpoint.New(context.Background(), checkpoint.Config{Addr: addr, Pipeline: pipeline,
		KeyPrefix: "weir-test:", Mode: checkpoint.ModePosition})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Fencing: a host whose partition was reassigned (a zombie that has not
// noticed yet) cannot mark or checkpoint it: its writes carry the stale
// generation, Redis refuses them, and the host drops the lane without
// committing. The new owner carries on from the checkpoint.
func TestFencedOwnerCannotMoveItsCheckpoint(t *testing.T) {
	addr := testenv.Redis(t)
	name := "fence-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := testPipelineConfig()
	cfg.Name = name
	echoHandler := handlerFunc(func(ctx context.Context, b *plugins.Batch) (*plugins.Result, error) { return echo(b), nil })
	zombie := newHarnessWithMarks(t, cfg, echoHandler, false, newStore(t, addr, name))
	owner := newHarnessWithMarks(t, cfg, echoHandler, false, newStore(t, addr, name))
	p := record.KafkaPartition("in", 0)

	zombie.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 1}})
	zombie.pl.Deliver(p, records(p, 0, 100, 10))
	zombie.waitCompleted(100)
	waitUntil(t, func() bool { c, _ := zombie.src.lastCommit(p); return c == 99 }, "the first owner's commit")

	// The partition moves at generation 2; the zombie still has its lane.
	owner.pl.Assign(context.Background(), []sources.Claim{{Partition: p, Generation: 2}})
	check := newStore(t, addr, name)
	waitUntil(t, func() bool { _, gen, _, _ := check.Load(context.Background(), p); return gen == 2 }, "the new owner's fence")

	zombie.pl.Deliver(p, records(p, 100, 100, 10))
	waitUntil(t, func() bool {
		zombie.pl.mu.Lock()
		defer zombie.pl.mu.Unlock()
		return zombie.pl.lanes[p] == nil
	}, "the zombie to drop its lane")
	if c, _ := zombie.src.lastCommit(p); c != 99 {
		t.Fatalf("the zombie committed %d after it was fenced", c)
	}
	if n := len(zombie.out.all()); n != 100 {
		t.Fatalf("the zombie wrote %d outputs; records after the fence must not be handled", n)
	}
	if pos, gen, _, _ := check.Load(context.Background(), p); pos.Offset != 99 || gen != 2 {
		t.Fatalf("checkpoint = %d at generation %d, want 99 at 2", pos.Offset, gen)
	}

	// The new owner goes on from the checkpoint; records the zombie
	// completed are dropped as done if they come again.
	owner.pl.Deliver(p, records(p, 90, 110, 10))
	owner.waitCompleted(110)
	owner.pl.Revoke(context.Background(), []record.Partition{p})
	if c, _ := owner.src.lastCommit(p); c != 199 {
		t.Fatalf("the new owner's commit = %d", c)
	}
	if n := len(owner.out.all()); n != 100 {
		t.Fatalf("the new owner wrote %d outputs, want 100 (offsets 90-99 were done)", n)
	}
	if d := owner.pl.stats.Duplicates.Load(); d != 10 {
		t.Fatalf("duplicates dropped = %d, want 10", d)
	}
	if pos, gen, _, _ := check.Load(context.Background(), p); pos.Offset != 199 || gen != 2 {
		t.Fatalf("checkpoint = %d at generation %d, want 199 at 2", pos.Offset, gen)
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
