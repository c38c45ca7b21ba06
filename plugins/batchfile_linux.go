package plugins

import (
	"crypto/rand"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// newBatchFile creates the batch file of a process serving up to slots
// calls at once: a memfd of slots*2*slotSize bytes (memory is used only as
// it is written), sealed against growing and shrinking so that the handler
// process cannot resize it. A result may take replyCap bytes of its slot.
func newBatchFile(slots, slotSize, replyCap int) (*batchFile, error) {
	fd, err := unix.MemfdCreate("weir-batches", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("creating the batch file: %w", err)
	}
	f := os.NewFile(uintptr(fd), "weir-batches")
	if err := f.Truncate(int64(slots) * 2 * int64(slotSize)); err != nil {
		f.Close()
		return nil, fmt.Errorf("sizing the batch file: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("sealing the batch file: %w", err)
	}
	bf := &batchFile{f: f, slotSize: slotSize, replyCap: min(replyCap, slotSize)}
	if _, err := rand.Read(bf.check[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("making the batch file's check: %w", err)
	}
	if _, err := f.WriteAt(bf.check[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing the batch file's check: %w", err)
	}
	// Mapped, records are written with a copy (see batchFile.mapped);
	// where mapping fails, with pwrite.
	if m, err := unix.Mmap(fd, 0, slots*2*slotSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		bf.mapped = m
	}
	free := make([]int, slots)
	for i := range free {
		free[i] = slots - 1 - i // slot 0 is taken first
	}
	bf.free = free
	return bf, nil
}

// unmap undoes the mapping of a batch file (nil: none).
func unmap(m []byte) error {
	if m == nil {
		return nil
	}
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("unmapping the batch file: %w", err)
	}
	return nil
}

// maxIovecs is how many parts writeParts hands the kernel in one call
// (Linux's IOV_MAX is 1024).
const maxIovecs = 1024

// writeParts writes parts one after the other into f at offset, with one
// system call per maxIovecs parts (pwritev), without copying them together
// first.
func writeParts(f *os.File, parts [][]byte, offset int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(parts) > 0 {
		iovs := parts[:min(len(parts), maxIovecs)]
		parts = parts[len(iovs):]
		var n int
		var werr error
		// Through the file's own descriptor, which a Close cannot
		// release under the write.
		if err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Pwritev(int(fd), iovs, offset)
			return true
		}); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		// A short write (which a memfd does not do): the rest one part
		// at a time.
		for _, p := range iovs {
			if n >= len(p) {
				n -= len(p)
			} else if _, err := f.WriteAt(p[n:], offset+int64(n)); err != nil {
				return err
			} else {
				n = 0
			}
			offset += int64(len(p))
		}
	}
	return nil
}

// mapShared maps size bytes of a handler's batch file f, shared, for
// reading and writing; nil if it cannot.
func mapShared(f *os.File, size int64) []byte {
	if size <= 0 || size > math.MaxInt {
		return nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return m
}
