package plugins

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/plugins/pb"
)

// FuzzResultFromPB feeds arbitrary bytes, as the wire form of a handler's
// reply, to the host's reply decoder, for a batch of n records. A reply
// that protobuf accepts is either converted, with every index in range and
// every output naming a sink, or refused with a ClassBadReply *Error; the
// decoder never panics.
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
	f.Add([]byte("\x0a\x02\x12\xff"), uint16(1)) // a sink name that is not UTF-8
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		var p pb.Result
		if proto.Unmarshal(data, &p) != nil {
			return // gRPC refuses it before the decoder sees it
		}
		res, err := resultFromPB(&p, int(n))
		if err != nil {
			if e, ok := errors.AsType[*Error](err); !ok || e.Class != ClassBadReply {
				t.Fatalf("refusal is not a ClassBadReply *Error: %#v", err)
			}
			return
		}
		if len(res.Outputs) != len(p.Outputs) || len(res.Failures) != len(p.Failures) {
			t.Fatalf("%d outputs and %d failures decoded from %d and %d", len(res.Outputs), len(res.Failures), len(p.Outputs), len(p.Failures))
		}
		for _, o := range res.Outputs {
			if o.Index < 0 || o.Index >= int(n) || o.Sink == "" {
				t.Fatalf("accepted output %+v for a batch of %d", o, n)
			}
		}
		for _, fl := range res.Failures {
			if fl.Index < 0 || fl.Index >= int(n) {
				t.Fatalf("accepted failure %+v for a batch of %d", fl, n)
			}
			if _, ok := classNames[fl.Class]; !ok {
				t.Fatalf("unknown class %d let through", fl.Class)
			}
		}
	})
}
