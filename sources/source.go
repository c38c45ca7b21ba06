// Package sources defines the contract between a stream source (Kafka,
// Kinesis) and the host that runs lanes over it. Implementations live in
// sub-packages; a source only knows how to read, commit, pause and close.
package sources

import (
	"context"
	"time"

	"github.com/weirhq/weir/record"
)

// StartKind says where a consumer without a committed position for a
// partition starts reading it. The values are the config file's words.
type StartKind string

const (
	// StartEarliest reads from the oldest retained record (the default;
	// Kinesis: TRIM_HORIZON).
	StartEarliest StartKind = "earliest"
	// StartLatest reads only records produced after the partition is first
	// consumed.
	StartLatest StartKind = "latest"
	// StartTime reads from the first record whose timestamp is at or after
	// Start.Time, or from the end if there is none.
	StartTime StartKind = "time"
)

// Start is where a consumer without a committed position begins. A
// partition with one always resumes there. The zero value is StartEarliest.
type Start struct {
	Kind StartKind
	// Time is required when Kind is StartTime; millisecond precision.
	Time time.Time
}

// Claim is a partition newly assigned to this process.
type Claim struct {
	Partition record.Partition
	// Generation is the fencing token of the claim: the consumer group
	// generation (Kafka) or the lease epoch (Kinesis). A write carrying an
	// older generation than the partition's current one must be refused.
	Generation int64
}

// Lanes is what a source drives. The host implements it. The source calls
// Assign, Revoke, Lost and Deliver from one goroutine (its poll loop), never
// concurrently.
type Lanes interface {
	// Assign starts a lane for each claimed partition. It does not block on
	// record processing.
	Assign(ctx context.Context, claims []Claim)
	// Revoke stops the lanes of the given partitions: they stop taking
	// records, finish (or abandon, past their deadline) their in-flight
	// batches, and commit what completed through Source.Commit. Revoke
	// returns only when that is done; the source then lets the rebalance go
	// on. After Revoke returns, nothing commits those partitions.
	Revoke(ctx context.Context, parts []record.Partition)
	// Lost drops the lanes of partitions this process no longer owns (its
	// session expired). Nothing is committed for them.
	Lost(ctx context.Context, parts []record.Partition)
	// Deliver hands fetched records of one partition, in order, to its lane.
	// It never blocks on processing: backpressure is applied by the host
	// calling Source.Pause. The host owns recs after the call, and gives it
	// to PutRecords once its records are done with: a source builds recs
	// with GetRecords, and must not touch it again.
	Deliver(p record.Partition, recs []record.Record)
}

// BytesCopier is implemented by a Lanes that may copy, during Deliver, the
// keys, values and header values of the records it is given, so that a
// source need not copy them out of its client's memory first. When
// CopiesBytes reports true, a source may deliver records whose byte slices
// are valid only until Deliver returns; the answer does not change over a
// Lanes' life. Header keys (strings) must stay valid.
type BytesCopier interface {
	CopiesBytes() bool
}

// EndNoter is implemented by a Lanes that wants to know when the records
// delivered of a partition reach its end: the last record there was to
// fetch when the source last looked (Kafka: the high watermark). A source
// calls DeliveredToEnd, from the goroutine that calls Deliver, after the
// Deliver of those records. The next Deliver of the partition brings
// records past that end.
type EndNoter interface {
	DeliveredToEnd(p record.Partition)
}

// Source is one consumer of a stream for one pipeline.
type Source interface {
	// Run consumes until ctx is done or a fatal error occurs, calling l as
	// partitions are assigned, revoked and fetched. Before it returns, every
	// assigned partition has been revoked (gracefully, on ctx done) or lost.
	Run(ctx context.Context, l Lanes) error
	// Commit durably records that every record at or below pos (inclusive)
	// in each partition is complete. It must only be called for partitions
	// currently assigned; it is safe for concurrent use with Run.
	Commit(ctx context.Context, positions map[record.Partition]record.Position) error
	// Pause stops fetching the given partitions; records already delivered
	// stay delivered. Safe for concurrent use.
	Pause(parts ...record.Partition)
	// Resume undoes Pause. Safe for concurrent use.
	Resume(parts ...record.Partition)
}

// Offsets is where a partition's log ends and where its consumer group
// stands, as the broker reported them at one moment. Kafka offsets; a
// value of -1 means unknown.
type Offsets struct {
	// End is the offset the next record written to the partition will
	// get (Kafka's high watermark): the partition holds records up to
	// End-1.
	End int64
	// Committed is the offset the group will read next, as last committed
	// (-1: the group has committed nothing for the partition).
	Committed int64
}

// TimeLag is how far behind the tip of its shard a reader is, as the
// stream itself reports it (Kinesis: MillisBehindLatest of the shard's
// latest GetRecords).
type TimeLag struct {
	// Behind is the time between the last record the read returned and
	// the newest record of the shard (0: at the tip).
	Behind time.Duration
	// At is when that read returned. While a shard is paused it is not
	// read, so At stops moving and Behind is as of At.
	At time.Time
}

// TimeLagReporter is an optional interface of a Source whose stream has no
// record counts to report lag with, only time (Kinesis, which does not say
// how many records are behind). The host asks it for the lag of its
// partitions when it measures lag (admin.lag_interval).
type TimeLagReporter interface {
	// TimeLags returns the lag of those of parts the source has read at
	// least once.
	TimeLags(parts []record.Partition) map[record.Partition]TimeLag
}

// OffsetReporter is an optional interface of a Source: one whose stream has
// numbered positions (Kafka) reports, on demand, the end of each partition's
// log and its group's committed offset, so the host can measure lag per
// partition. The host polls it on an interval (admin.lag_interval) rather
// than reading the high watermark off fetches, because a paused partition
// (an open breaker, backpressure) is not fetched, and that is exactly when
// its lag matters. A source without numbered positions (Kinesis) does not
// implement it.
type OffsetReporter interface {
	// Offsets returns the offsets of those of parts the source can see.
	// An error means the broker could not be asked (the source is not
	// connected); it is reported by /readyz.
	Offsets(ctx context.Context, parts []record.Partition) (map[record.Partition]Offsets, error)
}
