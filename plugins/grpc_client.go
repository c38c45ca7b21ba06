package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weirhq/weir/plugins/pb"
)

// grpcClient is the host side of the protocol: a Handler that calls a plugin
// over gRPC. It is safe for concurrent use (the Pool makes one call at a
// time per instance anyway).
type grpcClient struct {
	client pb.HandlerClient
	conn   grpc.ClientConnInterface
	// done is canceled by go-plugin when the plugin process exits.
	done context.Context
	// readsBatchFile and batchFileCheck are what the process said in
	// Describe: it opened the batch file its host passed it, which started
	// with batchFileCheck.
	readsBatchFile bool
	batchFileCheck []byte
	// peerCert is the certificate the process presented (DER), nil
	// without TLS.
	peerCert []byte
	// batches, if set (by the Pool, after Describe, before any Handle),
	// is the process's batch file: Handle writes records there.
	batches *batchFile
	// servesCallSocket is what the process said in Describe: it serves
	// Handle on the call socket its host passed it. calls, if set (by the
	// Pool, as batches), is the host's end of that socket: Handle goes
	// there instead of over gRPC.
	servesCallSocket bool
	calls            *callConn
}

var _ Handler = (*grpcClient)(nil)

func newGRPCClient(done context.Context, conn grpc.ClientConnInterface) *grpcClient {
	return &grpcClient{client: pb.NewHandlerClient(conn), conn: conn, done: done}
}

// callOptions raise the send limit of every call (go-plugin's own dial
// options already do; this keeps the limit ours and explicit). The receive
// limit is the pool's (PoolConfig.MaxReplyBytes, a dial option), so it is
// not set per call, which would override it.
var callOptions = []grpc.CallOption{
	grpc.MaxCallSendMsgSize(MaxMessageSize),
}

// bind ties ctx to the plugin's lifetime: the returned context is canceled
// with cause ErrPluginExited when the plugin process exits.
func (c *grpcClient) bind(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.done, func() { cancel(ErrPluginExited) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// Describe asks the plugin who it is.
func (c *grpcClient) Describe(ctx context.Context) (Info, error) {
	ctx, done := c.bind(ctx)
	defer done()
	var from peer.Peer
	resp, err := c.client.Describe(ctx, &pb.DescribeRequest{HostProtocolVersion: ProtocolVersion},
		append([]grpc.CallOption{grpc.Peer(&from)}, callOptions...)...)
	if err != nil {
		return Info{}, c.callError(ctx, "describe", err)
	}
	if ti, ok := from.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		c.peerCert = ti.State.PeerCertificates[0].Raw
	}
	c.readsBatchFile, c.batchFileCheck = resp.GetReadsBatchFile(), resp.GetBatchFileCheck()
	c.servesCallSocket = resp.GetServesCallSocket()
	return Info{
		Name:            resp.GetName(),
		Version:         resp.GetVersion(),
		ProtocolVersion: int(resp.GetProtocolVersion()),
	}, nil
}

// handleOptions are callOptions plus the codec of the hand-written batch
// and result encodings (see wire.go).
var handleOptions = append([]grpc.CallOption{grpc.ForceCodecV2(wireCodec{})}, callOptions...)

// Handle sends b to the plugin and checks its reply. Errors are *Error
// values: ClassCrash wrapping ErrPluginExited, ClassTimeout wrapping
// ErrTimeout, ClassBadReply, or the class the handler gave.
func (c *grpcClient) Handle(ctx context.Context, b *Batch) (*Result, error) {
	w := encodeRecords(b)
	w.setHead(b)
	res, err := c.handleWire(ctx, w)
	if err == nil {
		w.release()
	}
	return res, err
}

// handleWire is Handle of a batch already encoded (its head included). Its
// records go through the batch file when the process has one and they fit
// in a free slot, inline otherwise.
func (c *grpcClient) handleWire(ctx context.Context, w *wireBatch) (*Result, error) {
	ctx, done := c.bind(ctx)
	defer done()
	resp := &wireReply{n: w.n}
	if bf := c.batches; bf != nil && w.size > 0 {
		if slot, ok := bf.take(w.size); ok {
			// The slot is free again once the call has returned: with a
			// reply, the handler is done with it; without one, the
			// process is replaced before it gets another call.
			defer bf.put(slot)
			if off, err := bf.write(slot, w); err == nil {
				resp.shared, resp.replyAt, resp.replyCap = bf, bf.replyAt(slot), bf.replyCap
				w.head = appendSharedRecords(w.head, shared{offset: uint64(off), length: uint64(w.size),
					replyOffset: uint64(resp.replyAt), replyCap: uint64(resp.replyCap)})
				w.shared = true
			}
		}
	}
	if !w.shared {
		w.inline()
	}
	var err error
	if c.calls != nil {
		err = c.calls.call(ctx, w, resp)
	} else {
		err = c.conn.Invoke(ctx, pb.Handler_Handle_FullMethodName, w, resp, handleOptions...)
	}
	if err != nil {
		return nil, c.callError(ctx, "handle", err)
	}
	if resp.bad != nil {
		return nil, resp.bad
	}
	return &resp.res, nil
}

// callError turns the error of a call into the plugins error taxonomy.
func (c *grpcClient) callError(ctx context.Context, op string, err error) error {
	if c.done.Err() != nil || errors.Is(context.Cause(ctx), ErrPluginExited) {
		return &Error{Class: ClassCrash, Retryable: true, Err: fmt.Errorf("%s: %w: %w", op, ErrPluginExited, err)}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Class: ClassHandler, Retryable: true, Err: fmt.Errorf("%s: %w", op, err)}
	}
	switch st.Code() {
	case codes.Unavailable:
		// The connection to the plugin is gone: over a local socket that
		// means the process died (go-plugin notices a moment later).
		return &Error{Class: ClassCrash, Retryable: true, Err: fmt.Errorf("%s: %w: %w", op, ErrPluginExited, err)}
	case codes.DeadlineExceeded:
		// The call's deadline passed: gRPC sends it to the plugin, whose
		// reset may arrive a moment before our own timer fires.
		cause := ctx.Err()
		if cause == nil {
			cause = err
		}
		return &Error{Class: ClassTimeout, Retryable: true, Err: fmt.Errorf("%s: %w: %w", op, ErrTimeout, cause)}
	case codes.Canceled:
		if ctx.Err() != nil {
			return fmt.Errorf("%s: call abandoned: %w", op, context.Cause(ctx))
		}
	case codes.Internal:
		// A reply (or a batch) with a protobuf string that is not UTF-8:
		// the same records give the same reply, so it is not retried as
		// is (the host bisects the batch instead).
		if strings.Contains(st.Message(), "invalid UTF-8") {
			return &Error{Class: ClassBadReply, Retryable: false,
				Err: fmt.Errorf("%s: reply holds a string that is not valid UTF-8 (header keys, sink names and messages must be): %s", op, st.Message())}
		}
	case codes.ResourceExhausted:
		// A reply over the size limit, refused by the host's receiver or
		// the handler's sender: the same records give the same reply, so
		// it is not retried as is (the host bisects the batch instead).
		if strings.Contains(st.Message(), "larger than max") {
			return &Error{Class: ClassBadReply, Retryable: false,
				Err: fmt.Errorf("%s: reply over the size limit (handler.max_reply_bytes): %s", op, st.Message())}
		}
	}
	for _, d := range st.Details() {
		if be, ok := d.(*pb.BatchError); ok {
			msg := be.GetMessage()
			if msg == "" {
				msg = st.Message()
			}
			return &Error{Class: classFromPB(be.GetClass()), Retryable: be.GetRetryable(), Err: &RemoteError{Op: op, Message: msg}}
		}
	}
	// No BatchError: a handler in another language, or a gRPC-level
	// failure. Classify from the status code.
	class, retryable := ClassHandler, true
	switch st.Code() {
	case codes.InvalidArgument:
		class, retryable = ClassInvalidInput, false
	case codes.Unimplemented:
		class = ClassBadReply
	}
	return &Error{Class: class, Retryable: retryable, Err: &RemoteError{Op: op, Code: st.Code().String(), Message: st.Message()}}
}

// RemoteError is the cause of an *Error returned by the handler process
// itself: its message crossed the plugin boundary as text.
type RemoteError struct {
	// Op is the call that failed: "describe" or "handle".
	Op string
	// Code is the gRPC status code name when the handler did not attach a
	// BatchError; "" otherwise.
	Code string
	// Message is what the handler said.
	Message string
}

func (e *RemoteError) Error() string {
	if e.Code != "" {
		return e.Op + ": handler error (" + e.Code + "): " + e.Message
	}
	return e.Op + ": handler error: " + e.Message
}
