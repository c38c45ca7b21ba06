package checkpoint

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
)

// A one-node Redis Cluster holding every slot: it refuses scripts whose
// keys span slots (CROSSSLOT) like any cluster, so it proves that the
// {pipeline} hash tag keeps every call in one slot, through go-redis's
// cluster client.
func TestCluster(t *testing.T) {
	srv := testenv.StartRedis(t, "--cluster-enabled", "yes")
	ctx := context.Background()
	rdb := raw(t, srv.Addr())
	if err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, _ := rdb.ClusterInfo(ctx).Result()
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not come up: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The server enforces slots: keys without a common tag are refused.
	if err := rdb.Eval(ctx, "return 1", []string{"weir:a", "weir:b"}).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("a cross-slot script = %v; want CROSSSLOT (is this a cluster?)", err)
	}

	for _, cfg := range []Config{{}, {Mode: ModeTemplate, Template: "json:/message_id"}} {
		t.Run(string(cfg.withDefaults().Mode), func(t *testing.T) {
			cfg.ClusterAddrs = []string{srv.Addr()}
			cfg.KeyPrefix = uniquePrefix()
			cfg.Pipeline = "iot"
			s, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			keys := keysOf(t, s, msg(p0, 1, "c-1"), msg(p0, 2, "c-2"), msg(p0, 3, "c-1"))
			if err := s.Fence(ctx, p0, 1); err != nil {
				t.Fatal(err)
			}
			c, err := s.Claim(ctx, p0, 1, keys)
			if err != nil {
				t.Fatal(err)
			}
			want := "CCC"
			if s.Mode() == ModeTemplate {
				want = "CCB"
			}
			if statuses(c) != want {
				t.Fatalf("Claim = %s, want %s", statuses(c), want)
			}
			if err := s.MarkDone(ctx, p0, 1, keys[:2]); err != nil {
				t.Fatal(err)
			}
			if err := s.Release(ctx, p0, 1, keys); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx, p0, 1, record.Position{Offset: 2}); err != nil {
				t.Fatal(err)
			}
			// Position 3 was not marked; in template mode it repeats c-1.
			want = "DDC"
			if s.Mode() == ModeTemplate {
				want = "DDD"
			}
			if got := claim(t, s, p0, 1, keys); got != want {
				t.Fatalf("after marking: Claim = %s, want %s", got, want)
			}
			if pos, gen, ok, err := s.Load(ctx, p0); err != nil || !ok || pos.Offset != 2 || gen != 1 {
				t.Fatalf("Load = %v %d %v %v", pos, gen, ok, err)
			}
			if s.Mode() == ModePosition {
				// The host's form: runs of positions.
				stream := kafkaStream(20)
				markPositions(t, s, p0, 1, deliveredOf(stream, span(5, 10)...))
				if got := claimPositions(t, s, p0, 1, deliveredOf(stream, span(2, 12)...)); got != "DCCDDDDDCC" {
					t.Fatalf("ClaimPositions = %s", got)
				}
			}
		})
	}
}
