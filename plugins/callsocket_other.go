//go:build !unix

package plugins

import (
	"errors"
	"net"
	"os"
)

// newCallSocket fails off Unix: calls go over gRPC.
func newCallSocket() (host net.Conn, handler *os.File, err error) {
	return nil, nil, errors.New("call sockets are Unix socket pairs")
}
