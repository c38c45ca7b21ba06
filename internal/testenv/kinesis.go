package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvKinesis names the environment variable holding the endpoint
// (http://host:port) of a Kinesis emulator that tests use instead of
// starting their own kinesalite.
const EnvKinesis = "WEIR_TEST_KINESIS"

// Kinesis returns the endpoint (http://127.0.0.1:PORT) of a kinesalite for
// t: the one named by WEIR_TEST_KINESIS when it is set (shared, never
// emptied: tests must use stream names of their own), else one started for
// t alone (in memory, on a free loopback port) and stopped by t.Cleanup.
// The first call installs the pinned kinesalite from the npm registry
// (testenv/kinesis/kinesis.sh setup) unless it is there. Without node or
// npm, or when the install fails, it fails the test under CI (the
// environment variable CI is set) and skips it elsewhere.
func Kinesis(t testing.TB) string {
	t.Helper()
	if ep := os.Getenv(EnvKinesis); ep != "" {
		return ep
	}
	dir := kinesisDir(t)
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "testenv: node is not on PATH; kinesalite needs Node.js (apt-get install -y nodejs npm), or set "+EnvKinesis+"=http://host:port")
	}
	if out, err := exec.Command("bash", filepath.Join(dir, "kinesis.sh"), "setup").CombinedOutput(); err != nil {
		unavailable(t, fmt.Sprintf("testenv: installing kinesalite failed: %v: %s", err, strings.TrimSpace(string(out))))
	}
	cmd := exec.Command(node, filepath.Join(dir, "serve.js"), "0", "--exit-with-stdin")
	cmd.Dir = dir
	// No Pdeathsig here: the kernel sends it when the thread that started
	// the child exits, not the process, and kinesalite twice died mid-test
	// under load in CI with nothing else to explain it. --exit-with-stdin
	// ends it when this process goes, however it goes.
	stdin, err := cmd.StdinPipe() // kinesalite exits when it closes
	if err != nil {
		t.Fatalf("testenv: kinesalite stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testenv: kinesalite stdout: %v", err)
	}
	var stderr SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting kinesalite: %v", err)
	}
	done := make(chan struct{})
	port := make(chan string, 1)
	var (
		mu       sync.Mutex
		stopping bool // set by the cleanup: an exit after it is expected
	)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- p
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		mu.Lock()
		if !stopping {
			// It died under the test: say how, so the failure that
			// follows (connection refused) can be told from a weir bug.
			t.Logf("testenv: kinesalite exited during the test (%v): %s", err, stderr.String())
		}
		mu.Unlock()
		close(done)
	}()
	t.Cleanup(func() {
		mu.Lock()
		stopping = true
		mu.Unlock()
		_ = stdin.Close()
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	select {
	case p := <-port:
		return "http://127.0.0.1:" + p
	case <-done:
		t.Fatalf("testenv: kinesalite exited at start: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("testenv: kinesalite did not start within 30s: %s", stderr.String())
	}
	return ""
}

// kinesisDir finds testenv/kinesis by walking up from the working
// directory (a test runs in its package's folder).
func kinesisDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "testenv", "kinesis")
		if _, err := os.Stat(filepath.Join(p, "package.json")); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			t.Fatalf("testenv: no testenv/kinesis/package.json above %s", wd)
		}
	}
}

// unavailable fails t under CI and skips it elsewhere.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
