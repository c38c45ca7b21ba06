package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/weirhq/weir/record"
)

func TestEncodePositionOrdersLikeNumbers(t *testing.T) {
	// Byte order of the encoding must be numeric order: Redis sorts the
	// done set and Lua compares watermarks as strings.
	ps := []record.Position{
		{Offset: 0}, {Offset: 9}, {Offset: 10}, {Offset: 99}, {Offset: 100},
		{Offset: 123456789}, {Offset: math.MaxInt64},
		// Kinesis sequence numbers: decimal strings up to 128 bits and more.
		{Seq: "49590338271490256608559692538361571095921575989136588898"},
		{Seq: "49590338271490256608559692540925702759324208523137515618"},
		{Seq: "495903382714902566085596925409257027593242085231375156180"},
		// KPL user records of one aggregate, then the next record.
		{Seq: "495903382714902566085596925409257027593242085231375156181", Offset: 0},
		{Seq: "495903382714902566085596925409257027593242085231375156181", Offset: 1},
		{Seq: "495903382714902566085596925409257027593242085231375156181", Offset: 12},
		{Seq: "495903382714902566085596925409257027593242085231375156182"},
	}
	var encs []string
	for _, p := range ps {
		e, err := encodePosition(p)
		if err != nil {
			t.Fatalf("encodePosition(%v): %v", p, err)
		}
		encs = append(encs, e)
	}
	if !slices.IsSorted(encs) {
		t.Fatalf("encodings are not in numeric order: %q", encs)
	}
	if e, _ := encodePosition(record.Position{Offset: 42}); e != "0242" {
		t.Fatalf("offset 42 = %q, want 0242", e)
	}
	if e, _ := encodePosition(record.Position{Seq: "0042"}); e != "0842000000" {
		t.Fatalf("sequence 0042 = %q, want leading zeros dropped and sub-sequence 000000", e)
	}
	for _, bad := range []record.Position{{Offset: -1}, {Seq: "12a"}, {Seq: strings.Repeat("1", 94)}, {Seq: "1", Offset: -1}, {Seq: "1", Offset: 1_000_000}} {
		if _, err := encodePosition(bad); err == nil {
			t.Errorf("encodePosition(%+v) succeeded, want an error", bad)
		}
	}
}

func TestCheckpointValueRoundTrips(t *testing.T) {
	for _, p := range []record.Position{{Offset: 0}, {Offset: 77}, {Seq: "49590338271490256608559692538361571095921575989136588898"},
		{Seq: "49590338271490256608559692538361571095921575989136588898", Offset: 3}} {
		got, err := parseCheckpointValue(checkpointValue(p))
		if err != nil || got != p {
			t.Fatalf("round trip of %+v = %+v, %v", p, got, err)
		}
	}
	if _, err := parseCheckpointValue("x:1"); err == nil {
		t.Fatal("a foreign value parsed")
	}
}

func TestMarkKey(t *testing.T) {
	const base = "weir:{iot}/idem/"
	if got := markKey(base, []byte("m-42")); got != base+"=m-42" {
		t.Fatalf("short id = %q, want it raw", got)
	}
	long := strings.Repeat("x", 65)
	for _, v := range []string{long, "has space", "tab\t", "é"} {
		got := strings.TrimPrefix(markKey(base, []byte(v)), base)
		if !strings.HasPrefix(got, "#") || len(got) != 33 {
			t.Errorf("markKey(%q) = %q, want # and 32 hex digits", v, got)
		}
	}
	if markKey(base, []byte(long)) == markKey(base, []byte(long+"y")) {
		t.Fatal("two long ids hash alike")
	}
}

func TestNewNamesEveryBadOption(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"nothing", Config{}, []string{"Config.Pipeline: is required", "Config.Addr: is required"}},
		{"bad pipeline and prefix", Config{Addr: "h:1", Pipeline: "IoT!", KeyPrefix: "{x}"},
			[]string{`Config.Pipeline: "IoT!" has "I"`, "Config.KeyPrefix"}},
		{"bad mode", Config{Addr: "h:1", Pipeline: "p", Mode: "exactly"}, []string{`Config.Mode: "exactly" is not a mode`}},
		{"template without text", Config{Addr: "h:1", Pipeline: "p", Mode: ModeTemplate}, []string{"Config.Template: is required"}},
		{"template with position", Config{Addr: "h:1", Pipeline: "p", Template: "key"}, []string{"Config.Template: is only allowed"}},
		{"bad template", Config{Addr: "h:1", Pipeline: "p", Mode: ModeTemplate, Template: "header:"}, []string{"Config.Template: idempotency key"}},
		{"two servers", Config{Addr: "h:1", ClusterAddrs: []string{"h:2"}, Pipeline: "p"}, []string{"set only one of"}},
		{"sentinel without master", Config{SentinelAddrs: []string{"h:1"}, Pipeline: "p"}, []string{"Config.SentinelMaster"}},
		{"cluster with db", Config{ClusterAddrs: []string{"h:1"}, DB: 2, Pipeline: "p"}, []string{"Config.DB: must be 0"}},
		{"negative db", Config{Addr: "h:1", DB: -1, Pipeline: "p"}, []string{"Config.DB: must not be negative"}},
		{"addr without port", Config{Addr: "localhost", Pipeline: "p"}, []string{`Config.Addr: "localhost" is not host:port`}},
		{"cluster addr without port", Config{ClusterAddrs: []string{"n1"}, Pipeline: "p"}, []string{`Config.ClusterAddrs: "n1"`}},
		{"ttls", Config{Addr: "h:1", Pipeline: "p", TTL: -1, ClaimTTL: -1, Timeout: -1},
			[]string{"Config.TTL", "Config.ClaimTTL", "Config.Timeout"}},
		{"claim ttl over ttl", Config{Addr: "h:1", Pipeline: "p", TTL: 60e9, ClaimTTL: 120e9}, []string{"Config.ClaimTTL: 2m0s must not exceed TTL 1m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), tc.cfg)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigNeverPrintsThePassword(t *testing.T) {
	cfg := Config{Addr: "h:1", Username: "weir", Password: "hunter2-secret", Pipeline: "p"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(f, cfg); strings.Contains(s, "hunter2") || !strings.Contains(s, "[redacted]") {
			t.Errorf("%s of a Config = %s", f, s)
		}
	}
	if s := fmt.Sprintf("%v", &cfg); strings.Contains(s, "hunter2") {
		t.Errorf("%%v of a *Config = %s", s)
	}
}

func TestOffModeNeedsNoRedis(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Config{Pipeline: "p", Mode: ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	r := msg(p0, 5, "m-1")
	k, err := s.KeyOf(&r)
	if err != nil || k != (Key{}) {
		t.Fatalf("KeyOf = %v, %v; want the zero Key", k, err)
	}
	c, err := s.Claim(ctx, p0, 1, []Key{k, k})
	if err != nil || statuses(c) != "CC" || c.Claimed != 2 {
		t.Fatalf("Claim = %+v, %v; want all claimed", c, err)
	}
	for name, err := range map[string]error{
		"MarkDone": s.MarkDone(ctx, p0, 1, []Key{k}),
		"Release":  s.Release(ctx, p0, 1, []Key{k}),
		"Commit":   s.Commit(ctx, p0, 1, record.Position{Offset: 5}),
		"Fence":    s.Fence(ctx, p0, 1),
		"Ping":     s.Ping(ctx),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, ok, err := s.Load(ctx, p0); ok || err != nil {
		t.Fatalf("Load = ok %v, %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestClassify(t *testing.T) {
	if err := classify(context.Canceled, p0, 1); IsUnavailable(err) {
		t.Error("a cancelled call counted as Redis unavailable")
	}
	if err := classify(context.DeadlineExceeded, p0, 1); !IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
}
