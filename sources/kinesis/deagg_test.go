package kinesis

import (
	"bytes"
	"crypto/md5"
	"errors"
	"testing"
)

func TestDeaggregate(t *testing.T) {
	recs := []KPLRecord{{"a", []byte("one")}, {"b", []byte("two")}, {"a", []byte("")}, {"c", bytes.Repeat([]byte{0xF3}, 300)}}
	agg := AggregateKPL(recs)
	got, err := deaggregate(agg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d user records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if got[i].PartitionKey != recs[i].PartitionKey || !bytes.Equal(got[i].Data, recs[i].Data) {
			t.Errorf("record %d = %+v, want %+v", i, got[i], recs[i])
		}
	}
	tests := map[string][]byte{
		"plain":        []byte("just a record"),
		"magic only":   kplMagic,
		"bad checksum": append(append([]byte{}, agg[:len(agg)-1]...), agg[len(agg)-1]^1),
	}
	for name, b := range tests {
		if _, err := deaggregate(b); !errors.Is(err, errNotAggregate) {
			t.Errorf("%s: %v, want errNotAggregate", name, err)
		}
	}
}

// A record with the magic and a matching checksum whose protobuf is
// damaged is an error, not a plain record, and not a panic.
func TestDeaggregateDamaged(t *testing.T) {
	agg := AggregateKPL([]KPLRecord{{"k", []byte("v")}})
	body := agg[len(kplMagic) : len(agg)-16]
	// A record pointing at a partition key the table does not have.
	bad := append([]byte{}, body...)
	for i := range bad {
		if bad[i] == 0x08 { // field 1 varint: the key index
			bad[i+1] = 5
			break
		}
	}
	if _, err := deaggregate(withChecksum(bad)); err == nil || errors.Is(err, errNotAggregate) {
		t.Errorf("key index outside the table: %v", err)
	}
	if _, err := deaggregate(withChecksum(body[:len(body)-2])); err == nil || errors.Is(err, errNotAggregate) {
		t.Errorf("truncated protobuf: %v", err)
	}
}

// withChecksum frames a protobuf body as an aggregate: magic, body, MD5.
func withChecksum(body []byte) []byte {
	sum := md5.Sum(body)
	out := append(append([]byte{}, kplMagic...), body...)
	return append(out, sum[:]...)
}
