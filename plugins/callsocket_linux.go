package plugins

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// newCallSocket makes a handler process's call socket: a connected pair of
// Unix stream sockets, the host's end ready for use and the process's to
// pass to it (both close-on-exec here; os/exec passes ExtraFiles across
// the exec).
func newCallSocket() (host net.Conn, handler *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the call socket: %w", err)
	}
	hf := os.NewFile(uintptr(fds[0]), "weir-calls")
	defer hf.Close() // FileConn holds a copy
	host, err = net.FileConn(hf)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("creating the call socket: %w", err)
	}
	return host, os.NewFile(uintptr(fds[1]), "weir-calls"), nil
}
