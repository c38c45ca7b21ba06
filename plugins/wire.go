package plugins

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirhq/weir/plugins/pb"
	"github.com/weirhq/weir/record"
)

// The hot messages of the protocol, Batch and Result, have hand-written
// wire encoders and decoders here; every other message goes through the
// protobuf runtime. They produce and accept exactly the protobuf encoding
// of handler.proto (a handler in any language sees no difference), but:
//
//   - the host encodes a batch's records straight from record.Record into
//     one buffer, before it waits for an idle handler instance, so an
//     instance is held only for the call itself; the header fields
//     (deadline included) are encoded once the instance is taken, into a
//     second buffer sent in front of the first (protobuf fields may come in
//     any order, and a repeated field's elements concatenate);
//   - decoding copies the message once and lets keys, values and header
//     values alias that copy, with a few slab allocations per message
//     instead of several per record.
//
// Decoders skip unknown fields, as the protobuf runtime does, and reject
// what it rejects: truncated input, a wrong wire type for a known field,
// invalid UTF-8 in a string field.

// wireCodec is the gRPC codec of both sides of the handler connection. On a
// handler process's side, batches reads the records a batch has in the
// batch file (nil if the process has none).
type wireCodec struct {
	batches *batchReader
}

// protoCodec is gRPC's default codec, for every other message.
var protoCodec = encoding.GetCodecV2(proto.Name)

// Name is the protobuf codec's: the content type on the wire is unchanged.
func (wireCodec) Name() string { return proto.Name }

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *wireBatch:
		out := mem.BufferSlice{mem.SliceBuffer(m.head)}
		if len(m.recs) > 0 && !m.shared {
			out = append(out, mem.SliceBuffer(m.recs))
		}
		return out, nil
	case *handleReply:
		out, err := encodeResult(m.res, &resultBufs)
		if err != nil || m.file == nil {
			return out, err
		}
		return m.toBatchFile(out), nil
	}
	return protoCodec.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *handleRequest:
		return c.decodeRequest(data.Materialize(), m)
	case *wireReply:
		return m.decode(data.Materialize())
	}
	return protoCodec.Unmarshal(data, v)
}

// decodeRequest decodes a Batch, aliasing buf, with its records read from
// the batch file if they are there.
func (c wireCodec) decodeRequest(buf []byte, m *handleRequest) error {
	buf, s, err := c.batches.inline(buf)
	if err != nil {
		return err
	}
	m.shared = s
	return decodeBatch(buf, &m.batch)
}

// wireBatch is a Batch encoded for the wire: head holds fields 1 to 5,
// recs the records (field 6). If shared is set, the records were written to
// the batch file and head ends with field 7 saying where; recs is not sent.
type wireBatch struct {
	head []byte
	recs []byte
	// parts, if set, hold the records instead of recs: the caller's
	// (EncodedRecords), valid only until the call returns, so they are
	// written to the batch file as they are, or gathered into recs to be
	// sent inline (see inline).
	parts [][]byte
	// size is the records' size in bytes: len(recs), or that of parts.
	size   int
	n      int // records in recs
	shared bool
}

// inline gathers w's parts, if it has any, into a buffer of w's own
// (from recsBufs, back through release), for the call to send them
// inline: gRPC may still hold what it was given to send after a call that
// failed, while the parts are only the caller's until the call returns.
func (w *wireBatch) inline() {
	if w.parts == nil {
		return
	}
	var buf []byte
	if p, ok := recsBufs.Get().(*[]byte); ok && cap(*p) >= w.size {
		buf = (*p)[:0]
	} else {
		buf = make([]byte, 0, w.size)
	}
	for _, p := range w.parts {
		buf = append(buf, p...)
	}
	w.recs, w.parts = buf, nil
}

// wireReply is a Result as the host decodes it (decodeResult), for a
// batch of n records; bad is set when it breaks the protocol. If shared is
// set, the handler may have written the result into the batch file, at
// replyAt, at most replyCap bytes.
type wireReply struct {
	n   int
	res Result
	bad error

	shared   *batchFile
	replyAt  int64
	replyCap int
}

// decode decodes a Result, aliasing buf, reading it from the batch file if
// buf says it is there.
func (m *wireReply) decode(buf []byte) error {
	if m.shared != nil {
		var err error
		if buf, err = m.fromBatchFile(buf); err != nil || m.bad != nil {
			return err
		}
	}
	var err error
	m.bad, err = decodeResult(buf, m.n, &m.res)
	return err
}

// fromBatchFile returns the result the reply buf says is in the batch file,
// read from it, or buf if it says nothing of the kind; m.bad is set if what
// it says breaks the protocol.
func (m *wireReply) fromBatchFile(buf []byte) ([]byte, error) {
	n, found, others, err := sharedResult(buf)
	switch {
	case err != nil || !found:
		return buf, err
	case others:
		m.bad = badReply("the reply has outputs or failures as well as a result in the batch file")
	case n > uint64(m.replyCap):
		m.bad = badReply("the result in the batch file takes %d bytes, more than the %d offered (handler.max_reply_bytes)", n, m.replyCap)
	default:
		return m.shared.readResult(m.replyAt, int(n))
	}
	return nil, nil
}

// recsBufs recycles the records buffers of calls that completed.
var recsBufs sync.Pool

// encodeRecords returns the records of b encoded as Batch field 6. Its
// buffer goes back to recsBufs through release.
func encodeRecords(b *Batch) *wireBatch {
	size := maxRecordsSize(b.Records)
	var buf []byte
	if p, ok := recsBufs.Get().(*[]byte); ok && cap(*p) >= size {
		buf = (*p)[:0]
	} else {
		buf = make([]byte, 0, size)
	}
	for i := range b.Records {
		r := &b.Records[i]
		buf = append(buf, byte(6<<3|protowire.BytesType))
		buf = appendVarint(buf, uint64(recordSize(r)))
		buf = appendRecord(buf, r)
	}
	return &wireBatch{recs: buf, size: len(buf), n: len(b.Records)}
}

// EncodedRecords are records of a batch already in their wire form, for
// Pool.HandleEncoded: a caller that encodes each record once, when it
// arrives (AppendRecord), sends a batch of them by copying bytes, instead of
// encoding records that have gone cold in memory by the time their batch
// is sent.
type EncodedRecords struct {
	// Parts hold the records in order, each appended by AppendRecord; a
	// part holds one or more whole records.
	Parts [][]byte
	// N is the number of records in Parts.
	N int
}

// RecordWireSize is the number of bytes AppendRecord appends for r.
func RecordWireSize(r *record.Record) int {
	n := recordSize(r)
	return 1 + varintSize(uint64(n)) + n
}

// AppendRecord appends r to buf as one of a Batch's records (handler.proto
// Batch.records: its tag, its length and the Record message) and points
// r's key, value and header values at their copies in the result. With
// room in buf for RecordWireSize(r) more bytes, buf is not moved,
// and r then refers only to the bytes it appended; r must not be used once
// those bytes are.
func AppendRecord(buf []byte, r *record.Record) []byte {
	ts := unixNano(r.Timestamp)
	body := recordBodySize(r, ts)
	return appendRecord6(buf, r, ts, body, 1+varintSize(uint64(body))+body)
}

// AppendSizedRecord is AppendRecord of r, whose RecordWireSize the caller
// has already taken: size.
func AppendSizedRecord(buf []byte, r *record.Record, size int) []byte {
	body := size - 2
	for body > 0 && 1+varintSize(uint64(body))+body > size {
		body--
	}
	return appendRecord6(buf, r, unixNano(r.Timestamp), body, size)
}

// appendRecord6 appends r (timestamp ts) as Batch field 6: n bytes, body of
// them the Record message.
func appendRecord6(buf []byte, r *record.Record, ts int64, body, n int) []byte {
	at := len(buf)
	buf = slices.Grow(buf, n)[:at+n]
	// Written in place, not appended: a lane encodes every record it is
	// delivered, and appends (a capacity check per byte of each varint)
	// took a third of the time.
	b := buf[at:]
	b[0] = byte(6<<3 | protowire.BytesType)
	i := 1 + putVarint(b[1:], uint64(body))
	i, r.Key = putAliasedBytes(b, i, 1, r.Key)
	i, r.Value = putAliasedBytes(b, i, 2, r.Value)
	for j := range r.Headers {
		h := &r.Headers[j]
		b[i] = byte(3<<3 | protowire.BytesType)
		i = i + 1 + putVarint(b[i+1:], uint64(headerSize(h.Key, h.Value)))
		if h.Key != "" {
			b[i] = byte(1<<3 | protowire.BytesType)
			i = i + 1 + putVarint(b[i+1:], uint64(len(h.Key)))
			i += copy(b[i:], h.Key)
		}
		i, h.Value = putAliasedBytes(b, i, 2, h.Value)
	}
	if ts != 0 {
		b[i] = byte(4<<3 | protowire.VarintType)
		i = i + 1 + putVarint(b[i+1:], uint64(ts))
	}
	if o := r.Position.Offset; o != 0 {
		b[i] = byte(5<<3 | protowire.VarintType)
		i = i + 1 + putVarint(b[i+1:], uint64(o))
	}
	if seq := r.Position.Seq; seq != "" {
		b[i] = byte(6<<3 | protowire.BytesType)
		i = i + 1 + putVarint(b[i+1:], uint64(len(seq)))
		copy(b[i:], seq)
	}
	return buf
}

// varintSize is protowire.SizeVarint with the small cases first.
func varintSize(v uint64) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	}
	return protowire.SizeVarint(v)
}

// putVarint writes v as a varint at the start of b, which has room for it,
// and returns its size.
func putVarint(b []byte, v uint64) int {
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// putAliasedBytes writes the optional bytes field num of value v at b[i:]
// (nothing for nil), and returns where it ends and v's copy in b.
func putAliasedBytes(b []byte, i int, num protowire.Number, v []byte) (int, []byte) {
	if v == nil {
		return i, nil
	}
	b[i] = byte(num)<<3 | byte(protowire.BytesType)
	i = i + 1 + putVarint(b[i+1:], uint64(len(v)))
	end := i + copy(b[i:], v)
	return end, b[i:end:end]
}

// encodedRecords returns recs as Batch field 6, in their parts.
func encodedRecords(recs EncodedRecords) *wireBatch {
	size := 0
	for _, p := range recs.Parts {
		size += len(p)
	}
	return &wireBatch{parts: recs.Parts, size: size, n: recs.N}
}

// maxRecordsSize bounds the size of recs encoded as Batch field 6 from
// above, cheaply: it takes every varint and length as the largest.
func maxRecordsSize(recs []record.Record) int {
	const (
		maxVarint = 1 + 10 // a varint field (a one-byte tag)
		maxLen    = 1 + 10 // the tag and length of a bytes field
	)
	n := len(recs) * (maxLen + 2*maxLen + 2*maxVarint + maxLen) // the record, key, value, timestamp, offset, sequence
	for i := range recs {
		r := &recs[i]
		n += len(r.Key) + len(r.Value) + len(r.Position.Seq) + len(r.Headers)*3*maxLen
		for j := range r.Headers {
			n += len(r.Headers[j].Key) + len(r.Headers[j].Value)
		}
	}
	return n
}

// appendVarint is protowire.AppendVarint with the one-byte case inline.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// setHead encodes b's fields other than its records into w.
func (w *wireBatch) setHead(b *Batch) {
	buf := w.head[:0]
	buf = appendString(buf, 1, b.Pipeline)
	buf = appendString(buf, 2, b.Stream)
	buf = appendString(buf, 3, b.Partition)
	if a := clampUint32(b.Attempt); a != 0 {
		buf = protowire.AppendTag(buf, 4, protowire.VarintType)
		buf = protowire.AppendVarint(buf, uint64(a))
	}
	if d := unixNano(b.Deadline); d != 0 {
		buf = protowire.AppendTag(buf, 5, protowire.VarintType)
		buf = protowire.AppendVarint(buf, uint64(d))
	}
	w.head = buf
}

// release recycles w's records buffer. Call it only once the call that sent
// w has returned successfully: gRPC may still hold the buffer otherwise.
func (w *wireBatch) release() {
	if cap(w.recs) > 0 && cap(w.recs) <= 16<<20 {
		b := w.recs[:0]
		recsBufs.Put(&b)
	}
	w.recs = nil
}

// marshalBatch encodes b whole (for tests and the Handle of a lone client).
func marshalBatch(b *Batch) []byte {
	w := encodeRecords(b)
	w.setHead(b)
	return append(w.head, w.recs...)
}

// The appenders below write fields numbered below 16 (one-byte tags).

func appendString(buf []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return buf
	}
	buf = append(buf, byte(num)<<3|byte(protowire.BytesType))
	buf = appendVarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func sizeString(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

// optional bytes: present (even if empty) unless nil.
func appendOptBytes(buf []byte, num protowire.Number, b []byte) []byte {
	if b == nil {
		return buf
	}
	buf = append(buf, byte(num)<<3|byte(protowire.BytesType))
	buf = appendVarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func sizeOptBytes(b []byte) int {
	if b == nil {
		return 0
	}
	return 1 + protowire.SizeBytes(len(b))
}

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func headerSize(key string, value []byte) int {
	return sizeString(key) + sizeOptBytes(value)
}

func recordSize(r *record.Record) int { return recordBodySize(r, unixNano(r.Timestamp)) }

// recordBodySize is recordSize of r, whose timestamp is ts (unixNano).
func recordBodySize(r *record.Record, ts int64) int {
	n := sizeOptBytes(r.Key) + sizeOptBytes(r.Value)
	for j := range r.Headers {
		h := &r.Headers[j]
		n += 1 + protowire.SizeBytes(headerSize(h.Key, h.Value))
	}
	n += sizeVarintField(uint64(ts))
	n += sizeVarintField(uint64(r.Position.Offset))
	n += sizeString(r.Position.Seq)
	return n
}

func appendRecord(buf []byte, r *record.Record) []byte {
	buf = appendOptBytes(buf, 1, r.Key)
	buf = appendOptBytes(buf, 2, r.Value)
	for j := range r.Headers {
		h := &r.Headers[j]
		buf = append(buf, byte(3<<3|protowire.BytesType))
		buf = appendVarint(buf, uint64(headerSize(h.Key, h.Value)))
		buf = appendString(buf, 1, h.Key)
		buf = appendOptBytes(buf, 2, h.Value)
	}
	if ts := unixNano(r.Timestamp); ts != 0 {
		buf = append(buf, byte(4<<3|protowire.VarintType))
		buf = protowire.AppendVarint(buf, uint64(ts))
	}
	if o := r.Position.Offset; o != 0 {
		buf = append(buf, byte(5<<3|protowire.VarintType))
		buf = appendVarint(buf, uint64(o))
	}
	return appendString(buf, 6, r.Position.Seq)
}

// errWire is the cause of every decoding error.
var errWire = errors.New("malformed protobuf message")

func wireErr(msg string, args ...any) error {
	return fmt.Errorf("%w: "+msg, append([]any{errWire}, args...)...)
}

// field is one decoded field: its number and type, and its value (v for
// varints and fixed, b for bytes; b aliases the input).
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// reader walks the fields of a message.
type reader struct {
	buf []byte // what is left
	f   field  // the field next decoded
}

// next decodes the field at the start of r.buf into r.f, returns it, and
// advances past it. One-byte tags with varints or lengths of one or two
// bytes, the common case, take a fast path.
func (r *reader) next() (*field, error) {
	buf, f := r.buf, &r.f
	if len(buf) >= 2 && buf[0] < 0x80 && buf[0] >= 8 {
		f.num, f.typ = protowire.Number(buf[0]>>3), protowire.Type(buf[0]&7)
		switch f.typ {
		case protowire.BytesType:
			n, start := uint64(buf[1]), uint64(2)
			if n >= 0x80 {
				if len(buf) < 3 || buf[2] >= 0x80 {
					break // a longer length
				}
				n, start = n&0x7f|uint64(buf[2])<<7, 3
			}
			if end := start + n; end <= uint64(len(buf)) {
				f.b = buf[start:end:end]
				r.buf = buf[end:]
				return f, nil
			}
		case protowire.VarintType:
			if v, n := protowire.ConsumeVarint(buf[1:]); n > 0 {
				f.v = v
				r.buf = buf[1+n:]
				return f, nil
			}
		}
	}
	return r.nextSlow()
}

// nextSlow is next for any field.
func (r *reader) nextSlow() (*field, error) {
	buf := r.buf
	num, typ, n := protowire.ConsumeTag(buf)
	if n < 0 {
		return nil, wireErr("bad tag: %v", protowire.ParseError(n))
	}
	if num > protowire.MaxValidNumber {
		// ConsumeTag lets these through; the protobuf runtime does not.
		return nil, wireErr("bad tag: field number %d out of range", num)
	}
	buf = buf[n:]
	r.f = field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		r.f.v, n = protowire.ConsumeVarint(buf)
	case protowire.BytesType:
		r.f.b, n = protowire.ConsumeBytes(buf)
		if n >= 0 {
			r.f.b = r.f.b[:len(r.f.b):len(r.f.b)]
		}
	default:
		n = protowire.ConsumeFieldValue(num, typ, buf)
	}
	if n < 0 {
		return nil, wireErr("field %d: %v", num, protowire.ParseError(n))
	}
	r.buf = buf[n:]
	return &r.f, nil
}

// is reports whether f is field num with wire type typ. A known field with
// another wire type is skipped like an unknown one, as the protobuf
// runtime does.
func (f *field) is(num protowire.Number, typ protowire.Type) bool {
	return f.num == num && f.typ == typ
}

func (f *field) str(msg string) (string, error) {
	if !utf8.Valid(f.b) {
		return "", wireErr("%s field %d: invalid UTF-8", msg, f.num)
	}
	return string(f.b), nil
}

// Wire types of the known fields; a field with another is skipped.
const (
	bytesT  = protowire.BytesType
	varintT = protowire.VarintType
)

// decodeHeader decodes a Header message (key, value aliasing buf).
func decodeHeader(buf []byte) (key string, value []byte, err error) {
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return "", nil, err
		}
		switch {
		case f.is(1, bytesT):
			if key, err = f.str("Header"); err != nil {
				return "", nil, err
			}
		case f.is(2, bytesT):
			value = f.b
		}
	}
	return key, value, nil
}

// decodeBatch decodes a Batch into b (which must be zero), aliasing buf:
// the plugin side's decoder, straight into the batch the handler gets. One
// pass over the records' fields (a first one only counts the records, from
// the top-level tags and lengths); the records are one slab, their headers
// a few (headerRuns).
func decodeBatch(buf []byte, b *Batch) error {
	return decodeBatchParts(buf, nil, b, nil)
}

// decodeBatchParts is decodeBatch of the Batch encoded as head followed by
// recs (both aliased), its records decoded into slab if it has room for
// them (its records must be zero), else into a new one.
func decodeBatchParts(head, recs []byte, b *Batch, slab []record.Record) error {
	n, err := countRecords(head)
	if err != nil {
		return fmt.Errorf("decoding a batch: %w", err)
	}
	if len(recs) > 0 {
		m, err := countRecords(recs)
		if err != nil {
			return fmt.Errorf("decoding a batch: %w", err)
		}
		n += m
	}
	if slab != nil && cap(slab) >= n {
		b.Records = slab[:0]
	} else {
		b.Records = make([]record.Record, 0, n)
	}
	var (
		hs       headerRuns
		part     record.Partition
		late     bool // the stream or partition came after a record
		deadline int64
	)
	for _, buf := range [2][]byte{head, recs} {
		rd := reader{buf: buf}
		for len(rd.buf) > 0 {
			// A record whose length takes one or two bytes, inline.
			if p := rd.buf; p[0] == 6<<3|byte(bytesT) {
				if rec, rest, ok := lenPrefixed(p[1:]); ok {
					b.Records = b.Records[:len(b.Records)+1]
					r := &b.Records[len(b.Records)-1]
					r.Partition = part
					if err := decodeRecord(rec, r, &hs, n-len(b.Records)+1, len(rest)); err != nil {
						return fmt.Errorf("decoding a batch: %w", err)
					}
					rd.buf = rest
					continue
				}
			}
			f, err := rd.next()
			if err != nil {
				return fmt.Errorf("decoding a batch: %w", err)
			}
			switch {
			case f.is(1, bytesT):
				b.Pipeline, err = f.str("Batch")
			case f.is(2, bytesT):
				part.Stream, err = f.str("Batch")
				late = late || len(b.Records) > 0
			case f.is(3, bytesT):
				part.ID, err = f.str("Batch")
				late = late || len(b.Records) > 0
			case f.is(4, varintT):
				b.Attempt = int(uint32(f.v))
			case f.is(5, varintT):
				deadline = int64(f.v)
			case f.is(6, bytesT):
				b.Records = b.Records[:len(b.Records)+1]
				r := &b.Records[len(b.Records)-1]
				r.Partition = part
				err = decodeRecord(f.b, r, &hs, n-len(b.Records)+1, len(rd.buf))
			case f.is(7, bytesT):
				// Where the records were in the batch file (batchReader
				// has appended them, or decodes them in place):
				// checked, as the protobuf runtime would.
				err = checkMessage(f.b)
			}
			if err != nil {
				return fmt.Errorf("decoding a batch: %w", err)
			}
		}
	}
	if late {
		for i := range b.Records {
			b.Records[i].Partition = part
		}
	}
	b.Stream, b.Partition = part.Stream, part.ID
	b.Deadline = fromUnixNano(deadline)
	return nil
}

// headerRuns hands out the headers of a batch's records, each record's a
// run of one slab. A slab that fills up is replaced by a larger one (the run
// being decoded moves to it): twice as large, or, when the first header of a
// record finds it full, large enough for that record's headers times the
// records left, so the records of a batch whose records all have the same
// number of headers share one slab.
type headerRuns struct {
	slab  []record.Header
	start int // of the current run
}

// begin starts the run of the next record.
func (h *headerRuns) begin() { h.start = len(h.slab) }

// full reports whether the next add allocates.
func (h *headerRuns) full() bool { return len(h.slab) == cap(h.slab) }

// grow makes room for n more headers at least.
func (h *headerRuns) grow(n int) {
	run := h.slab[h.start:]
	slab := make([]record.Header, len(run), max(len(run)+n, 2*cap(h.slab), 16))
	copy(slab, run)
	h.slab, h.start = slab, 0
}

func (h *headerRuns) add(hd record.Header) {
	if h.full() {
		h.grow(1)
	}
	h.slab = append(h.slab, hd)
}

// decode adds the header in b, field num of the message buf. The first
// header of a message whose slab is full grows the slab for this message's
// headers (counted in buf) times left, the messages from this one on,
// bounded by half of after, the bytes that follow.
func (h *headerRuns) decode(buf []byte, num protowire.Number, b []byte, left, after int) error {
	if h.run() == nil && h.full() {
		n, _ := countSub(buf, num)
		h.grow(min(n*left, n+after/2))
	}
	k, v, err := decodeHeader(b)
	if err != nil {
		return err
	}
	h.add(record.Header{Key: k, Value: v})
	return nil
}

// run returns the headers added since begin (nil if none).
func (h *headerRuns) run() []record.Header {
	if len(h.slab) == h.start {
		return nil
	}
	return h.slab[h.start:len(h.slab):len(h.slab)]
}

// decodeRecord decodes the Record in buf into r, its headers into hs;
// left is the number of records of the batch from this one on, after the
// number of bytes of the batch after it (a bound on the headers they hold).
func decodeRecord(buf []byte, r *record.Record, hs *headerRuns, left, after int) error {
	hs.begin()
	var ts int64
	// The fields as the host encodes them (appendRecord), in order, inline:
	// the key, the value, a timestamp and an offset, each if there. The
	// loop below decodes what is left, in any order.
	b := buf
	if len(b) > 1 && b[0] == 1<<3|byte(bytesT) {
		if v, rest, ok := lenPrefixed(b[1:]); ok {
			r.Key, b = v, rest
		}
	}
	if len(b) > 1 && b[0] == 2<<3|byte(bytesT) {
		if v, rest, ok := lenPrefixed(b[1:]); ok {
			r.Value, b = v, rest
		}
	}
	if len(b) > 1 && b[0] == 4<<3|byte(varintT) {
		if v, n := uvarint(b[1:]); n > 0 {
			ts, b = int64(v), b[1+n:]
		}
	}
	if len(b) > 1 && b[0] == 5<<3|byte(varintT) {
		if v, n := uvarint(b[1:]); n > 0 {
			r.Position.Offset, b = int64(v), b[1+n:]
		}
	}
	rd := reader{buf: b}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return err
		}
		switch {
		case f.is(1, bytesT):
			r.Key = f.b
		case f.is(2, bytesT):
			r.Value = f.b
		case f.is(3, bytesT):
			if err := hs.decode(buf, 3, f.b, left, after); err != nil {
				return err
			}
		case f.is(4, varintT):
			ts = int64(f.v)
		case f.is(5, varintT):
			r.Position.Offset = int64(f.v)
		case f.is(6, bytesT):
			if r.Position.Seq, err = f.str("Record"); err != nil {
				return err
			}
		}
	}
	r.Headers = hs.run()
	r.Timestamp = fromUnixNano(ts)
	return nil
}

// decodeResult decodes a Result into res (host side), aliasing buf:
// straight into the Go types, with a first pass that only counts outputs
// and failures from the top-level tags and lengths. A malformed message is
// an error (the protobuf runtime refuses the same ones). One that is well
// formed but breaks the protocol for a batch of n records (an index out of
// range, an output without a sink) is decoded whole, and bad is the
// ClassBadReply error of its first violation, outputs before failures, as
// resultFromPB reports it.
func decodeResult(buf []byte, n int, res *Result) (bad, err error) {
	nout, nfail, err := countTop(buf, 1, 2)
	if err != nil {
		return nil, fmt.Errorf("decoding a result: %w", err)
	}
	if nout > 0 {
		res.Outputs = make([]Output, 0, nout)
	}
	if nfail > 0 {
		res.Failures = make([]Failure, 0, nfail)
	}
	var (
		hs              headerRuns
		lastSink        string
		badOut, badFail error
		inFile          bool
	)
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return nil, fmt.Errorf("decoding a result: %w", err)
		}
		switch {
		case f.is(1, bytesT):
			i := len(res.Outputs)
			res.Outputs = res.Outputs[:i+1]
			o := &res.Outputs[i]
			if err := decodeOutput(f.b, o, &hs, &lastSink, nout-i, len(rd.buf)); err != nil {
				return nil, fmt.Errorf("decoding a result: %w", err)
			}
			if badOut == nil {
				if o.Index >= n {
					badOut = badReply("output %d: index %d out of range (batch of %d records)", i, o.Index, n)
				} else if o.Sink == "" {
					badOut = badReply("output %d (record %d): no sink", i, o.Index)
				}
			}
		case f.is(2, bytesT):
			i := len(res.Failures)
			res.Failures = res.Failures[:i+1]
			fl := &res.Failures[i]
			if err := decodeFailure(f.b, fl); err != nil {
				return nil, fmt.Errorf("decoding a result: %w", err)
			}
			if badFail == nil && fl.Index >= n {
				badFail = badReply("failure %d: index %d out of range (batch of %d records)", i, fl.Index, n)
			}
		case f.is(3, bytesT):
			// A result in the batch file: wireReply.fromBatchFile reads
			// it when the host offered room there; here it was not.
			if err := checkMessage(f.b); err != nil {
				return nil, fmt.Errorf("decoding a result: shared result: %w", err)
			}
			inFile = true
		}
	}
	switch {
	case inFile:
		return errResultNotOffered, nil
	case badOut != nil:
		return badOut, nil
	}
	return badFail, nil
}

// errResultNotOffered refuses a reply saying its result is in the batch file
// when the call offered no room there: taken as an empty result, it would
// pass every record of the batch as handled with no output.
var errResultNotOffered = badReply("the result is in the batch file, where the host offered no room for it")

// checkMessage checks that buf is a well-formed protobuf message.
func checkMessage(buf []byte) error {
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		if _, err := rd.next(); err != nil {
			return err
		}
	}
	return nil
}

// decodeOutput decodes the Output in buf into o, its headers into hs; a
// sink name equal to *lastSink shares its string. left and after are
// decodeRecord's.
func decodeOutput(buf []byte, o *Output, hs *headerRuns, lastSink *string, left, after int) error {
	hs.begin()
	var ts int64
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return err
		}
		switch {
		case f.is(1, varintT):
			o.Index = int(uint32(f.v))
		case f.is(2, bytesT):
			if string(f.b) == *lastSink {
				o.Sink = *lastSink
				continue
			}
			if o.Sink, err = f.str("Output"); err != nil {
				return err
			}
			*lastSink = o.Sink
		case f.is(3, bytesT):
			o.Key = f.b
		case f.is(4, bytesT):
			o.Value = f.b
		case f.is(5, bytesT):
			if err := hs.decode(buf, 5, f.b, left, after); err != nil {
				return err
			}
		case f.is(6, varintT):
			ts = int64(f.v)
		}
	}
	o.Headers = hs.run()
	o.Timestamp = fromUnixNano(ts)
	return nil
}

func decodeFailure(buf []byte, fl *Failure) error {
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return err
		}
		switch {
		case f.is(1, varintT):
			fl.Index = int(uint32(f.v))
		case f.is(2, bytesT):
			if fl.Message, err = f.str("Failure"); err != nil {
				return err
			}
		case f.is(3, varintT):
			fl.Retryable = f.v != 0
		case f.is(4, varintT):
			fl.Class = classFromPB(pb.ErrorClass(int32(f.v))) // an enum is an int32 varint
		}
	}
	return nil
}

// countTop counts the bytes fields numbered a and those numbered b at the
// top level of buf.
func countTop(buf []byte, a, b protowire.Number) (na, nb int, err error) {
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return 0, 0, err
		}
		switch {
		case f.is(a, bytesT):
			na++
		case f.is(b, bytesT):
			nb++
		}
	}
	return na, nb, nil
}

// countRecords counts the records (field 6) of the Batch in buf, those
// whose length takes one or two bytes inline.
func countRecords(buf []byte) (int, error) {
	n := 0
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		if b := rd.buf; b[0] == 6<<3|byte(bytesT) {
			if _, rest, ok := lenPrefixed(b[1:]); ok {
				n++
				rd.buf = rest
				continue
			}
		}
		f, err := rd.next()
		if err != nil {
			return 0, err
		}
		if f.is(6, bytesT) {
			n++
		}
	}
	return n, nil
}

// lenPrefixed returns the value of the bytes field whose tag buf follows,
// and what follows it, if its length takes one or two bytes and the value
// is all there (ok is false otherwise: reader.next then decodes the field
// or reports what is wrong with it).
func lenPrefixed(buf []byte) (v, rest []byte, ok bool) {
	if len(buf) == 0 {
		return nil, nil, false
	}
	n, start := int(buf[0]), 1
	if n >= 0x80 {
		if len(buf) < 2 || buf[1] >= 0x80 {
			return nil, nil, false
		}
		n, start = n&0x7f|int(buf[1])<<7, 2
	}
	if end := start + n; end <= len(buf) {
		return buf[start:end:end], buf[end:], true
	}
	return nil, nil, false
}

// uvarint decodes the varint at the start of buf, returning its value and
// length; the length is 0 if it is malformed (reader.next then reports
// what is wrong with it). With nine bytes at least in buf, a varint of at
// most nine bytes (a timestamp in nanoseconds takes nine) decodes eight
// bytes at once.
func uvarint(buf []byte) (uint64, int) {
	if len(buf) < 9 {
		v, n := protowire.ConsumeVarint(buf)
		return v, max(n, 0)
	}
	x := binary.LittleEndian.Uint64(buf)
	ends := ^x & 0x8080808080808080 // the high bit of each byte that ends it
	if ends == 0 {
		if buf[8] >= 0x80 {
			v, n := protowire.ConsumeVarint(buf)
			return v, max(n, 0)
		}
		return compact7(x) | uint64(buf[8])<<56, 9
	}
	n := (bits.TrailingZeros64(ends) + 1) / 8
	return compact7(x & (1<<(8*n) - 1)), n
}

// compact7 packs the low seven bits of the eight bytes of x, little endian,
// into the 56 low bits of the result.
func compact7(x uint64) uint64 {
	x &= 0x7f7f7f7f7f7f7f7f
	x = x&0x007f007f007f007f | x&0x7f007f007f007f00>>1
	x = x&0x00003fff00003fff | x&0x3fff00003fff0000>>2
	return x&0x000000000fffffff | x&0x0fffffff00000000>>4
}

// countSub counts the bytes fields numbered num at the top level of buf.
func countSub(buf []byte, num protowire.Number) (int, error) {
	n := 0
	rd := reader{buf: buf}
	for len(rd.buf) > 0 {
		f, err := rd.next()
		if err != nil {
			return 0, err
		}
		if f.is(num, bytesT) {
			n++
		}
	}
	return n, nil
}

// encodeResult encodes r as a Result message (plugin side), exactly as the
// protobuf runtime encodes resultToPB(r): a negative index is sent as 0,
// and a string field that is not valid UTF-8 fails the encoding as it does
// there. The buffer comes from pool when it is large enough to be worth
// pooling; gRPC frees it once it is written. A first pass checks the
// strings and bounds the size from above; the second sizes each output and
// failure as it encodes it.
func encodeResult(r *Result, pool mem.BufferPool) (mem.BufferSlice, error) {
	if r == nil || len(r.Outputs)+len(r.Failures) == 0 {
		return nil, nil
	}
	const maxLen = 1 + binary.MaxVarintLen64 // a tag and a length or varint
	size := 0
	validSink := "" // the last sink name found valid UTF-8
	for i := range r.Outputs {
		o := &r.Outputs[i]
		if o.Sink != validSink {
			if !utf8.ValidString(o.Sink) {
				return nil, wireErr("output %d: sink name: invalid UTF-8", i)
			}
			validSink = o.Sink
		}
		for j := range o.Headers {
			h := &o.Headers[j]
			if !utf8.ValidString(h.Key) {
				return nil, wireErr("output %d: header %d key: invalid UTF-8", i, j)
			}
			size += 3*maxLen + len(h.Key) + len(h.Value)
		}
		// The output, its index, sink, key, value and timestamp.
		size += 6*maxLen + len(o.Sink) + len(o.Key) + len(o.Value)
	}
	for i := range r.Failures {
		f := &r.Failures[i]
		if !utf8.ValidString(f.Message) {
			return nil, wireErr("failure %d: message: invalid UTF-8", i)
		}
		size += 5*maxLen + len(f.Message) // the failure, index, message, retryable, class
	}
	var (
		buf []byte
		ref *[]byte
	)
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf = make([]byte, 0, size)
	} else {
		ref = pool.Get(size)
		buf = (*ref)[:0]
	}
	for i := range r.Outputs {
		o := &r.Outputs[i]
		buf = append(buf, 1<<3|byte(protowire.BytesType))
		buf = appendVarint(buf, uint64(outputSize(o)))
		buf = appendOutput(buf, o)
	}
	for i := range r.Failures {
		f := &r.Failures[i]
		buf = append(buf, 2<<3|byte(protowire.BytesType))
		buf = appendVarint(buf, uint64(failureSize(f)))
		buf = appendFailure(buf, f)
	}
	if ref == nil {
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	*ref = buf
	return mem.BufferSlice{mem.NewBuffer(ref, pool)}, nil
}

// resultBufs is the pool of the buffers encodeResult encodes a handler
// process's results into (wireCodec): gRPC's pools clear a buffer each
// time they hand it out, a few hundred KiB for a batch's outputs, where
// encodeResult overwrites what it uses.
var resultBufs resultPool

// resultPool is a mem.BufferPool that hands out its buffers as they are.
type resultPool struct{ p sync.Pool }

// maxPooledResult bounds the buffers resultPool keeps.
const maxPooledResult = 16 << 20

func (rp *resultPool) Get(size int) *[]byte {
	if b, ok := rp.p.Get().(*[]byte); ok && cap(*b) >= size {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size)
	return &b
}

func (rp *resultPool) Put(b *[]byte) {
	if cap(*b) <= maxPooledResult {
		rp.p.Put(b)
	}
}

func outputSize(o *Output) int {
	n := sizeVarintField(uint64(clampUint32(o.Index))) + sizeString(o.Sink) + sizeOptBytes(o.Key) + sizeOptBytes(o.Value)
	for j := range o.Headers {
		h := &o.Headers[j]
		n += 1 + protowire.SizeBytes(headerSize(h.Key, h.Value))
	}
	return n + sizeVarintField(uint64(unixNano(o.Timestamp)))
}

func appendOutput(buf []byte, o *Output) []byte {
	if i := clampUint32(o.Index); i != 0 {
		buf = append(buf, 1<<3|byte(protowire.VarintType))
		buf = appendVarint(buf, uint64(i))
	}
	buf = appendString(buf, 2, o.Sink)
	buf = appendOptBytes(buf, 3, o.Key)
	buf = appendOptBytes(buf, 4, o.Value)
	for j := range o.Headers {
		h := &o.Headers[j]
		buf = append(buf, 5<<3|byte(protowire.BytesType))
		buf = appendVarint(buf, uint64(headerSize(h.Key, h.Value)))
		buf = appendString(buf, 1, h.Key)
		buf = appendOptBytes(buf, 2, h.Value)
	}
	if ts := unixNano(o.Timestamp); ts != 0 {
		buf = append(buf, 6<<3|byte(protowire.VarintType))
		buf = protowire.AppendVarint(buf, uint64(ts))
	}
	return buf
}

func failureSize(f *Failure) int {
	n := sizeVarintField(uint64(clampUint32(f.Index))) + sizeString(f.Message)
	if f.Retryable {
		n += 2
	}
	// An enum is an int32 varint: a negative one takes ten bytes.
	return n + sizeVarintField(uint64(int64(int32(f.Class))))
}

func appendFailure(buf []byte, f *Failure) []byte {
	if i := clampUint32(f.Index); i != 0 {
		buf = append(buf, 1<<3|byte(protowire.VarintType))
		buf = appendVarint(buf, uint64(i))
	}
	buf = appendString(buf, 2, f.Message)
	if f.Retryable {
		buf = append(buf, 3<<3|byte(protowire.VarintType), 1)
	}
	if c := int64(int32(f.Class)); c != 0 {
		buf = append(buf, 4<<3|byte(protowire.VarintType))
		buf = protowire.AppendVarint(buf, uint64(c))
	}
	return buf
}
