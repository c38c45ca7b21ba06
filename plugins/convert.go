package plugins

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weirhq/weir/plugins/pb"
	"github.com/weirhq/weir/record"
)

// Conversions between the Go types of the protocol and the generated pb
// types. Each conversion makes one pass over its input and allocates its
// output in a few slabs (one slice of structs and one of pointers per
// message type), never per record: a 500-record batch costs the same handful
// of allocations as a 5-record one. Byte slices (keys, values, header values)
// are shared, not copied; neither side modifies them.

// unixNano returns t in nanoseconds since the epoch, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano.
func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// headerSlab hands out consecutive runs of one preallocated []pb.Header and
// its []*pb.Header.
type headerSlab struct {
	vals []pb.Header
	ptrs []*pb.Header
}

func newHeaderSlab(n int) headerSlab {
	if n == 0 {
		return headerSlab{}
	}
	return headerSlab{vals: make([]pb.Header, n), ptrs: make([]*pb.Header, n)}
}

// take converts hs into the next len(hs) slab entries.
func (s *headerSlab) take(hs []record.Header) []*pb.Header {
	n := len(hs)
	if n == 0 {
		return nil
	}
	out := s.ptrs[:n:n]
	for j := range hs {
		h := &s.vals[j]
		h.Key = hs[j].Key
		h.Value = hs[j].Value
		out[j] = h
	}
	s.vals, s.ptrs = s.vals[n:], s.ptrs[n:]
	return out
}

// recordHeaderSlab is headerSlab's counterpart for record.Header.
type recordHeaderSlab []record.Header

func (s *recordHeaderSlab) take(hs []*pb.Header) []record.Header {
	n := len(hs)
	if n == 0 {
		return nil
	}
	out := (*s)[:n:n]
	for j, h := range hs {
		out[j] = record.Header{Key: h.GetKey(), Value: h.GetValue()}
	}
	*s = (*s)[n:]
	return out
}

func clampUint32(n int) uint32 {
	switch {
	case n < 0:
		return 0
	case n > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(n)
}

// batchToPB converts a batch to the generated type: the reference the
// host's hand-written encoder (encodeRecords) is tested against.
func batchToPB(b *Batch) *pb.Batch {
	nh := 0
	for i := range b.Records {
		nh += len(b.Records[i].Headers)
	}
	recs := make([]pb.Record, len(b.Records))
	ptrs := make([]*pb.Record, len(b.Records))
	hs := newHeaderSlab(nh)
	for i := range b.Records {
		r := &b.Records[i]
		p := &recs[i]
		p.Key = r.Key
		p.Value = r.Value
		p.Headers = hs.take(r.Headers)
		p.TimestampUnixNano = unixNano(r.Timestamp)
		p.Offset = r.Position.Offset
		p.Sequence = r.Position.Seq
		ptrs[i] = p
	}
	return &pb.Batch{
		Pipeline:         b.Pipeline,
		Stream:           b.Stream,
		Partition:        b.Partition,
		Attempt:          clampUint32(b.Attempt),
		DeadlineUnixNano: unixNano(b.Deadline),
		Records:          ptrs,
	}
}

// batchFromPB converts a batch decoded by the protobuf runtime (plugin
// side, a server without wireCodec; decodeBatch is the usual way).
func batchFromPB(p *pb.Batch) *Batch {
	nh := 0
	for _, r := range p.Records {
		nh += len(r.GetHeaders())
	}
	part := record.Partition{Stream: p.GetStream(), ID: p.GetPartition()}
	recs := make([]record.Record, len(p.Records))
	var hs recordHeaderSlab
	if nh > 0 {
		hs = make(recordHeaderSlab, nh)
	}
	for i, pr := range p.Records {
		recs[i] = record.Record{
			Key:       pr.GetKey(),
			Value:     pr.GetValue(),
			Headers:   hs.take(pr.GetHeaders()),
			Timestamp: fromUnixNano(pr.GetTimestampUnixNano()),
			Partition: part,
			Position:  record.Position{Offset: pr.GetOffset(), Seq: pr.GetSequence()},
		}
	}
	return &Batch{
		Pipeline:  p.GetPipeline(),
		Stream:    p.GetStream(),
		Partition: p.GetPartition(),
		Attempt:   int(p.GetAttempt()),
		Deadline:  fromUnixNano(p.GetDeadlineUnixNano()),
		Records:   recs,
	}
}

// resultToPB converts a handler's result for the wire (plugin side).
func resultToPB(r *Result) *pb.Result {
	if r == nil {
		return &pb.Result{}
	}
	nh := 0
	for i := range r.Outputs {
		nh += len(r.Outputs[i].Headers)
	}
	out := &pb.Result{}
	if n := len(r.Outputs); n > 0 {
		vals := make([]pb.Output, n)
		out.Outputs = make([]*pb.Output, n)
		hs := newHeaderSlab(nh)
		for i := range r.Outputs {
			o := &r.Outputs[i]
			p := &vals[i]
			p.Index = clampUint32(o.Index)
			p.Sink = o.Sink
			p.Key = o.Key
			p.Value = o.Value
			p.Headers = hs.take(o.Headers)
			p.TimestampUnixNano = unixNano(o.Timestamp)
			out.Outputs[i] = p
		}
	}
	if n := len(r.Failures); n > 0 {
		vals := make([]pb.Failure, n)
		out.Failures = make([]*pb.Failure, n)
		for i := range r.Failures {
			f := &r.Failures[i]
			p := &vals[i]
			p.Index = clampUint32(f.Index)
			p.Message = f.Message
			p.Retryable = f.Retryable
			p.Class = pb.ErrorClass(f.Class)
			out.Failures[i] = p
		}
	}
	return out
}

// errBadReply is the cause of a reply that breaks the protocol.
var errBadReply = errors.New("handler reply breaks the protocol")

func badReply(format string, args ...any) error {
	return &Error{
		Class: ClassBadReply,
		// A bad reply may be triggered by one record; retrying lets the
		// host bisect the batch to find it.
		Retryable: true,
		Err:       fmt.Errorf("%w: %s", errBadReply, fmt.Sprintf(format, args...)),
	}
}

// resultFromPB converts a reply to a batch of n records decoded by the
// protobuf runtime, and checks that every index is in range and every
// output names a sink (a violation fails the whole batch with
// ClassBadReply): the reference the host's hand-written decoder
// (decodeResult) is tested against.
func resultFromPB(p *pb.Result, n int) (*Result, error) {
	if p.GetSharedResult() != nil {
		return nil, errResultNotOffered
	}
	res := &Result{}
	if len(p.GetOutputs()) > 0 {
		nh := 0
		for _, o := range p.Outputs {
			nh += len(o.GetHeaders())
		}
		var hs recordHeaderSlab
		if nh > 0 {
			hs = make(recordHeaderSlab, nh)
		}
		res.Outputs = make([]Output, len(p.Outputs))
		for i, o := range p.Outputs {
			if int64(o.GetIndex()) >= int64(n) {
				return nil, badReply("output %d: index %d out of range (batch of %d records)", i, o.GetIndex(), n)
			}
			if o.GetSink() == "" {
				return nil, badReply("output %d (record %d): no sink", i, o.GetIndex())
			}
			res.Outputs[i] = Output{
				Index: int(o.GetIndex()),
				Sink:  o.GetSink(),
				Message: record.Message{
					Key:       o.GetKey(),
					Value:     o.GetValue(),
					Headers:   hs.take(o.GetHeaders()),
					Timestamp: fromUnixNano(o.GetTimestampUnixNano()),
				},
			}
		}
	}
	if len(p.GetFailures()) > 0 {
		res.Failures = make([]Failure, len(p.Failures))
		for i, f := range p.Failures {
			if int64(f.GetIndex()) >= int64(n) {
				return nil, badReply("failure %d: index %d out of range (batch of %d records)", i, f.GetIndex(), n)
			}
			res.Failures[i] = Failure{
				Index:     int(f.GetIndex()),
				Message:   f.GetMessage(),
				Retryable: f.GetRetryable(),
				Class:     classFromPB(f.GetClass()),
			}
		}
	}
	return res, nil
}

// classFromPB maps the proto enum to ErrorClass; a number this host does not
// know (a newer handler) is ClassUnspecified.
func classFromPB(c pb.ErrorClass) ErrorClass {
	if _, ok := classNames[ErrorClass(c)]; ok {
		return ErrorClass(c)
	}
	return ClassUnspecified
}
