//go:build linux

package plugins

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MemoryLimitSupported reports whether PoolConfig.MemoryLimit is enforced
// on this platform.
const MemoryLimitSupported = true

// limitMemory caps the memory process pid may allocate at limit bytes with
// RLIMIT_DATA, set from outside with prlimit(2) right after the process
// started (its handshake done, before it is given any batch).
//
// RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 RLIMIT_DATA counts the
// private writable mappings a process has committed (heap, anonymous mmap),
// which is what a leak grows, while RLIMIT_AS also counts address space
// merely reserved. Go reserves hundreds of MiB of PROT_NONE arenas at start
// and V8 reserves gigabytes, so an RLIMIT_AS small enough to matter stops
// them starting. A process over its limit gets ENOMEM from mmap/brk: the Go
// runtime dies with "fatal error: runtime: out of memory", CPython raises
// MemoryError. The limit is inherited by the process's children.
func limitMemory(pid int, limit int64) error {
	lim := unix.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
		return fmt.Errorf("setting the memory limit (RLIMIT_DATA %d bytes) of pid %d: %w", limit, pid, err)
	}
	return nil
}
