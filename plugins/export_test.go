package plugins

import "os"

// Test hooks for the external tests in package plugins_test.

// PIDs returns the process id of each instance's current process.
func (p *Pool) PIDs() []int { return p.pids() }

// IdleCount is the number of instances waiting for a call.
func (p *Pool) IdleCount() int { return len(p.idle) }

// BatchFileReads is the number of batches this process (a handler) read
// from its batch file.
func BatchFileReads() int64 { return batchFileReads.Load() }

// BatchFileResults is the number of results this process (a host) read
// from batch files.
func BatchFileResults() int64 { return batchFileResults.Load() }

// ServeWithWrongBatchFileCheck serves h as Serve does, except that it says
// in Describe that it reads its batch file, with check bytes that are not
// the file's, and does not read it: a handler the host must not trust with
// one.
func ServeWithWrongBatchFileCheck(h Handler) {
	serve(h, &batchReader{check: make([]byte, batchCheckSize)}, nil, nil)
}

// HostMadeTLSKeys says, for each instance, whether its process serves TLS
// with the key the host made for it.
func (p *Pool) HostMadeTLSKeys() []bool {
	return eachInstance(p, func(inst *instance) bool { return inst.hostKeys })
}

// ServeMakingItsOwnTLSKey serves h as Serve does, except that it ignores
// the TLS key the host passed, as a handler built with an SDK before
// EnvTLSFD does: go-plugin makes one and sends its certificate in the
// handshake.
func ServeMakingItsOwnTLSKey(h Handler) {
	os.Unsetenv(EnvTLSFD)
	Serve(h)
}

// SocketCalls is the number of calls this process (a host) made over call
// sockets.
func SocketCalls() int64 { return socketCalls.Load() }

// ServeWithoutCallSocket serves h as Serve does, except that it ignores the
// call socket the host passed, as a handler built with an SDK before
// EnvCallFD does: its calls come over gRPC.
func ServeWithoutCallSocket(h Handler) {
	os.Unsetenv(EnvCallFD)
	Serve(h)
}

// BatchesDecodedInPlace is the number of batches this process (a handler)
// decoded where their records were in its batch file.
func BatchesDecodedInPlace() int64 { return batchesInPlace.Load() }
