package dlq

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirhq/weir/record"
)

// KinesisMagic starts the data of every dead letter weir writes to a
// Kinesis DLQ stream, followed by one version byte (KinesisVersion).
//
// Kinesis records have a partition key and data, no headers, so the
// envelope (the original key, value and headers plus the weir.* headers,
// exactly what a Kafka DLQ record carries) is encoded into the data:
//
//	"WDLQ" 0x01 <weir.handler.v1.Record>
//
// where the rest is the protocol buffer message weir.handler.v1.Record of
// plugins/proto/weir/handler/v1/handler.proto (fields 1 key, 2 value, 3
// headers, 4 timestamp_unix_nano; absent key or value means null), the
// message handlers already receive: any language with that .proto reads a
// dead letter after skipping the five bytes. Binary rather than JSON so
// that a value is not inflated by base64 (Kinesis caps a record at 1 MiB,
// and the source records being dead-lettered can be near that); the weir.*
// headers add a few hundred bytes. Header keys are written as they are;
// one that is not UTF-8 (Kafka allows it) makes strict proto3 readers
// refuse the record, while weir reads it.
const (
	KinesisMagic   = "WDLQ"
	KinesisVersion = 1
)

// Field numbers of weir.handler.v1.Record and weir.handler.v1.Header.
const (
	fieldKey       protowire.Number = 1
	fieldValue     protowire.Number = 2
	fieldHeaders   protowire.Number = 3
	fieldTimestamp protowire.Number = 4
	fieldHdrKey    protowire.Number = 1
	fieldHdrValue  protowire.Number = 2
)

// EncodeKinesis encodes a DLQ message (an Envelope) as the data of a
// Kinesis record: see KinesisMagic. Null key, value and header values stay
// null. A timestamp outside the years 1678-2262 (not representable in
// nanoseconds) is written as 0; the envelope's weir.source.timestamp
// header keeps it exactly.
func EncodeKinesis(m record.Message) []byte {
	n := len(KinesisMagic) + 1 + len(m.Key) + len(m.Value) + 32
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 12
	}
	b := make([]byte, 0, n)
	b = append(b, KinesisMagic...)
	b = append(b, KinesisVersion)
	if m.Key != nil {
		b = protowire.AppendTag(b, fieldKey, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Key)
	}
	if m.Value != nil {
		b = protowire.AppendTag(b, fieldValue, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Value)
	}
	for _, h := range m.Headers {
		size := protowire.SizeTag(fieldHdrKey) + protowire.SizeBytes(len(h.Key))
		if h.Value != nil {
			size += protowire.SizeTag(fieldHdrValue) + protowire.SizeBytes(len(h.Value))
		}
		b = protowire.AppendTag(b, fieldHeaders, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, fieldHdrKey, protowire.BytesType)
		b = protowire.AppendString(b, h.Key)
		if h.Value != nil {
			b = protowire.AppendTag(b, fieldHdrValue, protowire.BytesType)
			b = protowire.AppendBytes(b, h.Value)
		}
	}
	if ts := unixNano(m.Timestamp); ts != 0 {
		b = protowire.AppendTag(b, fieldTimestamp, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ts))
	}
	return b
}

// unixNano is t in nanoseconds, or 0 for the zero time and times that do
// not fit.
func unixNano(t time.Time) int64 {
	if t.IsZero() || t.Year() < 1678 || t.Year() > 2261 {
		return 0
	}
	return t.UnixNano()
}

// errNotKinesisEnvelope is wrapped by DecodeKinesis when data does not
// start with KinesisMagic.
var errNotKinesisEnvelope = errors.New("dlq envelope: kinesis record data does not start with " + KinesisMagic)

// DecodeKinesis reads what EncodeKinesis wrote. It fails, saying what is
// wrong and where, on data without the magic, an unknown version, or a
// malformed message; unknown fields are skipped (a later writer may add
// some). The result's key, value and header values are copies.
func DecodeKinesis(data []byte) (record.Message, error) {
	var m record.Message
	if !bytes.HasPrefix(data, []byte(KinesisMagic)) {
		return m, errNotKinesisEnvelope
	}
	data = data[len(KinesisMagic):]
	if len(data) == 0 {
		return m, errors.New("dlq envelope: kinesis record data ends after the magic, before the version")
	}
	if v := data[0]; v != KinesisVersion {
		return m, fmt.Errorf("dlq envelope: kinesis envelope version %d is not supported (this weir reads version %d)", v, KinesisVersion)
	}
	b := data[1:]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, wireError("a field tag", len(KinesisMagic)+len(data)-len(b), n)
		}
		at := len(KinesisMagic) + len(data) - len(b) // in the record data
		b = b[n:]
		switch {
		case num == fieldKey && typ == protowire.BytesType, num == fieldValue && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return m, wireError(fieldName(num), at, n)
			}
			v = append([]byte{}, v...)
			if num == fieldKey {
				m.Key = v
			} else {
				m.Value = v
			}
			b = b[n:]
		case num == fieldHeaders && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return m, wireError("a header", at, n)
			}
			h, err := decodeKinesisHeader(v)
			if err != nil {
				return m, fmt.Errorf("dlq envelope: header %d at byte %d: %w", len(m.Headers), at, err)
			}
			m.Headers = append(m.Headers, h)
			b = b[n:]
		case num == fieldTimestamp && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return m, wireError("the timestamp", at, n)
			}
			if ts := int64(v); ts != 0 && ts > math.MinInt64 {
				m.Timestamp = time.Unix(0, ts).UTC()
			}
			b = b[n:]
		case num == fieldKey || num == fieldValue || num == fieldHeaders || num == fieldTimestamp:
			return m, fmt.Errorf("dlq envelope: %s at byte %d has wire type %d", fieldName(num), at, typ)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return m, wireError(fmt.Sprintf("unknown field %d", num), at, n)
			}
			b = b[n:]
		}
	}
	return m, nil
}

func decodeKinesisHeader(b []byte) (record.Header, error) {
	var h record.Header
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case (num == fieldHdrKey || num == fieldHdrValue) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return h, protowire.ParseError(n)
			}
			if num == fieldHdrKey {
				h.Key = string(v)
			} else {
				h.Value = append([]byte{}, v...)
			}
			b = b[n:]
		case num == fieldHdrKey || num == fieldHdrValue:
			return h, fmt.Errorf("field %d has wire type %d", num, typ)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return h, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return h, nil
}

func fieldName(num protowire.Number) string {
	switch num {
	case fieldKey:
		return "the key"
	case fieldValue:
		return "the value"
	case fieldHeaders:
		return "a header"
	default:
		return "the timestamp"
	}
}

func wireError(what string, at, code int) error {
	return fmt.Errorf("dlq envelope: %s at byte %d: %w", what, at, protowire.ParseError(code))
}

// ParseKinesis reads a dead letter from the data of a Kinesis DLQ record:
// DecodeKinesis, then Parse.
func ParseKinesis(data []byte) (*Entry, error) {
	m, err := DecodeKinesis(data)
	if err != nil {
		return nil, err
	}
	return Parse(m.Key, m.Value, m.Headers)
}

// KinesisDeadLetter turns a DLQ message (an Envelope) into the message a
// Kinesis sink writes: the encoded envelope as value, and as key (the
// partition key) the original record's key, so that dead letters of one
// key stay in order in one shard of the DLQ stream; a record without a key
// gets "STREAM/PARTITION/POSITION" of its source (weir.source.*), spreading
// keyless dead letters over the shards.
func KinesisDeadLetter(m record.Message) record.Message {
	key := m.Key
	if len(key) == 0 {
		var stream, part, pos []byte
		for _, h := range m.Headers {
			switch h.Key {
			case HeaderStream:
				stream = h.Value
			case HeaderPartition:
				part = h.Value
			case HeaderPosition:
				pos = h.Value
			}
		}
		key = bytes.Join([][]byte{stream, part, pos}, []byte("/"))
	}
	return record.Message{Key: key, Value: EncodeKinesis(m), Timestamp: m.Timestamp}
}
