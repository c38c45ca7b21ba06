package plugins

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/plugins/pb"
)

// FuzzResultFromPB feeds arbitrary bytes, as the wire form of a handler's
// reply, to the host's reply decoder (decodeResult), for a batch of n
// records. It refuses what the protobuf runtime refuses; what it accepts
// it decodes as the protobuf runtime and resultFromPB do: converted, with
// every index in range and every output naming a sink, or refused with the
// same ClassBadReply *Error. It never panics.
func FuzzResultFromPB(f *testing.F) {
	seed := func(r *pb.Result, n uint16) {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, n)
	}
	seed(&pb.Result{}, 0)
	seed(&pb.Result{Outputs: []*pb.Output{{Index: 0, Sink: "out", Key: []byte("k"), Value: []byte("v"),
		Headers: []*pb.Header{{Key: "h", Value: []byte("x")}}}}}, 1)
	seed(&pb.Result{Outputs: []*pb.Output{{Index: 7, Sink: "out"}}}, 3)
	seed(&pb.Result{Outputs: []*pb.Output{{Index: 1, Sink: "out"}, {Index: 1, Sink: "out"}, {Index: 0}}}, 2)
	seed(&pb.Result{Failures: []*pb.Failure{{Index: 4294967295, Class: 99}, {Index: 0, Retryable: true}}}, 2)
	seed(&pb.Result{Failures: []*pb.Failure{{Index: 0, Class: pb.ErrorClass_ERROR_CLASS_BAD_REPLY}, {Index: 0}}}, 1)
	f.Add([]byte("\x0a\x02\x12\xff"), uint16(1))                    // a sink name that is not UTF-8
	seed(&pb.Result{SharedResult: &pb.SharedResult{Length: 12}}, 1) // a result in a batch file not offered
	f.Add([]byte("\x1a\x02\x08\xff"), uint16(1))                    // a shared result that is malformed
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		var got Result
		bad, err := decodeResult(bytes.Clone(data), int(n), &got)
		var p pb.Result
		if perr := proto.Unmarshal(data, &p); perr != nil {
			if err == nil {
				t.Fatalf("decoded a reply protobuf refuses (%v)", perr)
			}
			return // gRPC fails the call
		}
		if err != nil {
			t.Fatalf("refused a reply protobuf accepts: %v", err)
		}
		want, wantBad := resultFromPB(&p, int(n))
		if wantBad != nil {
			if e, ok := errors.AsType[*Error](bad); !ok || e.Class != ClassBadReply || bad.Error() != wantBad.Error() {
				t.Fatalf("refusal %#v, want %v", bad, wantBad)
			}
			return
		}
		if bad != nil {
			t.Fatalf("refused %v, resultFromPB accepts it", bad)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("decoded\n%+v\nwant\n%+v", &got, want)
		}
		for _, o := range got.Outputs {
			if o.Index < 0 || o.Index >= int(n) || o.Sink == "" {
				t.Fatalf("accepted output %+v for a batch of %d", o, n)
			}
		}
		for _, fl := range got.Failures {
			if fl.Index < 0 || fl.Index >= int(n) {
				t.Fatalf("accepted failure %+v for a batch of %d", fl, n)
			}
			if _, ok := classNames[fl.Class]; !ok {
				t.Fatalf("unknown class %d let through", fl.Class)
			}
		}
	})
}

// FuzzDecodeBatch feeds arbitrary bytes, as the wire form of a batch, to
// the plugin side's decoder (decodeBatch). It refuses what the protobuf
// runtime refuses and decodes what it accepts as the protobuf runtime and
// batchFromPB do. It never panics.
func FuzzDecodeBatch(f *testing.F) {
	for _, b := range wireBatches() {
		f.Add(marshalBatch(b))
	}
	f.Add([]byte("\xc8\xc8\xc8\xc800"))
	f.Add(appendSharedRecords(marshalBatch(wireBatches()["no records"]), shared{offset: 1 << 20, length: 300, replyOffset: 2 << 20, replyCap: 1 << 20}))
	f.Add([]byte(":\x0500000")) // shared records that are not a message
	ok, bad := oddRecords()
	for _, r := range ok {
		f.Add(r)
	}
	for _, r := range bad {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got Batch
		err := decodeBatch(bytes.Clone(data), &got)
		var p pb.Batch
		if perr := proto.Unmarshal(data, &p); perr != nil {
			if err == nil {
				t.Fatalf("decoded a batch protobuf refuses (%v)", perr)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused a batch protobuf accepts: %v", err)
		}
		if want := batchFromPB(&p); !reflect.DeepEqual(&got, want) {
			t.Fatalf("decoded\n%+v\nwant\n%+v", &got, want)
		}
	})
}
