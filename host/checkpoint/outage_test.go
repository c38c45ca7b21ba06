package checkpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
)

// every call of a Store, for checking them all against an outage.
func everyCall(s *Store, keys []Key) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"Claim": func(ctx context.Context) error {
			_, err := s.Claim(ctx, p0, 1, keys)
			return err
		},
		"MarkDone": func(ctx context.Context) error { return s.MarkDone(ctx, p0, 1, keys) },
		"Release":  func(ctx context.Context) error { return s.Release(ctx, p0, 1, keys) },
		"Commit":   func(ctx context.Context) error { return s.Commit(ctx, p0, 1, record.Position{Offset: 9}) },
		"Fence":    func(ctx context.Context) error { return s.Fence(ctx, p0, 1) },
		"Load": func(ctx context.Context) error {
			_, _, _, err := s.Load(ctx, p0)
			return err
		},
		"Ping": func(ctx context.Context) error { return s.Ping(ctx) },
	}
}

// Redis stopped mid-run: every call fails within the caller's deadline
// with an error the host's breaker recognises; once Redis is back the next
// call succeeds and nothing that was marked is lost.
func TestRedisStoppedFailsFastAndRecovers(t *testing.T) {
	srv := testenv.StartRedis(t)
	s := open(t, srv.Addr(), Config{Mode: ModeTemplate, Template: "header:message_id"})
	done := keysOf(t, s, msg(p0, 1, "o-1"), msg(p0, 2, "o-2"))
	if got := claim(t, s, p0, 1, done); got != "CC" {
		t.Fatal(got)
	}
	markDone(t, s, p0, 1, done)
	pending := keysOf(t, s, msg(p0, 3, "o-3"))

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// The outage lasts a while; calls keep failing fast all along.
	for round := 0; round < 3; round++ {
		for name, call := range everyCall(s, pending) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			start := time.Now()
			err := call(ctx)
			took := time.Since(start)
			cancel()
			if !IsUnavailable(err) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s while Redis is stopped = %v; want ErrUnavailable", name, err)
			}
			if took > 2500*time.Millisecond {
				t.Fatalf("%s took %s; want it within the 2s deadline", name, took)
			}
			if name != "Ping" && !strings.Contains(err.Error(), "iot/sensor-readings/0") {
				t.Fatalf("%s: %q does not say what it was doing", name, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := s.Stats().Unavailable; n != 21 {
		t.Fatalf("Stats.Unavailable = %d, want 21", n)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// go-redis probes a server that refused its dials once a second, so
	// calls succeed again within about a second of its return.
	back := time.Now()
	var c Claims
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err = s.Claim(ctx, p0, 1, append(done, pending...))
		cancel()
		if err == nil || time.Since(back) > 3*time.Second {
			break
		}
		if !IsUnavailable(err) {
			t.Fatalf("Claim after Redis is back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Claim 3s after Redis is back: %v", err)
	}
	t.Logf("calls succeed again %s after Redis is back", time.Since(back).Round(time.Millisecond))
	if statuses(c) != "DDC" {
		t.Fatalf("after the restart: Claim = %s; want the marks kept", statuses(c))
	}
	markDone(t, s, p0, 1, pending)
}

// A hung Redis (no answer at all) fails at the caller's deadline.
func TestRedisHungFailsAtTheDeadline(t *testing.T) {
	srv := testenv.StartRedis(t)
	s := open(t, srv.Addr(), Config{})
	keys := offsets(t, 0, 10)
	if got := claim(t, s, p0, 1, keys); got != repeat('C', 10) {
		t.Fatal(got)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	start := time.Now()
	err := s.MarkDone(ctx, p0, 1, keys)
	took := time.Since(start)
	cancel()
	if !IsUnavailable(err) {
		t.Fatalf("MarkDone on a hung Redis = %v; want ErrUnavailable", err)
	}
	if took < 400*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("MarkDone took %s; want about the 500ms deadline", took)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The refused write may or may not have happened; repeating it is safe.
	markDone(t, s, p0, 1, keys)
	if got := claim(t, s, p0, 1, keys); got != repeat('D', 10) {
		t.Fatal(got)
	}
}

func TestNewWithRedisDown(t *testing.T) {
	srv := testenv.StartRedis(t)
	addr := srv.Addr()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := New(ctx, Config{Addr: addr, Pipeline: "iot", Password: "hunter2-secret"})
	if !IsUnavailable(err) || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("New with Redis down = %v; want ErrUnavailable naming %s and no password", err, addr)
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	srv := testenv.StartRedis(t)
	ctx := context.Background()
	if err := raw(t, srv.Addr()).ConfigSet(ctx, "requirepass", "right-s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := New(ctx, Config{Addr: srv.Addr(), Pipeline: "iot", Password: "wrong-hunter2"})
	if err == nil {
		t.Fatal("New with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows a password: %v", err)
	}
	if !IsUnavailable(err) {
		t.Fatalf("a refused password = %v; want ErrUnavailable (the breaker's business)", err)
	}
	s := open(t, srv.Addr(), Config{Password: "right-s3cret"})
	if got := claim(t, s, p0, 1, offsets(t, 0, 2)); got != "CC" {
		t.Fatal(got)
	}
}

func TestCloseTwiceAndCallsAfterClose(t *testing.T) {
	addr, _ := miniRedis.start(t)
	s := open(t, addr, Config{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, call := range everyCall(s, offsets(t, 0, 1)) {
		if err := call(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", name, err)
		}
	}
}

func TestSetRedisLogger(t *testing.T) {
	var buf testenv.SyncBuffer
	SetRedisLogger(zerolog.New(&buf))
	defer SetRedisLogger(zerolog.Nop())
	srv := testenv.StartRedis(t)
	s := open(t, srv.Addr(), Config{Password: ""})
	_ = srv.Kill()
	for range 3 {
		_ = s.Ping(context.Background())
	}
	if !strings.Contains(buf.String(), `"component":"redis"`) || !strings.Contains(buf.String(), `"level":"warn"`) {
		t.Fatalf("go-redis logged %q; want zerolog JSON lines with component redis", buf.String())
	}
}
