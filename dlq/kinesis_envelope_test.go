package dlq

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/plugins/pb"
	"github.com/weirhq/weir/record"
)

func kinesisEnvelope() record.Message {
	ts := time.Date(2026, 11, 26, 6, 0, 0, 123, time.UTC)
	r := &record.Record{
		Key: []byte("device-7"), Value: []byte{0xff, 0, '{'},
		Headers: []record.Header{{Key: "traceparent", Value: []byte("00-abc-def-01")}, {Key: "null", Value: nil},
			{Key: "empty", Value: []byte{}}, {Key: "\xffbin", Value: []byte{1}}},
		Timestamp: ts, Partition: record.Partition{Stream: "readings", ID: "shardId-000000000001"},
		Position: record.Position{Seq: "49590338271490256608559692538361571095921575989136588898"},
	}
	return Envelope(r, Failure{Message: "bad json", Class: "invalid_input", Attempts: 3, FirstFailure: ts, LastFailure: ts.Add(time.Second)},
		Origin{Pipeline: "iot", HandlerName: "iot-enrich", HandlerVersion: "1.2.0", HostID: "h1"})
}

func sameMessage(t *testing.T, got, want record.Message) {
	t.Helper()
	if !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) ||
		!bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil) || !got.Timestamp.Equal(want.Timestamp) {
		t.Fatalf("message changed:\n got %+v\nwant %+v", got, want)
	}
	if !slices.EqualFunc(got.Headers, want.Headers, func(a, b record.Header) bool {
		return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil)
	}) {
		t.Fatalf("headers changed:\n got %+v\nwant %+v", got.Headers, want.Headers)
	}
}

// The Kinesis envelope carries everything the Kafka one does: decoding
// gives back the message byte for byte (null and empty kept apart), and
// ParseKinesis the same Entry as Parse of the Kafka record.
func TestKinesisEnvelopeRoundTrip(t *testing.T) {
	m := kinesisEnvelope()
	for name, m := range map[string]record.Message{
		"envelope":  m,
		"null key":  {Key: nil, Value: []byte("v"), Headers: m.Headers, Timestamp: m.Timestamp},
		"empty key": {Key: []byte{}, Value: nil, Headers: m.Headers},
		"far time":  {Key: []byte("k"), Value: []byte("v"), Headers: m.Headers, Timestamp: time.UnixMilli(1 << 50)},
	} {
		t.Run(name, func(t *testing.T) {
			data := EncodeKinesis(m)
			if !bytes.HasPrefix(data, []byte("WDLQ\x01")) {
				t.Fatalf("data starts %q", data[:min(5, len(data))])
			}
			got, err := DecodeKinesis(data)
			if err != nil {
				t.Fatal(err)
			}
			want := m
			if name == "far time" {
				want.Timestamp = time.Time{} // kept exactly by weir.source.timestamp
			}
			sameMessage(t, got, want)
			e, err := ParseKinesis(data)
			if err != nil {
				t.Fatal(err)
			}
			ek, err := Parse(m.Key, m.Value, m.Headers)
			if err != nil {
				t.Fatal(err)
			}
			if e.SourcePosition() != ek.SourcePosition() || e.Origin != ek.Origin || e.Failure != ek.Failure ||
				!e.Timestamp.Equal(ek.Timestamp) || len(e.Headers) != len(ek.Headers) {
				t.Fatalf("entry differs from the Kafka one:\n%+v\n%+v", e, ek)
			}
		})
	}
}

// After the five bytes of magic and version, the data is a
// weir.handler.v1.Record, readable by any protobuf library.
func TestKinesisEnvelopeIsAHandlerRecord(t *testing.T) {
	m := kinesisEnvelope()
	m.Headers = slices.DeleteFunc(m.Headers, func(h record.Header) bool { return h.Key == "\xffbin" }) // proto3 strings are UTF-8
	var r pb.Record
	if err := proto.Unmarshal(EncodeKinesis(m)[5:], &r); err != nil {
		t.Fatal(err)
	}
	if string(r.Key) != "device-7" || !bytes.Equal(r.Value, m.Value) || len(r.Headers) != len(m.Headers) ||
		r.TimestampUnixNano != m.Timestamp.UnixNano() || r.Headers[0].Key != "traceparent" || r.Headers[1].Value != nil {
		t.Fatalf("decoded as weir.handler.v1.Record: %+v", &r)
	}
}

func TestDecodeKinesisNamesWhatIsWrong(t *testing.T) {
	good := EncodeKinesis(kinesisEnvelope())
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"not an envelope": {[]byte(`{"id":1}`), "does not start with WDLQ"},
		"no version":      {[]byte("WDLQ"), "before the version"},
		"version 9":       {[]byte("WDLQ\x09"), "version 9 is not supported"},
		"cut short":       {good[:len(good)-40], "dlq envelope: "},
		"key as varint":   {[]byte("WDLQ\x01\x08\x01"), "the key at byte 5 has wire type 0"},
	} {
		if _, err := DecodeKinesis(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	// Unknown fields are skipped: a later writer may add some.
	extra := append(append([]byte{}, good...), 0x50, 0x07) // field 10, varint 7
	if _, err := DecodeKinesis(extra); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}

func TestKinesisDeadLetterPartitionKey(t *testing.T) {
	m := kinesisEnvelope()
	if k := KinesisDeadLetter(m).Key; string(k) != "device-7" {
		t.Errorf("keyed record: partition key %q, want its key", k)
	}
	m.Key = nil
	dl := KinesisDeadLetter(m)
	if want := "readings/shardId-000000000001/49590338271490256608559692538361571095921575989136588898"; string(dl.Key) != want {
		t.Errorf("keyless record: partition key %q, want %q", dl.Key, want)
	}
	got, err := DecodeKinesis(dl.Value)
	if err != nil || got.Key != nil {
		t.Fatalf("keyless record decodes with key %q, err %v; want null", got.Key, err)
	}
}
