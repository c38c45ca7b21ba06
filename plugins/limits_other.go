//go:build !linux

package plugins

import "errors"

// MemoryLimitSupported reports whether PoolConfig.MemoryLimit is enforced
// on this platform.
const MemoryLimitSupported = false

func limitMemory(int, int64) error {
	return errors.New("handler memory limits are only supported on Linux")
}
