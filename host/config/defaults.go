package config

import (
	"runtime"
	"time"
)

// Defaults returns a pipeline holding every default value: the values a
// pipeline gets for the fields its file leaves out. Its Name, Source,
// Handler.Plugin and Sinks have no default. A Kafka source defaults to
// group = the pipeline name and start = earliest.
//
// Every default of the package is set here, in defaultFile and in
// defaultKafkaSource; applyDefaults fills the ones derived from other
// fields.
func Defaults() Pipeline {
	return Pipeline{
		Batch: Batch{
			MaxRecords: 1000,
			MaxBytes:   1 << 20,
			MaxWait:    50 * time.Millisecond,
		},
		Handler: Handler{
			Instances:           DefaultInstances(),
			Timeout:             30 * time.Second,
			MaxConcurrency:      1,
			Watch:               2 * time.Second,
			MTLS:                MTLSAuto,
			MaxOutputBytes:      1 << 20,
			MaxOutputsPerRecord: 1000,
			MaxReplyBytes:       64 << 20,
		},
		Ordering: OrderingPartition,
		Delivery: DeliveryAtLeastOnce,
		Retry: Retry{
			MaxAttempts:    5,
			InitialBackoff: 100 * time.Millisecond,
			MaxBackoff:     10 * time.Second,
			Bisect:         true,
		},
		Breaker: Breaker{
			FailureRatio: 0.5,
			MinRequests:  20,
			OpenFor:      30 * time.Second,
			Interval:     60 * time.Second,
		},
		Idempotency: Idempotency{
			TTL:      24 * time.Hour,
			ClaimTTL: 2 * time.Minute,
		},
		MaxInflightBytes: 64 << 20,
		CommitInterval:   100 * time.Millisecond,
		ShutdownTimeout:  30 * time.Second,
	}
}

// defaultFile is a File before its YAML is decoded onto it.
func defaultFile() File {
	return File{
		Kafka: Kafka{ClientID: "weir", SessionTimeout: 45 * time.Second, HeartbeatInterval: 3 * time.Second,
			FetchMaxWait: 10 * time.Millisecond},
		Redis: Redis{KeyPrefix: "weir:"},
		Admin: Admin{Addr: DefaultAdminAddr, LagInterval: 5 * time.Second},
	}
}

// defaultKafkaSource is a Kafka source before its YAML is decoded onto it.
func defaultKafkaSource() *KafkaSource {
	return &KafkaSource{Start: Start{Kind: StartEarliest}}
}

// defaultKinesisSource is a Kinesis source before its YAML is decoded onto
// it.
func defaultKinesisSource() *KinesisSource {
	return &KinesisSource{
		Start: Start{Kind: StartEarliest}, PollInterval: time.Second, MaxRecordsPerCall: 10000,
		ShardSyncInterval: 30 * time.Second, Lease: KinesisLease{TTL: 10 * time.Second, Heartbeat: 2 * time.Second},
	}
}

// defaultDLQ is a DLQ section before its YAML is decoded onto it.
func defaultDLQ() *DLQ {
	return &DLQ{MaxRatio: 0.5, Window: 1000}
}

// applyDefaults fills the defaults that depend on other fields, once the
// pipeline is decoded. (Decoding starts from Defaults(), so a field the
// file sets explicitly, even to zero or false, is kept.)
func (p *Pipeline) applyDefaults() {
	if k := p.Source.Kafka; k != nil && k.Group == "" {
		k.Group = p.Name
	}
}

// DefaultInstances is the default of handler.instances: the number of CPUs,
// at least 2. Batches of cheap handlers are bound by the handler processes'
// CPU (decoding a batch, the call itself), so one process per CPU keeps
// them all busy.
func DefaultInstances() int { return max(2, runtime.NumCPU()) }

// MinMemoryLimit is the smallest handler.memory_limit: below it a plugin
// process cannot start its runtime and gRPC server.
const MinMemoryLimit = 32 << 20
