package plugins

import (
	"context"
	"errors"
)

// Sentinel errors returned (wrapped) by the Pool and the gRPC client. Test
// for them with errors.Is.
var (
	// ErrPluginExited means the plugin process died before or during the
	// call. The batch was not handled; its class is ClassCrash.
	ErrPluginExited = errors.New("plugin process exited")
	// ErrTimeout means the call exceeded its deadline (the pool's per-call
	// timeout or the caller's context deadline). Its class is ClassTimeout.
	ErrTimeout = errors.New("plugin call timed out")
	// ErrPoolClosed means the pool was closed before the call could run.
	ErrPoolClosed = errors.New("plugin pool closed")
	// ErrDigestMismatch means the plugin executable's SHA-256 is not the
	// one PoolConfig.SHA256 pins: the process was not started.
	ErrDigestMismatch = errors.New("plugin executable does not match its pinned sha256")
)

// Error is an error with an ErrorClass: a whole-batch failure returned by a
// handler (it crosses the plugin boundary as the proto BatchError) or a
// host-side failure of the call (timeout, crash, bad reply).
//
// Handler code creates one through the SDK (sdk.Invalid, sdk.Retryable) or
// directly; the host reads it with ClassOf and IsRetryable. Error unwraps to
// Err, so errors.Is(err, ErrPluginExited) and friends work through it and
// through any %w wrapping around it.
type Error struct {
	// Class says what kind of failure this is.
	Class ErrorClass
	// Retryable says whether trying the same records again may succeed.
	Retryable bool
	// Err is the cause; never nil.
	Err error
}

// NewError returns an *Error of class with cause err. It returns nil if err
// is nil.
func NewError(class ErrorClass, retryable bool, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: class, Retryable: retryable, Err: err}
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Class.String() + " error"
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the ErrorClass of err: the class of the outermost *Error in
// its chain; ClassTimeout for ErrTimeout and context.DeadlineExceeded;
// ClassCrash for ErrPluginExited; ClassUnspecified otherwise (nil included).
func ClassOf(err error) ErrorClass {
	if err == nil {
		return ClassUnspecified
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Class
	}
	switch {
	case errors.Is(err, ErrPluginExited):
		return ClassCrash
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	}
	return ClassUnspecified
}

// IsRetryable reports whether handling the same records again may succeed
// after err: the Retryable flag of the outermost *Error in its chain; true for
// timeouts and crashes; false for ErrPoolClosed, context.Canceled and
// ClassInvalidInput; true for any other error (an unclassified error is
// presumed transient, and the host's retry limit bounds it).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Retryable
	}
	switch {
	case errors.Is(err, ErrPoolClosed), errors.Is(err, context.Canceled):
		return false
	}
	return true
}
