package kinesis

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// KPL aggregation. The Kinesis Producer Library packs many user records
// into one Kinesis record: the 4-byte magic below, a protobuf
// AggregatedRecord, and the 16-byte MD5 of the protobuf bytes:
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
//
// The user records of one aggregate share its sequence number; the KCL
// tells them apart by their index, the sub-sequence number. A record that
// starts with the magic but whose checksum does not match is not an
// aggregate (the KCL delivers it as it is, and so do we).
var kplMagic = []byte{0xF3, 0x89, 0x9A, 0xC2}

// KPLRecord is one user record of a KPL aggregate.
type KPLRecord struct {
	PartitionKey string
	Data         []byte
}

// errNotAggregate says a record is not KPL-aggregated.
var errNotAggregate = errors.New("not a KPL aggregate")

// deaggregate returns the user records of a KPL aggregate, in order, or
// errNotAggregate for a plain record (no magic, or a checksum that does not
// match). An aggregate whose checksum matches but whose protobuf does not
// parse is an error: the record is damaged, not plain. data of each user
// record aliases b.
func deaggregate(b []byte) ([]KPLRecord, error) {
	if len(b) < len(kplMagic)+md5.Size || !bytes.HasPrefix(b, kplMagic) {
		return nil, errNotAggregate
	}
	body := b[len(kplMagic) : len(b)-md5.Size]
	sum := md5.Sum(body)
	if !bytes.Equal(sum[:], b[len(b)-md5.Size:]) {
		return nil, errNotAggregate
	}
	var keys []string
	type rawRec struct {
		keyIdx  uint64
		data    []byte
		hasData bool
	}
	var recs []rawRec
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, fmt.Errorf("kpl aggregate: field tag: %w", protowire.ParseError(n))
		}
		body = body[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return nil, fmt.Errorf("kpl aggregate: partition key table: %w", protowire.ParseError(n))
			}
			keys = append(keys, string(v))
			body = body[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return nil, fmt.Errorf("kpl aggregate: record %d: %w", len(recs), protowire.ParseError(n))
			}
			body = body[n:]
			var r rawRec
			for len(v) > 0 {
				fnum, ftyp, m := protowire.ConsumeTag(v)
				if m < 0 {
					return nil, fmt.Errorf("kpl aggregate: record %d: %w", len(recs), protowire.ParseError(m))
				}
				v = v[m:]
				switch {
				case fnum == 1 && ftyp == protowire.VarintType:
					r.keyIdx, m = protowire.ConsumeVarint(v)
				case fnum == 3 && ftyp == protowire.BytesType:
					r.data, m = protowire.ConsumeBytes(v)
					r.hasData = true
				default:
					m = protowire.ConsumeFieldValue(fnum, ftyp, v)
				}
				if m < 0 {
					return nil, fmt.Errorf("kpl aggregate: record %d field %d: %w", len(recs), fnum, protowire.ParseError(m))
				}
				v = v[m:]
			}
			if !r.hasData {
				return nil, fmt.Errorf("kpl aggregate: record %d has no data", len(recs))
			}
			recs = append(recs, r)
		default:
			n := protowire.ConsumeFieldValue(num, typ, body)
			if n < 0 {
				return nil, fmt.Errorf("kpl aggregate: field %d: %w", num, protowire.ParseError(n))
			}
			body = body[n:]
		}
	}
	out := make([]KPLRecord, len(recs))
	for i, r := range recs {
		if r.keyIdx >= uint64(len(keys)) {
			return nil, fmt.Errorf("kpl aggregate: record %d: partition key index %d outside the table of %d", i, r.keyIdx, len(keys))
		}
		out[i] = KPLRecord{PartitionKey: keys[r.keyIdx], Data: r.data}
	}
	return out, nil
}

// AggregateKPL builds a KPL aggregate of recs, as the Kinesis Producer
// Library would put it in one Kinesis record (for tests and tools; weir's
// own Kinesis sink does not aggregate).
func AggregateKPL(recs []KPLRecord) []byte {
	var body []byte
	idx := map[string]uint64{}
	var table []string
	for _, r := range recs {
		if _, ok := idx[r.PartitionKey]; !ok {
			idx[r.PartitionKey] = uint64(len(table))
			table = append(table, r.PartitionKey)
		}
	}
	for _, k := range table {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
	}
	for _, r := range recs {
		var rb []byte
		rb = protowire.AppendTag(rb, 1, protowire.VarintType)
		rb = protowire.AppendVarint(rb, idx[r.PartitionKey])
		rb = protowire.AppendTag(rb, 3, protowire.BytesType)
		rb = protowire.AppendBytes(rb, r.Data)
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, rb)
	}
	sum := md5.Sum(body)
	out := append(append([]byte{}, kplMagic...), body...)
	return append(out, sum[:]...)
}
