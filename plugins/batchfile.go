package plugins

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirhq/weir/record"
)

// The batch file carries a batch's records from the host to a Go handler
// process outside the gRPC connection, and the handler's result back: the
// host writes the records of a call into its own part of a memory file both
// processes hold, and the call says where they are (Batch.shared_records,
// see handler.proto) and where the handler may write its result, which the
// host reads once the call has returned. Over the
// connection, a batch of 100-byte records costs more in TLS encryption, in
// HTTP/2 framing and in the wake-ups of both sides per 16 KiB frame than
// encoding and decoding it does; through the file it is one copy in and one
// out. The call itself (its deadline, where the records are, the reply)
// goes over the process's call socket (callsocket.go), or over the
// connection, authenticated as before: the file is created by the host for
// one process and passed to it at start, and nothing else can open it.
//
// Each of a process's concurrent calls has a slot of the file to itself
// until the call returns: the records, then as much room for the result. A
// call that returns without a reply (a timeout, an abandoned call, a crash)
// breaks the process, which gets no other call before it is replaced, so a
// slot is never rewritten while its handler may still read it. Both sides
// map the file (where they can), but each copies what it writes in and what
// it reads out, and the host checks a result read from the file as it
// checks any reply, so what the handler does to the file cannot corrupt the
// host's memory, nor the host's next batch what the handler was given.

// EnvBatchFD names the file descriptor of the batch file in a handler
// process's environment.
const EnvBatchFD = "WEIR_BATCH_FD"

// DefaultBatchFileSlot is the default PoolConfig.BatchFileSlot: room for the
// records of a batch of batch.max_bytes (1 MiB by default) several times
// over, and as much for its result. A batch whose records take more is sent
// inline, and so is a result that takes more.
const DefaultBatchFileSlot = 4 << 20

// batchCheckSize is the size of the random bytes the host writes at the
// start of a batch file before starting its process, which the handler
// reads back to it in Describe (DescribeResponse.batch_file_check).
const batchCheckSize = 16

// batchFile is the host's side of a handler process's batch file.
type batchFile struct {
	f *os.File
	// check is what the file starts with until the first call: the
	// handler must answer it in Describe.
	check    [batchCheckSize]byte
	slotSize int // of the records, and of the result after them
	// replyCap is the room for a result: slotSize, or the pool's
	// MaxReplyBytes if smaller.
	replyCap int

	mu   sync.Mutex
	free []int // slot numbers; the last one freed is taken first

	// mapped is the file mapped into the host's memory (Linux), which
	// write copies records into: a copy, where pwrite also looked up and
	// locked each page of the file in the kernel. nil if it is not mapped
	// (any more): then write uses pwrite. mapMu keeps Close from unmapping
	// it under a write. The host only writes there: results are read with
	// pread (readResult), into memory the handler cannot change.
	mapMu  sync.RWMutex
	mapped []byte
}

// take reserves a slot for n bytes of records; ok is false if n does not
// fit in a slot or every slot is taken.
func (bf *batchFile) take(n int) (slot int, ok bool) {
	if n > bf.slotSize {
		return 0, false
	}
	bf.mu.Lock()
	defer bf.mu.Unlock()
	if len(bf.free) == 0 {
		return 0, false
	}
	slot = bf.free[len(bf.free)-1]
	bf.free = bf.free[:len(bf.free)-1]
	return slot, true
}

// put gives slot back.
func (bf *batchFile) put(slot int) {
	bf.mu.Lock()
	bf.free = append(bf.free, slot)
	bf.mu.Unlock()
}

// write copies w's records (recs, or its parts) into slot and returns
// where they are.
func (bf *batchFile) write(slot int, w *wireBatch) (offset int64, err error) {
	offset = int64(slot) * 2 * int64(bf.slotSize)
	if bf.writeMapped(offset, w) {
		return offset, nil
	}
	if w.parts != nil {
		err = writeParts(bf.f, w.parts, offset)
	} else {
		_, err = bf.f.WriteAt(w.recs, offset)
	}
	if err != nil {
		return 0, fmt.Errorf("writing a batch to the batch file: %w", err)
	}
	return offset, nil
}

// writeMapped copies w's records into the mapped file at offset; false if
// the file is not mapped (any more), or the copy faulted.
func (bf *batchFile) writeMapped(offset int64, w *wireBatch) bool {
	bf.mapMu.RLock()
	defer bf.mapMu.RUnlock()
	if bf.mapped == nil || offset+int64(w.size) > int64(len(bf.mapped)) {
		return false
	}
	return copyRecords(bf.mapped[offset:offset+int64(w.size)], w)
}

// copyRecords copies w's records (its parts, or recs) into dst, which has
// their size, and reports whether it could: a fault on dst (a SIGBUS, if
// the kernel could not back a page of the file) fails the copy instead of
// the process. The file is sealed against shrinking, so no page of it can
// go away under the mapping.
func copyRecords(dst []byte, w *wireBatch) (ok bool) {
	return withoutFaults(func() {
		if w.parts == nil {
			copy(dst, w.recs)
			return
		}
		for _, p := range w.parts {
			dst = dst[copy(dst, p):]
		}
	})
}

// withoutFaults runs f, which touches a mapped batch file, and reports
// whether it ran without a fault: a SIGBUS (a page the kernel could not
// back) fails f instead of the process.
func withoutFaults(f func()) (ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			ok = false
		}
	}()
	f()
	return true
}

// replyAt is where the result of slot's call may be written.
func (bf *batchFile) replyAt(slot int) int64 {
	return int64(slot)*2*int64(bf.slotSize) + int64(bf.slotSize)
}

// Close unmaps the file and closes the host's descriptor of it; the memory
// goes once the handler process has exited too. A write racing with it
// waits for the unmapping, or fails (and that call sends its records
// inline).
func (bf *batchFile) Close() error {
	if bf == nil {
		return nil
	}
	bf.mapMu.Lock()
	m := bf.mapped
	bf.mapped = nil
	bf.mapMu.Unlock()
	err := unmap(m)
	return errors.Join(err, bf.f.Close())
}

// shared is a SharedRecords message.
type shared struct {
	offset, length        uint64
	replyOffset, replyCap uint64
}

// appendSharedRecords appends Batch field 7, s, to buf.
func appendSharedRecords(buf []byte, s shared) []byte {
	vs := [4]uint64{s.offset, s.length, s.replyOffset, s.replyCap}
	size := 0
	for _, v := range vs {
		size += 1 + protowire.SizeVarint(v)
	}
	buf = append(buf, byte(7<<3|protowire.BytesType))
	buf = appendVarint(buf, uint64(size))
	for i, v := range vs {
		buf = append(buf, byte(i+1)<<3|byte(protowire.VarintType))
		buf = protowire.AppendVarint(buf, v)
	}
	return buf
}

// appendSharedResult appends Result field 3, a SharedResult of length
// bytes, to buf.
func appendSharedResult(buf []byte, length int) []byte {
	buf = append(buf, byte(3<<3|protowire.BytesType))
	buf = appendVarint(buf, uint64(1+protowire.SizeVarint(uint64(length))))
	buf = append(buf, byte(1<<3|protowire.VarintType))
	return protowire.AppendVarint(buf, uint64(length))
}

// batchReader is a handler process's side of its batch file.
type batchReader struct {
	f    file
	size int64
	// check is what the file started with when the process opened it.
	check []byte
	// mapped is the file mapped into the process's memory (Linux), nil if
	// it could not be: records are copied out of it, and results into it,
	// instead of with pread and pwrite (which look up and lock each page
	// in the kernel), and a batch's copy goes into memory that need not be
	// cleared first. What the handler is given is its own copy, as with
	// pread (the host rewrites a slot once its call has returned), unless
	// it borrows its records (decodeInPlace).
	mapped []byte
}

// file is what a handler process does with its batch file.
type file interface {
	io.ReaderAt
	io.WriterAt
}

// openBatchFile opens the batch file the host passed, if it did (EnvBatchFD
// names a descriptor of a regular file); nil otherwise, and the handler
// then gets its batches inline.
func openBatchFile() *batchReader {
	f := inheritedFile(EnvBatchFD, "weir-batches")
	if f == nil {
		return nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() < batchCheckSize {
		return nil
	}
	// Read now, before the host could write a batch over it (it does
	// only after Describe).
	check := make([]byte, batchCheckSize)
	if _, err := f.ReadAt(check, 0); err != nil {
		return nil
	}
	return &batchReader{f: f, size: st.Size(), check: check, mapped: mapShared(f, st.Size())}
}

// inheritedFile is the file descriptor the host passed in the environment
// variable env (a number from 3 on, the first of the inherited files), as a
// file called name; nil if env does not name one.
func inheritedFile(env, name string) *os.File {
	fd, err := strconv.Atoi(os.Getenv(env))
	if err != nil || fd < 3 {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

// errNoBatchFile fails a batch whose records are in a batch file this
// process does not have: decoding it without them would hand the handler an
// empty batch, and the host would take every record for handled.
var errNoBatchFile = errors.New("the batch's records are in a batch file this handler process did not open")

// inline returns buf, a Batch, with its shared records read from the batch
// file and appended: the batch as if sent inline (field 7 stays, and batch
// decoders skip it), and where its result may go. A batch without shared
// records is returned as is.
func (r *batchReader) inline(buf []byte) ([]byte, shared, error) {
	s, found, err := r.locate(buf)
	if err != nil || !found {
		return buf, shared{}, err
	}
	out, err := r.readAppend(buf, s.offset, s.length)
	if err != nil {
		return nil, shared{}, fmt.Errorf("reading the batch's records from the batch file: %w", err)
	}
	batchFileReads.Add(1)
	return out, s, nil
}

// locate returns where buf, a Batch, says its records are in the file,
// checked, and where its result may go (replyCap 0: inline); found is
// false for a batch whose records are inline.
func (r *batchReader) locate(buf []byte) (s shared, found bool, err error) {
	s, found, err = sharedRecords(buf)
	if err != nil || !found {
		return shared{}, false, err
	}
	if r == nil {
		return shared{}, false, errNoBatchFile
	}
	if !r.within(s.offset, s.length) || s.length > MaxMessageSize {
		return shared{}, false, wireErr("shared records at %d, %d bytes, are outside the batch file of %d bytes", s.offset, s.length, r.size)
	}
	if !r.within(s.replyOffset, s.replyCap) {
		s.replyCap = 0 // the result goes inline
	}
	return s, true, nil
}

// decodeInPlace decodes buf, a Batch, into m with its records decoded
// where they are in the mapped file, into slab (see decodeBatchParts),
// for a handler that borrows its records (RecordBorrower). done is false,
// with m untouched, when the records are not in the file or it is not
// mapped, or reading it faulted (slab is then cleared). The caller then
// decodes the batch as usual.
func (r *batchReader) decodeInPlace(buf []byte, m *handleRequest, slab []record.Record) (done bool, err error) {
	if r == nil || r.mapped == nil {
		return false, nil
	}
	s, found, err := r.locate(buf)
	if err != nil || !found {
		return err != nil, err
	}
	var b Batch
	if !withoutFaults(func() { err = decodeBatchParts(buf, r.mapped[s.offset:s.offset+s.length], &b, slab) }) {
		clear(slab[:cap(slab)])
		return false, nil
	}
	m.batch, m.shared = b, s
	batchFileReads.Add(1)
	batchesInPlace.Add(1)
	return true, err
}

// batchesInPlace counts the batches this process decoded in place (a test
// hook).
var batchesInPlace atomic.Int64

// readAppend returns, in a new buffer, buf followed by the n bytes of the
// file at off, which are within it.
func (r *batchReader) readAppend(buf []byte, off, n uint64) ([]byte, error) {
	if r.mapped != nil {
		// append copies into memory it does not clear first (make would).
		var out []byte
		if withoutFaults(func() { out = append(buf[:len(buf):len(buf)], r.mapped[off:off+n]...) }) {
			return out, nil
		}
	}
	out := make([]byte, len(buf)+int(n))
	copy(out, buf)
	_, err := r.f.ReadAt(out[len(buf):], int64(off))
	return out, err
}

// WriteAt writes p into the file at off: a copy into the mapping, or
// pwrite.
func (r *batchReader) WriteAt(p []byte, off int64) (int, error) {
	if r.mapped != nil && off >= 0 && off <= int64(len(r.mapped))-int64(len(p)) &&
		withoutFaults(func() { copy(r.mapped[off:], p) }) {
		return len(p), nil
	}
	return r.f.WriteAt(p, off)
}

// checkBytes is what the file started with (nil without a file).
func (r *batchReader) checkBytes() []byte {
	if r == nil {
		return nil
	}
	return r.check
}

// within reports whether n bytes at off are inside the file.
func (r *batchReader) within(off, n uint64) bool {
	return off <= uint64(r.size) && n <= uint64(r.size)-off
}

// batchFileReads counts the batches this process read from its batch file
// (a test hook).
var batchFileReads atomic.Int64

// sharedRecords finds Batch field 7 in buf and decodes it.
func sharedRecords(buf []byte) (s shared, found bool, err error) {
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return shared{}, false, fmt.Errorf("decoding a batch: %w", err)
		}
		if !f.is(7, bytesT) {
			continue
		}
		found = true
		sub := reader{buf: f.b}
		for len(sub.buf) > 0 {
			g, err := sub.next()
			if err != nil {
				return shared{}, false, fmt.Errorf("decoding a batch's shared records: %w", err)
			}
			switch {
			case g.is(1, varintT):
				s.offset = g.v
			case g.is(2, varintT):
				s.length = g.v
			case g.is(3, varintT):
				s.replyOffset = g.v
			case g.is(4, varintT):
				s.replyCap = g.v
			}
		}
	}
	return s, found, nil
}

// sharedResult finds Result field 3 in buf and returns its length; others
// is set if buf has outputs or failures too.
func sharedResult(buf []byte) (length uint64, found, others bool, err error) {
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return 0, false, false, fmt.Errorf("decoding a result: %w", err)
		}
		switch {
		case f.is(1, bytesT), f.is(2, bytesT):
			others = true
		case f.is(3, bytesT):
			found = true
			sub := reader{buf: f.b}
			for len(sub.buf) > 0 {
				g, err := sub.next()
				if err != nil {
					return 0, false, false, fmt.Errorf("decoding a result's shared result: %w", err)
				}
				if g.is(1, varintT) {
					length = g.v
				}
			}
		}
	}
	return length, found, others, nil
}

// readResult reads the result of the call that had slot's reply area from
// the batch file, into memory of its own: n bytes, which the handler said
// it wrote there.
func (bf *batchFile) readResult(offset int64, n int) ([]byte, error) {
	out := make([]byte, n)
	if _, err := bf.f.ReadAt(out, offset); err != nil {
		return nil, fmt.Errorf("reading the result from the batch file: %w", err)
	}
	batchFileResults.Add(1)
	return out, nil
}

// batchFileResults counts the results this process (a host) read from
// batch files (a test hook).
var batchFileResults atomic.Int64
