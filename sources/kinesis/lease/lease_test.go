package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/internal/testenv"
)

// stores returns lease stores of the named workers on a redis-server of
// the test's own (the scripts use TIME; miniredis's clock is not Redis's).
func stores(t *testing.T, ttl time.Duration, workers ...string) []*Store {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	var out []*Store
	for _, w := range workers {
		s, err := New(Config{Client: rdb, Base: "t:{p}/", Stream: "s", Worker: w, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestNewNamesEveryBadOption(t *testing.T) {
	_, err := New(Config{TTL: time.Millisecond})
	for _, want := range []string{"Client", "Base", "Stream", "Worker", "TTL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestInitGivesTheFirstShardsTheStartAndLaterOnesTheirBeginning(t *testing.T) {
	ctx := context.Background()
	s := stores(t, time.Second, "a")[0]
	if err := s.Init(ctx, "at:1000", []string{"s0", "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx, "at:1000", []string{"s0", "s1", "s2"}); err != nil {
		t.Fatal(err)
	}
	for sh, want := range map[string]string{"s0": "at:1000", "s1": "at:1000", "s2": "trim_horizon"} {
		l, ok, err := s.Acquire(ctx, sh)
		if err != nil || !ok || l.Start != want {
			t.Errorf("%s: %+v %v %v, want start %s", sh, l, ok, err, want)
		}
	}
}

// "latest" becomes the time of the first acquire, for every later owner.
func TestLatestIsFixedAtTheFirstAcquire(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, time.Second, "a", "b")
	a, b := ss[0], ss[1]
	if err := a.Init(ctx, "latest", []string{"s0"}); err != nil {
		t.Fatal(err)
	}
	la, ok, err := a.Acquire(ctx, "s0")
	if err != nil || !ok || !la.Latest || len(la.Start) < 4 || la.Start[:3] != "at:" {
		t.Fatalf("first acquire: %+v %v %v", la, ok, err)
	}
	if err := a.Release(ctx, "s0", la.Epoch, ""); err != nil {
		t.Fatal(err)
	}
	lb, ok, err := b.Acquire(ctx, "s0")
	if err != nil || !ok || lb.Latest || lb.Start != la.Start {
		t.Fatalf("second acquire: %+v %v %v, want start %s and not latest", lb, ok, err, la.Start)
	}
}

// A handover: b asks, a releases reserved for b; c cannot take the lease
// meanwhile, b can, with a higher epoch and a's checkpoint.
func TestHandoverReservesTheLeaseForTheAsker(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 2*time.Second, "a", "b", "c")
	a, b, c := ss[0], ss[1], ss[2]
	if err := a.Init(ctx, "trim_horizon", []string{"s0"}); err != nil {
		t.Fatal(err)
	}
	la, _, _ := a.Acquire(ctx, "s0")
	if ok, err := b.AskHandover(ctx, "s0", "a"); err != nil || !ok {
		t.Fatalf("ask: %v %v", ok, err)
	}
	if ok, _ := c.AskHandover(ctx, "s0", "a"); ok {
		t.Fatal("a second request replaced the first")
	}
	st, err := c.States(ctx, []string{"s0"})
	if err != nil || st[0].Owner != "a" || st[0].Handover != "b" {
		t.Fatalf("states %+v %v", st, err)
	}
	to, err := a.Renew(ctx, "s0", la.Epoch)
	if err != nil || to != "b" {
		t.Fatalf("renew: %q %v, want the request of b", to, err)
	}
	if err := a.Checkpoint(ctx, "s0", la.Epoch, Checkpoint{Seq: "42", Sub: 3}, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, "s0", la.Epoch, "b"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.Acquire(ctx, "s0"); ok {
		t.Fatal("c took a lease reserved for b")
	}
	lb, ok, err := b.Acquire(ctx, "s0")
	if err != nil || !ok || lb.Epoch != la.Epoch+1 || lb.Checkpoint != (Checkpoint{Seq: "42", Sub: 3}) {
		t.Fatalf("b acquire: %+v %v %v", lb, ok, err)
	}
	if err := a.Release(ctx, "s0", la.Epoch, ""); !errors.Is(err, ErrLost) {
		t.Fatalf("old owner's release: %v, want ErrLost", err)
	}
}

// An expired lease goes to whoever asks; the old owner is fenced out of
// renewing and checkpointing it; an ended lease is never acquired again.
func TestExpiryFencingAndEnd(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 300*time.Millisecond, "a", "b")
	a, b := ss[0], ss[1]
	_ = a.Init(ctx, "trim_horizon", []string{"s0"})
	la, _, _ := a.Acquire(ctx, "s0")
	if _, ok, _ := b.Acquire(ctx, "s0"); ok {
		t.Fatal("b took a live lease")
	}
	// Expired but not taken: still a's to renew.
	time.Sleep(400 * time.Millisecond)
	if _, err := a.Renew(ctx, "s0", la.Epoch); err != nil {
		t.Fatalf("renewing an expired lease nobody took: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	lb, ok, err := b.Acquire(ctx, "s0")
	if err != nil || !ok {
		t.Fatalf("b acquire after expiry: %v %v", ok, err)
	}
	if _, err := a.Renew(ctx, "s0", la.Epoch); !errors.Is(err, ErrLost) {
		t.Fatalf("zombie renew: %v", err)
	}
	if err := a.Checkpoint(ctx, "s0", la.Epoch, Checkpoint{Seq: "9"}, true); !errors.Is(err, ErrLost) {
		t.Fatalf("zombie checkpoint: %v", err)
	}
	if err := b.Checkpoint(ctx, "s0", lb.Epoch, Checkpoint{Seq: "10"}, true); err != nil {
		t.Fatal(err)
	}
	_ = b.Release(ctx, "s0", lb.Epoch, "")
	if _, ok, _ := a.Acquire(ctx, "s0"); ok {
		t.Fatal("an ended lease was acquired")
	}
	cp, ended, err := a.Load(ctx, "s0")
	if err != nil || !ended || cp.Seq != "10" {
		t.Fatalf("load: %+v %v %v", cp, ended, err)
	}
}

func TestHeartbeatListsLiveWorkers(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 300*time.Millisecond, "a", "b")
	if _, err := ss[0].Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	ws, err := ss[1].Heartbeat(ctx)
	if err != nil || len(ws) != 2 {
		t.Fatalf("workers %v %v", ws, err)
	}
	time.Sleep(400 * time.Millisecond)
	if ws, _ = ss[1].Heartbeat(ctx); len(ws) != 1 || ws[0] != "b" {
		t.Fatalf("after a stopped heartbeating: %v", ws)
	}
	_ = ss[1].Deregister(ctx)
	if ws, _ = ss[0].Heartbeat(ctx); len(ws) != 1 || ws[0] != "a" {
		t.Fatalf("after b deregistered: %v", ws)
	}
}
