package plugins

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/record"
)

// The call socket carries a Go handler process's Handle calls instead of
// gRPC: one end of a Unix socket pair the host creates for each process and
// passes to that process alone when it starts it (EnvCallFD), like the
// batch file. A gRPC call over the TLS connection cost the host and the
// handler about 160 µs of CPU together (BenchmarkPoolRoundTrip with one
// record): HTTP/2 headers both ways, a stream, TLS records, and the
// hand-offs between each side's reader, call and writer goroutines, which
// wake each other through the scheduler. On the socket a call is one
// frame each way, and the messages are the same ones gRPC would carry: the
// Batch (its records usually in the batch file), and the Result or the
// gRPC status of an error. The connection keeps serving Describe, and the
// calls of a handler that does not say it serves the socket.
//
// Both directions carry frames: a header of frameHeaderSize bytes, the
// body's length (uint32, little-endian), the call's id (uint64,
// little-endian, the host's choice), the frame's kind and three zero
// bytes; then the body. The host sends frameCall (body: a Batch) and
// frameCancel (no body: the host gave up on the call, whose context the
// handler then cancels). The handler answers each call with frameReply
// (body: a Result) or frameError (body: a google.rpc.Status, carrying a
// BatchError in its details as over gRPC). Calls are answered in any
// order.
//
// Nothing else can reach the socket: it has no address, and only the
// handler process holds its other end. A broken frame, an unknown kind or a
// reply over the host's limit fails the calls it touches, and the host then
// replaces the process as it does after any failed call.

// EnvCallFD names the file descriptor of the call socket in a handler
// process's environment.
const EnvCallFD = "WEIR_CALL_FD"

// Frame kinds.
const (
	frameCall   byte = 1 // host to handler: a Batch
	frameCancel byte = 2 // host to handler: the call was abandoned
	frameReply  byte = 3 // handler to host: a Result
	frameError  byte = 4 // handler to host: a google.rpc.Status
)

// frameHeaderSize is the size of a frame's header.
const frameHeaderSize = 16

// maxErrorFrame bounds the body of a frameError the host accepts beyond
// its reply limit: a status is a message and a BatchError.
const maxErrorFrame = 1 << 20

// frameHeader encodes a frame's header.
func frameHeader(n int, id uint64, kind byte) [frameHeaderSize]byte {
	var h [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(n))
	binary.LittleEndian.PutUint64(h[4:12], id)
	h[12] = kind
	return h
}

// parseFrameHeader decodes a frame's header.
func parseFrameHeader(h []byte) (n int, id uint64, kind byte) {
	return int(binary.LittleEndian.Uint32(h[0:4])), binary.LittleEndian.Uint64(h[4:12]), h[12]
}

// callConn is the host's end of a handler process's call socket. It is
// safe for concurrent use: each call waits for the frame answering its id.
type callConn struct {
	conn     net.Conn
	maxReply int

	wmu sync.Mutex // one frame written at a time

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan callAnswer
	broken  error // once set, every call fails with it

	done chan struct{} // closed when the reader has exited
}

// callAnswer is what the reader hands a waiting call: a frame's kind and
// body, or the error that ended the connection.
type callAnswer struct {
	kind byte
	body []byte
	err  error
}

// newCallConn starts serving the host's end of a call socket.
func newCallConn(conn net.Conn, maxReply int) *callConn {
	c := &callConn{conn: conn, maxReply: maxReply, pending: map[uint64]chan callAnswer{}, done: make(chan struct{})}
	go c.read()
	return c
}

// socketCalls counts the calls this process (a host) made over call
// sockets (a test hook).
var socketCalls atomic.Int64

// call sends w and decodes its answer into resp. Its error is what a gRPC
// call would have returned (a status, or the context's error): the caller
// classifies both alike.
func (c *callConn) call(ctx context.Context, w *wireBatch, resp *wireReply) error {
	ch := make(chan callAnswer, 1)
	c.mu.Lock()
	if c.broken != nil {
		c.mu.Unlock()
		return c.broken
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	socketCalls.Add(1)

	body := [][]byte{w.head}
	if !w.shared && len(w.recs) > 0 {
		body = append(body, w.recs)
	}
	if err := c.send(ctx, id, frameCall, body...); err != nil {
		c.forget(id)
		return err
	}
	select {
	case a := <-ch:
		switch {
		case a.err != nil:
			return a.err
		case a.kind == frameError:
			st := new(spb.Status)
			if err := proto.Unmarshal(a.body, st); err != nil {
				return status.Errorf(codes.Internal, "decoding the handler's error: %v", err)
			}
			if st.GetCode() == int32(codes.OK) {
				return status.Error(codes.Internal, "the handler's error has status OK")
			}
			return status.ErrorProto(st)
		}
		if err := resp.decode(a.body); err != nil {
			// As gRPC reports a reply its codec cannot decode.
			return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		// The handler cancels the call's context, as after a gRPC
		// stream's reset; the caller does not wait for that.
		go func() { _ = c.send(context.Background(), id, frameCancel) }()
		return status.FromContextError(ctx.Err()).Err()
	}
}

// frameWriteTimeout bounds the write of a frame whose context has no
// deadline (a cancel, a call without one): the handler reads its socket
// whatever it is doing, so only a process that is stuck as a whole takes
// this long.
const frameWriteTimeout = 5 * time.Second

// send writes one frame. A write that fails or times out breaks the
// connection (the frame may be half written).
func (c *callConn) send(ctx context.Context, id uint64, kind byte, body ...[]byte) error {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	if n > MaxMessageSize {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, MaxMessageSize)
	}
	h := frameHeader(n, id, kind)
	bufs := make(net.Buffers, 0, 1+len(body))
	bufs = append(bufs, h[:])
	bufs = append(bufs, body...)
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(frameWriteTimeout)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.SetWriteDeadline(dl); err != nil {
		return c.fail(fmt.Errorf("writing to the call socket: %w", err))
	}
	if _, err := bufs.WriteTo(c.conn); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			c.fail(fmt.Errorf("writing to the call socket: %w", err))
			return status.FromContextError(ctx.Err()).Err()
		}
		return c.fail(fmt.Errorf("writing to the call socket: %w", err))
	}
	return nil
}

// read hands each frame the handler sends to the call it answers, until
// the connection ends.
func (c *callConn) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.conn, 64<<10)
	var h [frameHeaderSize]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			c.fail(fmt.Errorf("reading from the call socket: %w", err))
			return
		}
		n, id, kind := parseFrameHeader(h[:])
		limit := c.maxReply
		switch kind {
		case frameReply:
		case frameError:
			limit = max(limit, maxErrorFrame)
		default:
			c.fail(fmt.Errorf("the handler sent a frame of unknown kind %d on the call socket", kind))
			return
		}
		if n > limit {
			// As gRPC refuses a reply over its receive limit: that call
			// fails, and the connection goes on.
			if _, err := br.Discard(n); err != nil {
				c.fail(fmt.Errorf("reading from the call socket: %w", err))
				return
			}
			c.answer(id, callAnswer{err: status.Errorf(codes.ResourceExhausted,
				"grpc: received message larger than max (%d vs. %d)", n, c.maxReply)})
			continue
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			c.fail(fmt.Errorf("reading from the call socket: %w", err))
			return
		}
		c.answer(id, callAnswer{kind: kind, body: body})
	}
}

// answer hands a to the call id, if it is still waiting.
func (c *callConn) answer(id uint64, a callAnswer) {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- a
	}
}

// forget drops a call that stopped waiting.
func (c *callConn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// fail breaks the connection with cause: the calls waiting, and every
// later one, fail as calls over a connection that went away do (a process
// that exited, to the caller). It returns that error.
func (c *callConn) fail(cause error) error {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = status.Error(codes.Unavailable, cause.Error())
	}
	err := c.broken
	pending := c.pending
	c.pending = map[uint64]chan callAnswer{}
	c.mu.Unlock()
	for _, ch := range pending {
		ch <- callAnswer{err: err}
	}
	_ = c.conn.Close()
	return err
}

// Close closes the host's end (nil: no socket) and waits for its reader.
func (c *callConn) Close() error {
	if c == nil {
		return nil
	}
	c.fail(errors.New("the call socket was closed"))
	<-c.done
	return nil
}

// callServer is a handler process's end of its call socket: it serves each
// call frame with srv, as the gRPC server would.
type callServer struct {
	conn     net.Conn
	srv      *grpcServer
	codec    wireCodec
	maxReply int

	wmu sync.Mutex // one frame written at a time

	mu      sync.Mutex
	cancels map[uint64]context.CancelFunc

	// borrow says the handler borrows its records (RecordBorrower) and the
	// batch file is mapped: records in the file are decoded in place.
	borrow bool

	// idle takes a call to a worker waiting for one; a call that finds
	// none starts a worker (see streamWorkers).
	idle chan callFrame
}

// callFrame is a call as the handler received it.
type callFrame struct {
	id   uint64
	body []byte
	ctx  context.Context
}

// openCallSocket opens the call socket the host passed, if it did
// (EnvCallFD names a socket); nil otherwise, and calls come over gRPC.
func openCallSocket() net.Conn {
	f := inheritedFile(EnvCallFD, "weir-calls")
	if f == nil {
		return nil
	}
	defer f.Close() // FileConn holds a copy
	conn, err := net.FileConn(f)
	if err != nil {
		return nil
	}
	return conn
}

// newCallServer serves calls arriving on conn with srv until the host
// closes its end.
func newCallServer(conn net.Conn, srv *grpcServer, batches *batchReader) *callServer {
	s := &callServer{conn: conn, srv: srv, codec: wireCodec{batches: batches}, maxReply: maxReplyBytes(),
		cancels: map[uint64]context.CancelFunc{}, idle: make(chan callFrame)}
	if b, ok := srv.impl.(RecordBorrower); ok && b.BorrowsRecords() && batches != nil && batches.mapped != nil {
		s.borrow = true
	}
	go s.read()
	return s
}

// read takes the host's frames until the connection ends, or a frame
// breaks the protocol; it then closes the socket (the host fails what it
// waits for) and cancels the calls being served.
func (s *callServer) read() {
	defer s.cancelAll()
	defer s.conn.Close()
	br := bufio.NewReaderSize(s.conn, 64<<10)
	var h [frameHeaderSize]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "weir handler: reading the call socket: %v\n", err)
			}
			return
		}
		n, id, kind := parseFrameHeader(h[:])
		switch kind {
		case frameCancel:
			if _, err := br.Discard(n); err != nil {
				return
			}
			s.mu.Lock()
			cancel := s.cancels[id]
			s.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		case frameCall:
			if n > MaxMessageSize {
				fmt.Fprintf(os.Stderr, "weir handler: a call of %d bytes on the call socket, over the limit of %d\n", n, MaxMessageSize)
				return
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			s.mu.Lock()
			s.cancels[id] = cancel
			s.mu.Unlock()
			f := callFrame{id: id, body: body, ctx: ctx}
			select {
			case s.idle <- f:
			default:
				go s.work(f)
			}
		default:
			fmt.Fprintf(os.Stderr, "weir handler: a frame of unknown kind %d on the call socket\n", kind)
			return
		}
	}
}

// work serves f, then whatever call it is handed next, for the life of
// the process.
func (s *callServer) work(f callFrame) {
	for {
		s.serve(f)
		f = <-s.idle
	}
}

// serve serves one call and writes its answer.
func (s *callServer) serve(f callFrame) {
	defer func() {
		s.mu.Lock()
		cancel := s.cancels[f.id]
		delete(s.cancels, f.id)
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}()
	req := new(handleRequest)
	err := s.decode(f.body, req)
	if req.release != nil {
		defer req.release() // once answered: the deferred calls run last
	}
	if err != nil {
		s.sendError(f.id, status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err))
		return
	}
	ctx := f.ctx
	if dl := req.batch.Deadline; !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	reply, err := s.srv.handle(ctx, req)
	if err != nil {
		s.sendError(f.id, err)
		return
	}
	out, err := s.codec.Marshal(reply)
	if err != nil {
		s.sendError(f.id, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err))
		return
	}
	defer out.Free()
	if n := out.Len(); n > s.maxReply {
		s.sendError(f.id, status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, s.maxReply))
		return
	}
	bufs := make([][]byte, len(out))
	for i, b := range out {
		bufs[i] = b.ReadOnlyData()
	}
	s.send(f.id, frameReply, bufs...)
}

// decode decodes a call's batch into req: in place, into recycled records,
// for a handler that borrows its records (their storage goes back once the
// call is answered: serve returns), or as the gRPC server does.
func (s *callServer) decode(body []byte, req *handleRequest) error {
	if s.borrow {
		slab := getRecordSlab()
		done, err := s.codec.batches.decodeInPlace(body, req, slab)
		if done {
			req.release = func() { putRecordSlab(req.batch.Records) }
			return err
		}
		putRecordSlab(slab)
	}
	return s.codec.decodeRequest(body, req)
}

// recordSlabs recycles the records of batches decoded in place, each slab
// zero.
var recordSlabs sync.Pool // of *[]record.Record

// maxRecordSlab bounds the slabs recordSlabs keeps (in records).
const maxRecordSlab = 1 << 16

func getRecordSlab() []record.Record {
	if p, ok := recordSlabs.Get().(*[]record.Record); ok {
		return *p
	}
	return nil
}

// putRecordSlab clears recs, the records of a batch (of a slab: what lies
// past their length is zero), and keeps their slab for another batch.
func putRecordSlab(recs []record.Record) {
	if cap(recs) == 0 || cap(recs) > maxRecordSlab {
		return
	}
	clear(recs)
	recs = recs[:0]
	recordSlabs.Put(&recs)
}

// sendError answers call id with err's gRPC status.
func (s *callServer) sendError(id uint64, err error) {
	body, merr := proto.Marshal(status.Convert(err).Proto())
	if merr != nil {
		body, _ = proto.Marshal(status.New(codes.Internal, err.Error()).Proto())
	}
	s.send(id, frameError, body)
}

// send writes one frame; a write that fails ends the connection.
func (s *callServer) send(id uint64, kind byte, body ...[]byte) {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	h := frameHeader(n, id, kind)
	bufs := make(net.Buffers, 0, 1+len(body))
	bufs = append(bufs, h[:])
	bufs = append(bufs, body...)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := bufs.WriteTo(s.conn); err != nil {
		fmt.Fprintf(os.Stderr, "weir handler: writing to the call socket: %v\n", err)
		_ = s.conn.Close()
	}
}

// cancelAll cancels every call being served.
func (s *callServer) cancelAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cancel := range s.cancels {
		cancel()
	}
}
