package plugins

import "google.golang.org/grpc"

// Flow control and buffering of the connection between the host and a
// handler process. gRPC's defaults suit many streams over a network: 64 KiB
// flow-control windows that grow with a bandwidth estimate (made with
// pings), and 32 KiB read and write buffers. A handler connection is a local
// socket carrying batches of up to a few MiB (batch.max_bytes, 1 MiB by
// default), one call at a time per process by default. With the defaults
// the receiver sends a WINDOW_UPDATE every 16 KiB it reads, and the sender
// waits for them: a write and a read syscall, and a wake-up of each side's
// goroutines, for every frame of a batch. With windows larger than a batch
// it flows through at once, and larger buffers write it with fewer
// syscalls.
const (
	// windowSize is the flow-control window of the connection and of each
	// call, both directions (static: no bandwidth estimation).
	windowSize = 4 << 20
	// bufferSize is the size of the read and write buffers of each side.
	bufferSize = 256 << 10
)

// streamWorkers is the number of goroutines a handler process's gRPC
// server keeps to serve calls. By default it starts a goroutine per call,
// whose stack then grows, copied, to the depth of the call (about 4% of the
// noop handler's CPU); a worker's stack stays grown. A call that finds every
// worker busy gets a goroutine of its own, as before.
const streamWorkers = 4

// serverTransportOptions are the gRPC server options of a handler process.
func serverTransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.ReadBufferSize(bufferSize),
		grpc.WriteBufferSize(bufferSize),
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// dialTransportOptions are the gRPC dial options of the host's connection
// to a handler process.
func dialTransportOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
		grpc.WithReadBufferSize(bufferSize),
		grpc.WithWriteBufferSize(bufferSize),
	}
}
