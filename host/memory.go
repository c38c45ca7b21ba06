package host

import (
	"math"

	"github.com/weirhq/weir/host/config"
)

// MemoryHeadroom is the memory weir allows the Go runtime beyond the
// pipelines' max_inflight_bytes: the runtime itself, the clients, fetches
// in flight, the handler calls' encodings, and garbage between collections.
// The process's resident set is that plus the executable's pages (about 28
// MiB of them resident) and the runtime's memory outside the heap, so it
// stays near max_inflight_bytes + 64 MiB; `weir loadtest memory` measures
// it (30 MiB gave peaks of 125-141 MiB for a 128 MiB budget, 24 MiB 121-125
// MiB at the same throughput). See MemoryLimit.
const MemoryHeadroom = 24 << 20

// MemoryLimit is the soft memory limit `weir run` gives the Go runtime
// (runtime/debug.SetMemoryLimit) unless GOMEMLIMIT is set: the sum of the
// pipelines' max_inflight_bytes plus MemoryHeadroom. The in-flight budget
// bounds what the host holds (records count with RecordOverhead); without a
// limit, the garbage collector would still let the heap grow to twice what
// is live before collecting, so the process could take twice its budget.
func MemoryLimit(cfg *config.File) int64 {
	limit := int64(MemoryHeadroom)
	for i := range cfg.Pipelines {
		if b := cfg.Pipelines[i].MaxInflightBytes; b < math.MaxInt64-limit {
			limit += b
		} else {
			return math.MaxInt64
		}
	}
	return limit
}

// fetchMaxBytes bounds one Kafka fetch response of a pipeline to a
// hundred-and-twenty-eighth of its in-flight budget (at least 512 KiB, at
// most franz-go's default of 50 MiB). The partitions are paused only once a
// delivery has passed the budget, so what one fetch brings is how far
// memory can overshoot it, and small records cost the budget about four
// times their bytes on the wire (RecordOverhead); the client also holds a
// fetch's records, decompressed, until they are delivered.
func fetchMaxBytes(pc *config.Pipeline) int32 {
	return int32(min(max(pc.MaxInflightBytes/128, 512<<10), 50<<20))
}

// fetchMaxPartitionBytes bounds what one Kafka fetch brings of one
// partition to an eighth of the fetch (at least 64 KiB, at most franz-go's
// default of 1 MiB). A lane pauses its partition once it has a few batches
// waiting and resumes it at half that, and franz-go drops what the fetch it
// has buffered holds of a partition paused before the next poll, fetching
// it again after the resume. With 1 MiB of a partition per fetch, a lane
// resumed for a couple of thousand small records was sent tens of
// thousands, most of them dropped at its next pause: the bench's weir row
// (100-byte records, 8 partitions) decoded 35-45% of its records twice.
// With 64 KiB it decodes 3-5% twice. A record batch larger than this still
// comes whole.
func fetchMaxPartitionBytes(pc *config.Pipeline) int32 {
	return min(max(fetchMaxBytes(pc)/8, 64<<10), 1<<20)
}
