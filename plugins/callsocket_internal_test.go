package plugins

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

// connectCallSocket serves h as a handler process started by a Pool does
// (Describe over gRPC, Handle on a call socket) and returns the host's
// client of it, which sends Handle on the socket.
func connectCallSocket(t *testing.T, h Handler) Handler {
	t.Helper()
	c := connect(t, h).(*grpcClient)
	host, end := callSocketPair(t)
	newCallServer(end, &grpcServer{impl: h, callSocket: true}, nil)
	c.calls = newCallConn(host, MaxMessageSize)
	t.Cleanup(func() { _ = c.calls.Close() })
	return c
}

// callSocketPair returns both ends of a call socket, as net.Conns.
func callSocketPair(t *testing.T) (host, handler net.Conn) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("call sockets are Linux only")
	}
	host, f, err := newCallSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handler, err = net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = handler.Close() })
	return host, handler
}

// rawCallSocket returns a client whose calls go to a call socket whose
// other end the test plays, accepting replies of up to maxReply bytes.
func rawCallSocket(t *testing.T, maxReply int) (*grpcClient, net.Conn) {
	t.Helper()
	host, end := callSocketPair(t)
	c := newGRPCClient(context.Background(), nil)
	c.calls = newCallConn(host, maxReply)
	t.Cleanup(func() { _ = c.calls.Close() })
	return c, end
}

// readCall reads one frame from the handler's end and returns its id,
// failing unless it is a call.
func readCall(t *testing.T, end net.Conn) uint64 {
	t.Helper()
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(end, h[:]); err != nil {
		t.Fatalf("reading a call: %v", err)
	}
	n, id, kind := parseFrameHeader(h[:])
	if kind != frameCall {
		t.Fatalf("frame of kind %d, want a call", kind)
	}
	if _, err := io.ReadFull(end, make([]byte, n)); err != nil {
		t.Fatalf("reading a call's body: %v", err)
	}
	return id
}

// writeFrame writes a frame to the host, as a handler would.
func writeFrame(t *testing.T, end net.Conn, id uint64, kind byte, body []byte) {
	t.Helper()
	h := frameHeader(len(body), id, kind)
	if _, err := end.Write(append(h[:], body...)); err != nil {
		t.Fatalf("writing a frame: %v", err)
	}
}

// callAsync runs c.Handle of a one-record batch in the background.
func callAsync(c Handler, timeout time.Duration) <-chan error {
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Handle(ctx, &Batch{Records: []record.Record{{Value: []byte("x")}}})
		errc <- err
	}()
	return errc
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return")
		return nil
	}
}

// TestCallSocketCarriesCalls: calls on the socket reach the handler and
// come back; none went over gRPC.
func TestCallSocketCarriesCalls(t *testing.T) {
	c := connectCallSocket(t, &mirrorHandler{})
	before := socketCalls.Load()
	for range 3 {
		res, err := c.Handle(context.Background(), &Batch{Records: []record.Record{{Key: []byte("k"), Value: []byte("v")}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 1 || string(res.Outputs[0].Value) != "v" {
			t.Fatalf("outputs %+v, want the record back", res.Outputs)
		}
	}
	if got := socketCalls.Load() - before; got != 3 {
		t.Errorf("%d calls went over the call socket, want 3", got)
	}
}

// TestCallSocketFramesFromAHandler: what a handler writes on its socket
// fails only what it touches.
func TestCallSocketFramesFromAHandler(t *testing.T) {
	t.Run("a frame of an unknown kind breaks the socket", func(t *testing.T) {
		c, end := rawCallSocket(t, 1<<10)
		errc := callAsync(c, 10*time.Second)
		id := readCall(t, end)
		writeFrame(t, end, id, 9, nil)
		err := waitErr(t, errc)
		if ClassOf(err) != ClassCrash || !errors.Is(err, ErrPluginExited) || !strings.Contains(err.Error(), "unknown kind 9") {
			t.Errorf("err = %v (class %v), want a crash naming the unknown kind", err, ClassOf(err))
		}
		if _, err := c.Handle(context.Background(), &Batch{}); ClassOf(err) != ClassCrash {
			t.Errorf("a call after: %v, want a crash at once", err)
		}
	})
	t.Run("a reply over the limit fails its call, and the next goes on", func(t *testing.T) {
		c, end := rawCallSocket(t, 1<<10)
		errc := callAsync(c, 10*time.Second)
		writeFrame(t, end, readCall(t, end), frameReply, make([]byte, 2<<10))
		err := waitErr(t, errc)
		if ClassOf(err) != ClassBadReply || IsRetryable(err) || !strings.Contains(err.Error(), "over the size limit") {
			t.Errorf("err = %v (class %v), want a bad reply over the size limit, not retryable", err, ClassOf(err))
		}
		errc = callAsync(c, 10*time.Second)
		id := readCall(t, end)
		writeFrame(t, end, id+100, frameReply, nil) // answers no call
		writeFrame(t, end, id, frameReply, nil)     // an empty Result
		if err := waitErr(t, errc); err != nil {
			t.Errorf("the next call: %v", err)
		}
	})
	t.Run("the handler's end closing fails the call in flight", func(t *testing.T) {
		c, end := rawCallSocket(t, 1<<10)
		errc := callAsync(c, 10*time.Second)
		readCall(t, end)
		_ = end.Close()
		if err := waitErr(t, errc); ClassOf(err) != ClassCrash || !errors.Is(err, ErrPluginExited) {
			t.Errorf("err = %v (class %v), want ErrPluginExited", err, ClassOf(err))
		}
	})
	t.Run("an error frame that is not a status", func(t *testing.T) {
		c, end := rawCallSocket(t, 1<<10)
		errc := callAsync(c, 10*time.Second)
		writeFrame(t, end, readCall(t, end), frameError, []byte{0xff, 0xff})
		if err := waitErr(t, errc); err == nil || !strings.Contains(err.Error(), "decoding the handler's error") {
			t.Errorf("err = %v, want one about decoding the handler's error", err)
		}
	})
}

// TestCallSocketCancelsAnAbandonedCall: the handler's context of a call
// the host gave up on is canceled, as a gRPC stream's reset does.
func TestCallSocketCancelsAnAbandonedCall(t *testing.T) {
	started, canceled := make(chan struct{}), make(chan struct{})
	c := connectCallSocket(t, funcHandler(func(ctx context.Context, _ *Batch) (*Result, error) {
		close(started)
		<-ctx.Done()
		close(canceled)
		return nil, ctx.Err()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Handle(ctx, &Batch{})
		errc <- err
	}()
	<-started
	cancel()
	if err := waitErr(t, errc); err == nil || !strings.Contains(err.Error(), "call abandoned") {
		t.Errorf("err = %v, want the call abandoned", err)
	}
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not canceled")
	}
}

// FuzzCallSocketReply: whatever a handler writes on its call socket, the
// call waiting for it returns (no hang, no panic), with a result or a
// classified *Error, and a call after it does too.
func FuzzCallSocketReply(f *testing.F) {
	frame := func(n int, id uint64, kind byte, body []byte) []byte {
		h := frameHeader(n, id, kind)
		return append(h[:], body...)
	}
	status := []byte{0x08, 0x03, 0x12, 0x04, 'b', 'o', 'o', 'm'} // code 3, "boom"
	f.Add(frame(0, 1, frameReply, nil))
	f.Add(frame(len(status), 1, frameError, status))
	f.Add(frame(2, 1, frameReply, []byte{0x0a, 0x00}))
	f.Add(frame(5000, 1, frameReply, make([]byte, 5000)))
	f.Add(frame(0, 2, frameReply, nil))
	f.Add(frame(0, 1, 9, nil))
	f.Add(frame(100, 1, frameReply, []byte{1, 2}))
	f.Fuzz(func(t *testing.T, written []byte) {
		c, end := rawCallSocket(t, 1<<12)
		errc := callAsync(c, 10*time.Second)
		readCall(t, end)
		go func() {
			_, _ = end.Write(written)
			_ = end.Close()
		}()
		if err := waitErr(t, errc); err != nil {
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Fatalf("%v is not an *Error", err)
			}
		}
		// The handler's end is closed: a call now fails at once.
		if _, err := c.Handle(context.Background(), &Batch{}); ClassOf(err) != ClassCrash {
			t.Fatalf("a call after the handler's end closed: %v, want a crash", err)
		}
	})
}
