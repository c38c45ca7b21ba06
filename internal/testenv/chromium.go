package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Browser is a headless Chromium driven over the DevTools protocol, with a
// client of our own: a WebSocket (RFC 6455, client side, text frames) and
// the protocol's JSON messages, on the standard library only. It serves
// browser tests of pages the host serves; one page at a time.
type Browser struct {
	cmd  *exec.Cmd
	conn net.Conn
	rd   *bufio.Reader
	wmu  sync.Mutex
	id   int
}

// ChromiumPath returns Debian's chromium (or chromium-browser) on PATH, or
// "" if there is none.
func ChromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// StartChromium starts headless Chromium with a window of width x height
// and connects to its first page. Without chromium on PATH the test is
// skipped, or fails under CI (CI set). The browser is killed at cleanup.
func StartChromium(t testing.TB, width, height int) *Browser {
	t.Helper()
	path := ChromiumPath()
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not on PATH; under CI the browser test must run (apt-get install chromium)")
		}
		t.Skip("chromium is not on PATH (apt-get install chromium)")
	}
	// Not t.TempDir: the browser's helper processes may still be writing
	// there for a moment after the kill, and its removal would fail the test.
	profile, err := os.MkdirTemp("", "weir-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
		fmt.Sprintf("--window-size=%d,%d", width, height),
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir="+profile, "about:blank")
	ownGroup(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		killGroup(cmd)
		_ = cmd.Wait()
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	var wsURL string
	select {
	case u, ok := <-found:
		if !ok {
			t.Fatal("chromium exited without a DevTools address")
		}
		wsURL = u
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 60s")
	}
	u, err := url.Parse(wsURL)
	if err != nil {
		t.Fatal(err)
	}
	pageWS, err := firstPage(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{cmd: cmd}
	if err := b.dial(pageWS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.conn.Close() })
	return b
}

// firstPage asks the DevTools HTTP endpoint for the page targets and returns
// the first one's WebSocket URL, waiting for it to appear.
func firstPage(hostport string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + hostport + "/json/list")
		if err == nil {
			var targets []struct {
				Type string `json:"type"`
				WS   string `json:"webSocketDebuggerUrl"`
			}
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" && tg.WS != "" {
					return tg.WS, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no page target at %s: %v", hostport, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dial opens the WebSocket at wsURL (ws://host:port/path).
func (b *Browser) dial(wsURL string) error {
	u, err := url.Parse(wsURL)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return fmt.Errorf("devtools: dial %s: %w", u.Host, err)
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return fmt.Errorf("devtools: handshake: %w", err)
	}
	rd := bufio.NewReaderSize(conn, 1<<16)
	resp, err := http.ReadResponse(rd, &http.Request{Method: http.MethodGet})
	if err != nil {
		conn.Close()
		return fmt.Errorf("devtools: handshake: %w", err)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		conn.Close()
		return fmt.Errorf("devtools: handshake refused: %s", resp.Status)
	}
	b.conn, b.rd = conn, rd
	return nil
}

// writeText sends one masked text frame.
func (b *Browser) writeText(p []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	hdr := []byte{0x81} // FIN, text
	switch n := len(p); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(p))
	for i := range p {
		masked[i] = p[i] ^ mask[i%4]
	}
	_, err := b.conn.Write(append(hdr, masked...))
	return err
}

// readMessage reads one whole (possibly fragmented) text message, answering
// pings and skipping pongs.
func (b *Browser) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(b.rd, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0F
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(b.rd, e[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(b.rd, e[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if h[1]&0x80 != 0 {
			return nil, errors.New("devtools: masked frame from the server")
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(b.rd, payload); err != nil {
			return nil, err
		}
		switch op {
		case 0x8:
			return nil, errors.New("devtools: connection closed by the browser")
		case 0x9: // ping: answer with a pong
			b.wmu.Lock()
			_, _ = b.conn.Write(append([]byte{0x8A, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...))
			b.wmu.Unlock()
			continue
		case 0xA:
			continue
		}
		msg = append(msg, payload...)
		if fin {
			return msg, nil
		}
	}
}

// Call sends a DevTools command and returns its result, skipping the events
// that arrive meanwhile.
func (b *Browser) Call(ctx context.Context, method string, params any, result any) error {
	b.id++
	id := b.id
	req, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = b.conn.SetDeadline(dl)
		defer b.conn.SetDeadline(time.Time{})
	}
	if err := b.writeText(req); err != nil {
		return fmt.Errorf("devtools %s: %w", method, err)
	}
	for {
		raw, err := b.readMessage()
		if err != nil {
			return fmt.Errorf("devtools %s: %w", method, err)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(raw, &resp); err != nil {
			return fmt.Errorf("devtools %s: %w", method, err)
		}
		if resp.ID != id {
			continue // an event, or the reply to an abandoned call
		}
		if resp.Error != nil {
			return fmt.Errorf("devtools %s: %s", method, resp.Error.Message)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(resp.Result, result)
	}
}

// Navigate loads url in the page.
func (b *Browser) Navigate(ctx context.Context, url string) error {
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.Call(ctx, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		return err
	}
	if res.ErrorText != "" {
		return fmt.Errorf("navigating to %s: %s", url, res.ErrorText)
	}
	return nil
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value (JSON-serializable) into out.
func (b *Browser) Eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.Exception != nil {
		return fmt.Errorf("evaluating %.60q...: %s %s", strings.TrimSpace(expr), res.Exception.Text, res.Exception.Exception.Description)
	}
	if len(res.Result.Value) == 0 {
		return fmt.Errorf("evaluating %q: no value", strings.TrimSpace(expr))
	}
	return json.Unmarshal(res.Result.Value, out)
}

// Screenshot returns a PNG of the page's viewport.
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	var res struct {
		Data string `json:"data"`
	}
	if err := b.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(res.Data)
}

// ArtifactDir is where a test writes what it leaves for a human to look at
// (screenshots), created if missing: $WEIR_TEST_ARTIFACTS if set, else
// weir-test-artifacts in the system's temporary directory. It outlives the
// test; the test logs what it wrote there.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("WEIR_TEST_ARTIFACTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "weir-test-artifacts")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
