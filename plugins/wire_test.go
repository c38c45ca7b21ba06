package plugins

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/plugins/pb"
	"github.com/weirhq/weir/record"
)

// wireBatches are batches covering every field and the null/empty
// distinctions of the optional ones.
func wireBatches() map[string]*Batch {
	now := time.Unix(1700000000, 123456789)
	return map[string]*Batch{
		"empty":       {},
		"no records":  {Pipeline: "p", Stream: "s", Partition: "3", Attempt: 2, Deadline: now},
		"500 records": benchBatch(500),
		"null and empty": {Pipeline: "pipé", Stream: "topic", Partition: "0", Attempt: 1, Records: []record.Record{
			{Key: nil, Value: nil},
			{Key: []byte{}, Value: []byte{}},
			{Key: []byte("k"), Value: []byte("v"), Headers: []record.Header{{Key: "", Value: nil}, {Key: "h", Value: []byte{}}, {Key: "h", Value: []byte("x")}}},
			{Timestamp: now, Position: record.Position{Offset: -1}},
			{Position: record.Position{Seq: "49590338271490256608559692538361571095921575989136588898"}},
			{Value: bytes.Repeat([]byte{0xff, 0}, 300), Position: record.Position{Offset: 1 << 40}},
		}},
	}
}

// TestWireBatchIsTheProtobufEncoding: the hand-written encoder writes the
// very bytes the protobuf runtime writes for the same batch, so a handler
// in any language reads it as before.
func TestWireBatchIsTheProtobufEncoding(t *testing.T) {
	for name, b := range wireBatches() {
		t.Run(name, func(t *testing.T) {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(batchToPB(b))
			if err != nil {
				t.Fatal(err)
			}
			if got := marshalBatch(b); !bytes.Equal(got, want) {
				t.Fatalf("encoding differs from protobuf's:\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestAppendRecordIsTheWireEncoding: records encoded one at a time as a
// lane does (AppendRecord) are the bytes of the batch's records field, and
// each record then points into them, null and empty kept apart, without the
// buffer moving when it was given the room RecordWireSize says.
func TestAppendRecordIsTheWireEncoding(t *testing.T) {
	for name, b := range wireBatches() {
		t.Run(name, func(t *testing.T) {
			want := encodeRecords(b).recs
			recs := slices.Clone(b.Records)
			for i := range recs {
				recs[i].Headers = slices.Clone(recs[i].Headers)
			}
			size := 0
			for i := range recs {
				size += RecordWireSize(&recs[i])
			}
			buf := make([]byte, 0, size)
			for i := range recs {
				if i%2 == 0 {
					buf = AppendRecord(buf, &recs[i])
				} else {
					buf = AppendSizedRecord(buf, &recs[i], RecordWireSize(&recs[i]))
				}
			}
			if !bytes.Equal(buf, want) {
				t.Fatalf("AppendRecord wrote\n%x\nwant\n%x", buf, want)
			}
			if cap(buf) != size {
				t.Fatalf("the buffer moved: capacity %d, was %d", cap(buf), size)
			}
			within := func(what string, got, orig []byte) {
				t.Helper()
				if (got == nil) != (orig == nil) || !bytes.Equal(got, orig) {
					t.Fatalf("%s: %q after encoding, was %q (nil: %v, was nil: %v)", what, got, orig, got == nil, orig == nil)
				}
				at, start := uintptr(unsafe.Pointer(unsafe.SliceData(got))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
				if len(got) > 0 && (at < start || at+uintptr(len(got)) > start+uintptr(len(buf))) {
					t.Fatalf("%s does not point into the encoding", what)
				}
			}
			for i := range recs {
				within(fmt.Sprintf("record %d key", i), recs[i].Key, b.Records[i].Key)
				within(fmt.Sprintf("record %d value", i), recs[i].Value, b.Records[i].Value)
				for j := range recs[i].Headers {
					within(fmt.Sprintf("record %d header %d", i, j), recs[i].Headers[j].Value, b.Records[i].Headers[j].Value)
				}
			}
		})
	}
}

// unknownField is a field no version of the protocol uses.
func unknownField() []byte {
	b := protowire.AppendTag(nil, 1000, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future"))
	b = protowire.AppendTag(b, 1001, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, 7)
}

// TestDecodeBatchMatchesProtobuf: the hand-written decoder gives what
// proto.Unmarshal gives (converted by batchFromPB), skipping unknown fields
// (a newer host's) at the top level and inside records, and taking the
// stream and partition even if they come after the records.
func TestDecodeBatchMatchesProtobuf(t *testing.T) {
	for name, b := range wireBatches() {
		t.Run(name, func(t *testing.T) {
			in, _ := proto.Marshal(batchToPB(b))
			var p pb.Batch
			if err := proto.Unmarshal(in, &p); err != nil {
				t.Fatal(err)
			}
			want := batchFromPB(&p)
			withUnknown := batchToPB(b)
			for _, r := range withUnknown.Records {
				r.ProtoReflect().SetUnknown(unknownField())
			}
			withUnknown.ProtoReflect().SetUnknown(unknownField())
			unknown, _ := proto.Marshal(withUnknown)
			// The head (fields 1 to 5) after the records.
			var head, recs []byte
			rd := reader{buf: in}
			for len(rd.buf) > 0 {
				before := rd.buf
				f, err := rd.next()
				if err != nil {
					t.Fatal(err)
				}
				if f.num == 6 {
					recs = append(recs, before[:len(before)-len(rd.buf)]...)
				} else {
					head = append(head, before[:len(before)-len(rd.buf)]...)
				}
			}
			for variant, buf := range map[string][]byte{"as is": in, "unknown fields": unknown, "head last": append(recs, head...)} {
				var got Batch
				if err := decodeBatch(bytes.Clone(buf), &got); err != nil {
					t.Fatalf("%s: %v", variant, err)
				}
				if !reflect.DeepEqual(&got, want) {
					t.Fatalf("%s: decoded\n%+v\nwant\n%+v", variant, &got, want)
				}
			}
		})
	}
}

// oddRecords are records (Batch field 6, each with its tag and length)
// that the host's encoder does not write but a decoder must take as the
// protobuf runtime does: fields out of order or repeated (the last one
// wins), values whose length takes three bytes, varints that are longer
// than they need be, ten bytes long, or cut short. The one-record batches
// the decoder must refuse are last.
func oddRecords() (ok, bad map[string][]byte) {
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	rec := func(fields ...[]byte) []byte { return field(6, cat(fields...)) }
	ts := uint64(time.Unix(1700000000, 123456789).UnixNano())
	key, value := field(1, []byte("k")), field(2, []byte("v"))
	ok = map[string][]byte{
		"value, key":                  rec(value, key),
		"offset, timestamp, value":    rec(varint(5, 7), varint(4, ts), value),
		"key twice":                   rec(key, value, field(1, []byte("second"))),
		"timestamp twice":             rec(key, varint(4, ts), varint(4, ts+1)),
		"offset, then key":            rec(varint(5, 42), key),
		"a header between":            rec(key, field(3, field(1, []byte("h"))), value, varint(4, ts)),
		"a value of 20000 bytes":      rec(key, field(2, bytes.Repeat([]byte("x"), 20000)), varint(4, ts)),
		"a negative offset":           rec(key, value, varint(4, ts), varint(5, uint64(1<<64-1))),
		"a negative timestamp":        rec(key, varint(4, uint64(1<<64-5e9)), varint(5, 1)),
		"a longer timestamp":          rec(key, []byte{4 << 3, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, value),
		"a zero in two bytes":         rec(key, []byte{5 << 3, 0x80, 0x00}, value, varint(4, ts)),
		"a timestamp of eight bytes":  rec(key, varint(4, 1<<55), varint(5, 1)),
		"nine bytes, then a key":      rec(varint(4, ts), key),
		"an offset ending the record": rec(key, value, varint(5, 1<<20)),
		"a length of zero":            rec(field(1, nil), field(2, nil)),
	}
	bad = map[string][]byte{
		"a timestamp cut short":   rec(key, []byte{4 << 3, 0x81, 0x80, 0x80}),
		"a varint of 11 bytes":    rec(key, []byte{4 << 3, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}),
		"a varint overflowing":    rec(key, []byte{4 << 3, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02}),
		"a value cut short":       rec(key, []byte{2 << 3, 0x05, 'a', 'b'}),
		"a record cut short":      []byte{6<<3 | 2, 0x90, 0x01, 1 << 3, 0},
		"a long value cut short":  rec(key, []byte{2 << 3, 0x80, 0x01, 'a'}),
		"a key of the wrong type": rec([]byte{1<<3 | 5, 1, 2}),
	}
	return ok, bad
}

// TestDecodeOddRecords: records the host does not write but protobuf
// accepts decode as the protobuf runtime decodes them, alone and among
// others; those it refuses are refused.
func TestDecodeOddRecords(t *testing.T) {
	ok, bad := oddRecords()
	normal := marshalBatch(wireBatches()["null and empty"])
	for name, r := range ok {
		for variant, buf := range map[string][]byte{"alone": r, "among others": append(append(bytes.Clone(normal), r...), normal...)} {
			var p pb.Batch
			if err := proto.Unmarshal(buf, &p); err != nil {
				t.Fatalf("%s, %s: protobuf refuses it: %v", name, variant, err)
			}
			var got Batch
			if err := decodeBatch(bytes.Clone(buf), &got); err != nil {
				t.Fatalf("%s, %s: %v", name, variant, err)
			}
			if want := batchFromPB(&p); !reflect.DeepEqual(&got, want) {
				t.Fatalf("%s, %s: decoded\n%+v\nwant\n%+v", name, variant, &got, want)
			}
		}
	}
	for name, r := range bad {
		if err := proto.Unmarshal(r, &pb.Batch{}); err == nil {
			t.Fatalf("%s: protobuf accepts it", name)
		}
		if err := decodeBatch(bytes.Clone(r), &Batch{}); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func wireResult() *pb.Result {
	res, _ := (&mirrorHandler{}).Handle(context.Background(), wireBatches()["null and empty"])
	res.Outputs = append(res.Outputs, Output{Index: 1, Sink: "other"}, Output{Index: 2, Sink: "out"})
	res.Failures = append(res.Failures, Failure{Index: 0, Message: "ünïcode", Class: ClassTransient, Retryable: true})
	return resultToPB(res)
}

// TestDecodeResultMatchesProtobuf: the host's hand-written decoder gives
// what proto.Unmarshal and resultFromPB give, skipping unknown fields (a
// newer handler's), and refuses the same replies with the same error.
func TestDecodeResultMatchesProtobuf(t *testing.T) {
	base := wireResult()
	for _, withUnknown := range []bool{false, true} {
		p := proto.Clone(base).(*pb.Result)
		if withUnknown {
			for _, o := range p.Outputs {
				o.ProtoReflect().SetUnknown(unknownField())
			}
			p.Failures[0].ProtoReflect().SetUnknown(unknownField())
			p.ProtoReflect().SetUnknown(unknownField())
		}
		buf, _ := proto.Marshal(p)
		for _, n := range []int{6, 2, 0} { // every index in range; some not; none
			checkDecodeResult(t, fmt.Sprintf("unknown fields %v, %d records", withUnknown, n), buf, n)
		}
	}
	noSink, _ := proto.Marshal(&pb.Result{Outputs: []*pb.Output{{Index: 0, Sink: "out"}, {Index: 1}}, Failures: []*pb.Failure{{Index: 9}}})
	checkDecodeResult(t, "an output without a sink", noSink, 3)
}

// checkDecodeResult checks that decodeResult(buf, n) is what the protobuf
// runtime and resultFromPB make of buf.
func checkDecodeResult(t *testing.T, name string, buf []byte, n int) {
	t.Helper()
	var p pb.Result
	perr := proto.Unmarshal(buf, &p)
	var got Result
	bad, err := decodeResult(bytes.Clone(buf), n, &got)
	if (err == nil) != (perr == nil) {
		t.Fatalf("%s: decodeResult says %v, protobuf says %v", name, err, perr)
	}
	if err != nil {
		return
	}
	want, wantBad := resultFromPB(&p, n)
	if (bad == nil) != (wantBad == nil) || bad != nil && bad.Error() != wantBad.Error() {
		t.Fatalf("%s: decodeResult finds %v, resultFromPB %v", name, bad, wantBad)
	}
	if bad == nil && !reflect.DeepEqual(&got, want) {
		t.Fatalf("%s: decoded\n%+v\nwant\n%+v", name, &got, want)
	}
}

// TestWireDecodersRejectWhatProtobufRejects: the hand-written decoders and
// the protobuf runtime agree on what is malformed: every truncation of a
// valid message, invalid UTF-8 in a string field (both reject), a known
// field with the wrong wire type (both skip it as unknown).
func TestWireDecodersRejectWhatProtobufRejects(t *testing.T) {
	batch, _ := proto.Marshal(batchToPB(wireBatches()["null and empty"]))
	result, _ := proto.Marshal(wireResult())
	wrongType := protowire.AppendTag(nil, 6, protowire.VarintType) // records as a varint
	wrongType = protowire.AppendVarint(wrongType, 1)
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType) // pipeline
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{0xff, 0xfe})
	badSink := protowire.AppendTag(nil, 1, protowire.BytesType) // an output ...
	badSink = protowire.AppendBytes(badSink, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xc3}))

	type input struct {
		name   string
		buf    []byte
		result bool
	}
	var inputs []input
	for n := 0; n <= len(batch); n++ {
		inputs = append(inputs, input{name: "batch truncated", buf: batch[:n]})
	}
	for n := 0; n <= len(result); n++ {
		inputs = append(inputs, input{name: "result truncated", buf: result[:n], result: true})
	}
	// A field number above 2^29-1 in a five-byte tag: protowire's
	// ConsumeTag accepts it, the protobuf runtime does not (found by
	// FuzzResultFromPB).
	bigNumber := []byte("\xc8\xc8\xc8\xc8\x30\x30")
	inputs = append(inputs,
		input{name: "field number out of range", buf: bigNumber},
		input{name: "field number out of range", buf: bigNumber, result: true},
		input{name: "records with a varint type", buf: wrongType},
		input{name: "pipeline not UTF-8", buf: badUTF8},
		input{name: "sink not UTF-8", buf: badSink, result: true},
	)
	for _, in := range inputs {
		var ours, theirs error
		if in.result {
			_, ours = decodeResult(in.buf, 1, &Result{})
			theirs = proto.Unmarshal(in.buf, &pb.Result{})
		} else {
			ours, theirs = decodeBatch(in.buf, &Batch{}), proto.Unmarshal(in.buf, &pb.Batch{})
		}
		if (ours == nil) != (theirs == nil) {
			t.Errorf("%s (%d bytes): our decoder says %v, protobuf says %v", in.name, len(in.buf), ours, theirs)
		}
	}
}

// TestWireDecodeDoesNotAllocatePerRecord: a batch decodes into a fixed
// number of slabs whatever its size.
func TestWireDecodeDoesNotAllocatePerRecord(t *testing.T) {
	const slack = 3
	for _, n := range []int{5, 500} {
		buf := marshalBatch(benchBatch(n))
		if a := testing.AllocsPerRun(20, func() { _ = decodeBatch(buf, &Batch{}) }); a > 3+slack {
			t.Errorf("decodeBatch(%d records): %.0f allocations", n, a)
		}
		b := benchBatch(n)
		if a := testing.AllocsPerRun(20, func() { encodeRecords(b).release() }); a > 2+slack {
			t.Errorf("encodeRecords(%d records): %.0f allocations", n, a)
		}
	}
}

// TestWireRoundTripThroughGRPC: a batch sent by the host's client reaches a
// handler served with the plugin's codec intact, and its result comes back
// intact (the same check as the protobuf conversions', end to end).
func TestWireRoundTripThroughGRPC(t *testing.T) {
	h := &mirrorHandler{}
	c := connect(t, h)
	b := wireBatches()["null and empty"]
	res, err := c.Handle(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	got := h.got
	h.mu.Unlock()
	if len(got.Records) != len(b.Records) || got.Pipeline != b.Pipeline {
		t.Fatalf("handler got %d records of %q, want %d of %q", len(got.Records), got.Pipeline, len(b.Records), b.Pipeline)
	}
	for i := range b.Records {
		w, g := &b.Records[i], &got.Records[i]
		if !sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) || g.Position != w.Position || !g.Timestamp.Equal(w.Timestamp) {
			t.Fatalf("record %d: got %+v, want %+v", i, g, w)
		}
		checkHeaders(t, "record", g.Headers, w.Headers)
	}
	if len(res.Outputs) != len(b.Records) || !strings.HasPrefix(res.Failures[0].Message, "odd") {
		t.Fatalf("result: %d outputs, failures %+v", len(res.Outputs), res.Failures)
	}
}

// The host side's encoding of a batch's records.
func BenchmarkEncodeRecords500(b *testing.B)      { benchEncode(b, benchBatch(500)) }
func BenchmarkEncodeRecords1000x100(b *testing.B) { benchEncode(b, loadBatch(1000, 100)) }

func benchEncode(b *testing.B, batch *Batch) {
	b.SetBytes(int64(len(marshalBatch(batch))))
	b.ReportAllocs()
	for b.Loop() {
		encodeRecords(batch).release()
	}
}

// loadBatch is a batch like those of weir loadtest bench: n records of
// keys "k0" to "k999", size-byte values, a timestamp and an offset, no
// headers.
func loadBatch(n, size int) *Batch {
	b := &Batch{Pipeline: "loadtest", Stream: "loadtest-in", Partition: "3", Attempt: 1, Deadline: time.Now()}
	b.Records = make([]record.Record, n)
	now := time.Now()
	for i := range b.Records {
		b.Records[i] = record.Record{
			Key:       []byte(fmt.Sprintf("k%d", i%1000)),
			Value:     bytes.Repeat([]byte("v"), size),
			Timestamp: now,
			Position:  record.Position{Offset: int64(1000000 + i)},
		}
	}
	return b
}

// The plugin side's decoding of a batch, into what the handler gets.
func BenchmarkPluginDecode500(b *testing.B)      { benchDecode(b, benchBatch(500)) }
func BenchmarkPluginDecode1000x100(b *testing.B) { benchDecode(b, loadBatch(1000, 100)) }

func benchDecode(b *testing.B, batch *Batch) {
	buf := marshalBatch(batch)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		_ = decodeBatch(buf, &Batch{})
	}
}

func BenchmarkProtoUnmarshalBatch500(b *testing.B) {
	buf := marshalBatch(benchBatch(500))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		_ = proto.Unmarshal(buf, &pb.Batch{})
	}
}

// wireResults are results covering every field, the null/empty
// distinctions of the optional ones, and values the protobuf conversion
// clamps or passes through (a negative index, classes this host does not
// know, negative timestamps).
func wireResults() map[string]*Result {
	mirrored, _ := (&mirrorHandler{}).Handle(context.Background(), wireBatches()["null and empty"])
	big, _ := (&mirrorHandler{}).Handle(context.Background(), loadBatch(1000, 100))
	return map[string]*Result{
		"empty":                              {},
		"mirrored":                           mirrored,
		"1000 outputs of 100 B and failures": big,
		"edges": {
			Outputs: []Output{
				{Index: -3, Sink: "out"},
				{Index: 1 << 40, Sink: "snk", Message: record.Message{Key: []byte{}, Value: nil, Headers: []record.Header{{Key: "", Value: []byte{}}, {Key: "k"}}}},
				{Index: 2, Message: record.Message{Timestamp: time.Unix(-5, 0)}},
			},
			Failures: []Failure{
				{Index: 0, Class: ErrorClass(99)},
				{Index: 1, Class: ErrorClass(-2), Retryable: true, Message: "ünïcode"},
				{Index: -1},
			},
		},
	}
}

// TestWireResultIsTheProtobufEncoding: the plugin side's hand-written
// encoder of a result writes the very bytes the protobuf runtime writes for
// it (through resultToPB), and refuses what the protobuf runtime refuses: a
// string field that is not UTF-8.
//
// Through resultBufs, which hands out its buffers uncleared, each result
// is encoded twice, in random order with the others, into buffers that held
// other results.
func TestWireResultIsTheProtobufEncoding(t *testing.T) {
	for pool, p := range map[string]mem.BufferPool{"gRPC's pool": mem.DefaultBufferPool(), "resultBufs": &resultBufs} {
		for name, r := range wireResults() {
			t.Run(pool+"/"+name, func(t *testing.T) {
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(resultToPB(r))
				if err != nil {
					t.Fatal(err)
				}
				for range 2 {
					got, err := encodeResult(r, p)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Materialize(), want) {
						t.Fatalf("encoding differs from protobuf's:\n got %x\nwant %x", got.Materialize(), want)
					}
					got.Free()
				}
			})
		}
	}
	for name, r := range map[string]*Result{
		"sink":        {Outputs: []Output{{Sink: "\xff"}}},
		"second sink": {Outputs: []Output{{Sink: "out"}, {Sink: "out"}, {Sink: "o\xff"}}},
		"header key":  {Outputs: []Output{{Sink: "out", Message: record.Message{Headers: []record.Header{{Key: "a\xc3"}}}}}},
		"message":     {Failures: []Failure{{Message: "\xfe"}}},
	} {
		if _, err := proto.Marshal(resultToPB(r)); err == nil {
			t.Fatalf("%s: protobuf accepts it", name)
		}
		if _, err := encodeResult(r, mem.DefaultBufferPool()); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Errorf("%s not UTF-8: encodeResult says %v", name, err)
		}
	}
}

// The plugin side's encoding of a result of 1000 outputs of 100 B and 500
// failures.
func BenchmarkEncodeResult1000x100(b *testing.B) {
	r, _ := (&mirrorHandler{}).Handle(context.Background(), loadBatch(1000, 100))
	pool := mem.DefaultBufferPool()
	b.ReportAllocs()
	for b.Loop() {
		out, _ := encodeResult(r, pool)
		out.Free()
	}
}

// The same through the protobuf runtime, as before encodeResult.
func BenchmarkProtoMarshalResult1000x100(b *testing.B) {
	r, _ := (&mirrorHandler{}).Handle(context.Background(), loadBatch(1000, 100))
	b.ReportAllocs()
	for b.Loop() {
		out, _ := protoCodec.Marshal(resultToPB(r))
		out.Free()
	}
}

// The host side's decoding of a reply of 1000 outputs of 100 B and 500
// failures.
func BenchmarkDecodeResult1000x100(b *testing.B) {
	r, _ := (&mirrorHandler{}).Handle(context.Background(), loadBatch(1000, 100))
	buf, _ := proto.Marshal(resultToPB(r))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = decodeResult(buf, 1000, &Result{})
	}
}

// The host side's encoding of records one at a time as they arrive, into
// a buffer with room for them (what a lane does with each delivery).
func BenchmarkAppendRecord1000x100(b *testing.B) {
	batch := loadBatch(1000, 100)
	size := 0
	for i := range batch.Records {
		size += RecordWireSize(&batch.Records[i])
	}
	buf := make([]byte, 0, size)
	recs := make([]record.Record, len(batch.Records))
	b.SetBytes(int64(len(marshalBatch(batch))))
	b.ReportAllocs()
	for b.Loop() {
		copy(recs, batch.Records)
		buf = buf[:0]
		for i := range recs {
			buf = AppendRecord(buf, &recs[i])
		}
	}
}
