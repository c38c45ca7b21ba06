package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirhq/weir/plugins/pb"
)

// grpcServer is the plugin side of the protocol: it serves a Handler over
// gRPC.
type grpcServer struct {
	pb.UnimplementedHandlerServer
	impl Handler
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
		Name:            info.Name,
		Version:         info.Version,
		ProtocolVersion: clampUint32(info.ProtocolVersion),
	}, nil
}

// Handle converts the batch, calls the handler, and converts its result. A
// panic in the handler fails the batch with ClassHandler (the stack goes to
// stderr, which the host logs) instead of killing the process.
func (s *grpcServer) Handle(ctx context.Context, req *pb.Batch) (resp *pb.Result, err error) {
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
	res, err := s.impl.Handle(ctx, batchFromPB(req))
	if err != nil {
		return nil, errorToStatus(err)
	}
	return resultToPB(res), nil
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
