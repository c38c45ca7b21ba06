package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weirhq/weir/plugins/pb"
)

// grpcServer is the plugin side of the protocol: it serves a Handler over
// gRPC, registered with serviceDesc.
type grpcServer struct {
	impl Handler
	// batches is the process's batch file, if the host passed one and the
	// server's codec reads it (Serve's server).
	batches *batchReader
	// callSocket says the process serves Handle on its call socket too
	// (Serve's server, when the host passed one).
	callSocket bool
}

// serviceDesc is the Handler service of handler.proto (pb.Handler_ServiceDesc)
// with methods of our own: Handle's request decodes straight into a Batch
// and its reply encodes straight from a Result (wireCodec), not through the
// generated types. The service, methods and messages on the wire are the
// same.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: pb.Handler_ServiceDesc.ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Describe", Handler: describeMethod},
		{MethodName: "Handle", Handler: handleMethod},
	},
	Metadata: pb.Handler_ServiceDesc.Metadata,
}

func describeMethod(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(pb.DescribeRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*grpcServer)
	if interceptor == nil {
		return s.Describe(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.Handler_Describe_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.Describe(ctx, req.(*pb.DescribeRequest))
	})
}

func handleMethod(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(handleRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*grpcServer)
	if interceptor == nil {
		return s.handle(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.Handler_Handle_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.handle(ctx, req.(*handleRequest))
	})
}

// handleRequest is the request of Handle as the server decodes it: wireCodec
// straight into batch; a server made without it (GRPCPlugin served by a
// go-plugin server other than Serve's) through the protobuf runtime, into
// the pb.Batch its ProtoReflect makes.
type handleRequest struct {
	batch Batch
	pb    *pb.Batch
	// shared says where the batch's records were in the batch file, and
	// where its result may go (replyCap 0: inline).
	shared shared
	// release, if set, gives back the storage of batch's records, decoded
	// in place (callServer.decode), once the call is answered.
	release func()
}

// ProtoReflect makes handleRequest a proto.Message for the protobuf codec.
func (r *handleRequest) ProtoReflect() protoreflect.Message {
	if r.pb == nil {
		r.pb = new(pb.Batch)
	}
	return r.pb.ProtoReflect()
}

// get returns the batch decoded.
func (r *handleRequest) get() *Batch {
	if r.pb != nil {
		return batchFromPB(r.pb)
	}
	return &r.batch
}

// Describe answers with the handler's Info; a ProtocolVersion of 0 is
// filled in with the version this package speaks.
func (s *grpcServer) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, errorToStatus(err)
	}
	if info.ProtocolVersion == 0 {
		info.ProtocolVersion = ProtocolVersion
	}
	return &pb.DescribeResponse{
		Name:             info.Name,
		Version:          info.Version,
		ProtocolVersion:  clampUint32(info.ProtocolVersion),
		ReadsBatchFile:   s.batches != nil,
		BatchFileCheck:   s.batches.checkBytes(),
		ServesCallSocket: s.callSocket,
	}, nil
}

// handleReply is the reply of Handle: wireCodec encodes res straight
// (encodeResult); the protobuf codec encodes the pb.Result its ProtoReflect
// converts res to.
type handleReply struct {
	res *Result
	pb  *pb.Result
	// file, if set, is the batch file, where wireCodec writes the result
	// (at replyAt, if it takes at most replyCap bytes) instead of sending
	// it.
	file     io.WriterAt
	replyAt  int64
	replyCap int
}

// toBatchFile writes the encoded result out into the batch file and returns
// the reply saying so; or out itself, if it does not fit or the write
// fails.
func (r *handleReply) toBatchFile(out mem.BufferSlice) mem.BufferSlice {
	n := out.Len()
	if n == 0 || n > r.replyCap {
		return out
	}
	off := r.replyAt
	for _, b := range out {
		if _, err := r.file.WriteAt(b.ReadOnlyData(), off); err != nil {
			return out
		}
		off += int64(b.Len())
	}
	out.Free()
	return mem.BufferSlice{mem.SliceBuffer(appendSharedResult(nil, n))}
}

// ProtoReflect makes handleReply a proto.Message for the protobuf codec.
func (r *handleReply) ProtoReflect() protoreflect.Message {
	if r.pb == nil {
		r.pb = resultToPB(r.res)
	}
	return r.pb.ProtoReflect()
}

// handle is Handle of a request, whose result goes into the batch file if
// the request offered room there.
func (s *grpcServer) handle(ctx context.Context, in *handleRequest) (*handleReply, error) {
	handlerProcs.enter()
	defer handlerProcs.exit()
	resp, err := s.Handle(ctx, in.get())
	if err == nil && s.batches != nil && in.shared.replyCap > 0 {
		resp.file, resp.replyAt, resp.replyCap = s.batches, int64(in.shared.replyOffset), int(in.shared.replyCap)
	}
	return resp, err
}

// Handle calls the handler with the batch and returns its result. A panic
// in the handler fails the batch with ClassHandler (the stack goes to
// stderr, which the host logs) instead of killing the process.
func (s *grpcServer) Handle(ctx context.Context, b *Batch) (resp *handleReply, err error) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "panic in handler: %v\n%s", v, debug.Stack())
			resp, err = nil, errorToStatus(&Error{
				Class: ClassHandler,
				// Retryable so that the host's retries and bisection can
				// isolate the record that triggers it.
				Retryable: true,
				Err:       fmt.Errorf("panic in handler: %v", v),
			})
		}
	}()
	res, err := s.impl.Handle(ctx, b)
	if err != nil {
		return nil, errorToStatus(err)
	}
	return &handleReply{res: res}, nil
}

// errorToStatus turns a handler's error into a gRPC status carrying a
// BatchError, so the error's class and retryability reach the host.
func errorToStatus(err error) error {
	code := codes.Unknown
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case ClassOf(err) == ClassInvalidInput:
		code = codes.InvalidArgument
	}
	st := status.New(code, err.Error())
	withDetails, derr := st.WithDetails(&pb.BatchError{
		Class:     pb.ErrorClass(ClassOf(err)),
		Retryable: IsRetryable(err),
		Message:   err.Error(),
	})
	if derr != nil {
		return st.Err()
	}
	return withDetails.Err()
}
