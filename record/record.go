// Package record holds the small types shared by sources, sinks, plugins and
// the host: a record read from a stream, where it came from, and a message to
// be written to a sink. It depends on nothing else in weir.
package record

import (
	"strconv"
	"time"
)

// Header is one record header. Kafka allows repeated keys, so headers are a
// slice, not a map, and their order is kept.
type Header struct {
	Key   string
	Value []byte
}

// Partition identifies one ordered unit of a stream: a Kafka topic partition
// or a Kinesis shard. It is comparable and used as a map key.
type Partition struct {
	// Stream is the Kafka topic or Kinesis stream name.
	Stream string
	// ID is the Kafka partition number in decimal, or the Kinesis shard id.
	ID string
}

// KafkaPartition returns the Partition of a Kafka topic partition.
func KafkaPartition(topic string, partition int32) Partition {
	return Partition{Stream: topic, ID: strconv.FormatInt(int64(partition), 10)}
}

// KafkaID returns the partition number of a Kafka partition. It returns -1 if
// ID is not a decimal number.
func (p Partition) KafkaID() int32 {
	n, err := strconv.ParseInt(p.ID, 10, 32)
	if err != nil {
		return -1
	}
	return int32(n)
}

func (p Partition) String() string { return p.Stream + "/" + p.ID }

// Position is where a record sits in its partition: a Kafka offset, or a
// Kinesis sequence number and sub-sequence number.
type Position struct {
	// Offset is the Kafka offset of the record. For Kinesis (Seq set) it
	// is the sub-sequence number: the index of a user record within the
	// KPL aggregate at Seq, 0 for a plain record. (Seq, Offset) orders the
	// records of a shard.
	Offset int64
	// Seq is the Kinesis sequence number of the record; empty for Kafka.
	Seq string
}

// String is the offset (Kafka), the sequence number (Kinesis), or
// "SEQ/SUB" for a user record of a KPL aggregate past its first.
func (p Position) String() string {
	if p.Seq != "" {
		if p.Offset != 0 {
			return p.Seq + "/" + strconv.FormatInt(p.Offset, 10)
		}
		return p.Seq
	}
	return strconv.FormatInt(p.Offset, 10)
}

// Record is one record read from a source.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
	Partition Partition
	Position  Position
}

// Size is the number of bytes the record holds in memory that count against
// a pipeline's in-flight budget: key, value and headers.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Message is one record to be written to a sink.
type Message struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}
