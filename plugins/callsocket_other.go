//go:build !linux

package plugins

import (
	"errors"
	"net"
	"os"
)

// newCallSocket fails off Linux: calls go over gRPC.
func newCallSocket() (host net.Conn, handler *os.File, err error) {
	return nil, nil, errors.New("call sockets are only supported on Linux")
}
