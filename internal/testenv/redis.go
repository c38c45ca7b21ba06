// Package testenv starts the real services that weir's tests need, on this
// machine, for the duration of one test.
//
// Redis: Redis(t) returns the address of a real redis-server. When the
// environment variable WEIR_TEST_REDIS (host:port) is set it is returned as
// is, shared by every test and never flushed, so tests must keep to key
// prefixes of their own. Otherwise a redis-server from PATH is started on a
// free loopback port with no persistence configured, in a temporary
// directory, and stopped when the test ends. StartRedis always starts a
// server of its own and returns a handle that can stop and restart it on the
// same port, for tests of outages.
//
// scripts/test installs redis-server (Debian package redis-server) before it
// runs the tests. When redis-server is missing, the tests that need it fail
// under CI (the environment variable CI is set) and are skipped elsewhere.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvRedis names the environment variable holding the address (host:port)
// of a Redis server that tests use instead of starting their own.
const EnvRedis = "WEIR_TEST_REDIS"

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Redis returns the address (host:port) of a real Redis server for t: the
// one named by WEIR_TEST_REDIS when it is set, else a redis-server started
// for t alone and stopped by t.Cleanup. The server is empty when started
// here; a shared one is not flushed, so tests must use unique key prefixes.
func Redis(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvRedis); addr != "" {
		return addr
	}
	return StartRedis(t).Addr()
}

// RedisServer is a redis-server process started for one test. Its methods
// are safe for concurrent use. Its port stays the same across Stop and
// Start, so clients reconnect to the same address.
type RedisServer struct {
	bin  string
	dir  string
	args []string
	port int

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{} // closed when proc has exited
}

// StartRedis starts a redis-server of t's own (WEIR_TEST_REDIS is ignored:
// a shared server cannot be stopped) on a free loopback port and waits until
// it answers PING. args are passed to redis-server after the defaults
// (e.g. "--cluster-enabled", "yes"). t.Cleanup kills it. Without
// redis-server on PATH it fails the test under CI and skips it elsewhere.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin := redisBinary(t)
	s := &RedisServer{bin: bin, dir: t.TempDir(), args: args}
	var err error
	// A free port can be taken between our probe and redis-server's bind:
	// try a few.
	for range 5 {
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = s.Start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("testenv: starting redis-server: %v", err)
	}
	t.Cleanup(func() { _ = s.Kill() })
	return s
}

// Addr returns the server's address, 127.0.0.1:PORT.
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Start starts the server on its port (again, after Stop or Kill) and waits
// until it answers PING. Data saved by Stop is loaded. Starting a running
// server is a no-op. If the port is briefly taken, Start retries for up to
// 10 seconds.
func (s *RedisServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		return nil
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.startLocked(deadline)
		if err == nil || time.Now().After(deadline) || !errors.Is(err, errAddrInUse) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errAddrInUse = errors.New("address already in use")

func (s *RedisServer) startLocked(deadline time.Time) error {
	logPath := filepath.Join(s.dir, "redis.log")
	_ = os.Remove(logPath)
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--dbfilename", "dump.rdb",
		"--logfile", logPath,
		"--daemonize", "no",
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.proc, s.done = cmd, done
	for {
		select {
		case <-done:
			log := tail(logPath)
			err := fmt.Errorf("redis-server on port %d exited at start: %s", s.port, log)
			if strings.Contains(log, "already in use") {
				err = fmt.Errorf("%w (port %d): %s", errAddrInUse, s.port, log)
			}
			return err
		default:
		}
		if ping(s.Addr(), 200*time.Millisecond) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d did not answer PING within %s: %s", s.port, startTimeout, tail(logPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop shuts the server down the way an operator restarting it would: it
// saves its data (SHUTDOWN SAVE) and exits, so a later Start comes back with
// the same keys. Clients see connection errors until Start. Stopping a
// stopped server is a no-op.
func (s *RedisServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil
	}
	_ = s.proc.Process.Signal(sigResume)
	// The server closes the connection without a reply when it shuts down.
	if err := send(s.Addr(), "SHUTDOWN", "SAVE"); err != nil {
		_ = s.proc.Process.Kill()
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = s.proc.Process.Kill()
		<-s.done
		return fmt.Errorf("redis-server on port %d did not shut down within 10s; killed", s.port)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open and commands
// are accepted but never answered, like a hung server or a network
// partition. Resume undoes it; Stop and Kill resume it first.
func (s *RedisServer) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return errors.New("testenv: Pause of a stopped redis-server")
	}
	return s.proc.Process.Signal(sigPause)
}

// Resume lets a paused server go on (SIGCONT). Resuming a server that is
// not paused is a no-op.
func (s *RedisServer) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil
	}
	return s.proc.Process.Signal(sigResume)
}

// Kill ends the server at once (SIGKILL), like a crash of a server without
// persistence: a later Start comes back empty. Killing a stopped server only
// forgets its saved data.
func (s *RedisServer) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		_ = s.proc.Process.Kill()
		<-s.done
	}
	if err := os.Remove(filepath.Join(s.dir, "dump.rdb")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (s *RedisServer) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// redisBinary finds redis-server on PATH, or ends the test with a message
// that says how to get it.
func redisBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	msg := "testenv: redis-server is not on PATH; run scripts/test (it installs and starts " +
		"what the tests need), install it (apt-get install -y redis-server), or set " +
		EnvRedis + "=host:port to use a running server"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING and expects +PONG; a server still loading answers -LOADING
// and is not ready.
func ping(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// send writes one command and does not wait for its reply.
func send(addr string, args ...string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(b.String())); err != nil {
		return err
	}
	// Wait for the server to close the connection (or answer an error).
	_, _ = bufio.NewReader(c).ReadString('\n')
	return nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}
