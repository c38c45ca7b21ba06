//go:build !linux

package plugins

import "errors"

// newBatchFile fails: batch files are memfds, which only Linux has; every
// batch goes inline.
func newBatchFile(int, int, int) (*batchFile, error) {
	return nil, errors.New("batch files are only supported on Linux")
}
