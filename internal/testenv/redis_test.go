package testenv

import (
	"net"
	"testing"
	"time"
)

func TestRedisAnswers(t *testing.T) {
	t.Setenv(EnvRedis, "")
	addr := Redis(t)
	if got := RedisCommand(t, addr, "PING"); got != "+PONG" {
		t.Fatalf("PING = %q", got)
	}
	if got := RedisCommand(t, addr, "CONFIG", "GET", "appendonly"); got != "*2" {
		t.Logf("CONFIG GET = %q", got) // only checks the server takes commands
	}
}

func TestRedisFromEnvIsReturnedAsIs(t *testing.T) {
	t.Setenv(EnvRedis, "127.0.0.1:1")
	if got := Redis(t); got != "127.0.0.1:1" {
		t.Fatalf("Redis = %q, want the address from %s", got, EnvRedis)
	}
}

func TestStopKeepsDataAndStartReusesThePort(t *testing.T) {
	s := StartRedis(t)
	addr := s.Addr()
	if got := RedisCommand(t, addr, "SET", "k", "v"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the stopped server still accepts connections")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if got := RedisCommand(t, addr, "GET", "k"); got != "v" {
		t.Fatalf("GET after a restart = %q, want the saved value", got)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start of a running server: %v", err)
	}
}

func TestKillLosesData(t *testing.T) {
	s := StartRedis(t)
	RedisCommand(t, s.Addr(), "SET", "k", "v")
	if err := s.Stop(); err != nil { // saves k ...
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil { // ... and the crash forgets it
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if got := RedisCommand(t, s.Addr(), "GET", "k"); got != "$-1" {
		t.Fatalf("GET after a kill = %q, want nil", got)
	}
}
