//go:build !linux

package plugins

import (
	"errors"
	"os"
)

// newBatchFile fails: batch files are memfds, which only Linux has; every
// batch goes inline.
func newBatchFile(int, int, int) (*batchFile, error) {
	return nil, errors.New("batch files are only supported on Linux")
}

// writeParts writes parts one after the other into f at offset.
func writeParts(f *os.File, parts [][]byte, offset int64) error {
	for _, p := range parts {
		if _, err := f.WriteAt(p, offset); err != nil {
			return err
		}
		offset += int64(len(p))
	}
	return nil
}

// unmap does nothing: batch files are not mapped here.
func unmap([]byte) error { return nil }

// mapShared does not map: batch files are only supported on Linux.
func mapShared(*os.File, int64) []byte { return nil }
