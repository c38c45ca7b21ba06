// Package plugins is the handler protocol: the Go view of a batch and its
// result, the go-plugin handshake and plugin set, the gRPC client and server
// shims, and the host-side process pool. The SDK a handler author imports is
// plugins/sdk.
package plugins

import (
	"context"
	"time"

	"github.com/weirhq/weir/record"
)

// ProtocolVersion is the handler protocol version this host speaks. It is
// the go-plugin handshake's ProtocolVersion.
const ProtocolVersion = 1

// ErrorClass classifies a failure so the host can decide what to do with it
// (retry, dead-letter, count against a breaker). It crosses the plugin
// boundary as the proto enum of the same name.
type ErrorClass int32

const (
	// ClassUnspecified is a failure the handler did not classify.
	ClassUnspecified ErrorClass = 0
	// ClassInvalidInput: the record is not what the handler expects
	// (malformed). Never retried; a record's own bad data.
	ClassInvalidInput ErrorClass = 1
	// ClassTransient: a downstream dependency failed; retrying may succeed.
	ClassTransient ErrorClass = 2
	// ClassHandler: the handler failed on this record (a bug).
	ClassHandler ErrorClass = 3
	// ClassTimeout: the call exceeded its deadline. Host-side only.
	ClassTimeout ErrorClass = 4
	// ClassCrash: the plugin process exited during the call. Host-side only.
	ClassCrash ErrorClass = 5
	// ClassBadReply: the plugin's reply broke the protocol (an index out of
	// range, an output to a sink the pipeline does not declare). Host-side.
	ClassBadReply ErrorClass = 6
)

var classNames = map[ErrorClass]string{
	ClassUnspecified:  "unspecified",
	ClassInvalidInput: "invalid_input",
	ClassTransient:    "transient",
	ClassHandler:      "handler",
	ClassTimeout:      "timeout",
	ClassCrash:        "crash",
	ClassBadReply:     "bad_reply",
}

func (c ErrorClass) String() string {
	if s, ok := classNames[c]; ok {
		return s
	}
	return "unspecified"
}

// Batch is what a handler is given in one call: records of one partition, in
// order.
type Batch struct {
	Pipeline  string
	Stream    string
	Partition string
	// Attempt is 1 on the first delivery of these records, then 2, 3, ...
	Attempt int
	// Deadline is when the host stops waiting for the call.
	Deadline time.Time
	Records  []record.Record
}

// Output is one message a handler emits, attributed to the input record it
// derives from.
type Output struct {
	// Index is the position in Batch.Records of the input record.
	Index int
	// Sink names one of the pipeline's sinks.
	Sink string
	record.Message
}

// Failure says that the record at Index failed.
type Failure struct {
	Index     int
	Message   string
	Retryable bool
	Class     ErrorClass
}

// Result is a handler's answer to a Batch. A record with no Failure
// succeeded (it may have zero or more outputs).
type Result struct {
	Outputs  []Output
	Failures []Failure
	// Handler is the handler (name, version) that produced the result. It
	// does not cross the plugin boundary: the host's dispatcher sets it
	// from the instance's Describe, so that outputs and dead letters name
	// the version that handled them across an upgrade.
	Handler Info
}

// Info describes a handler.
type Info struct {
	Name            string
	Version         string
	ProtocolVersion int
}

// Handler is the Go interface of the handler protocol, implemented by the
// gRPC client (host side) and by handler code behind the SDK (plugin side).
type Handler interface {
	Describe(ctx context.Context) (Info, error)
	// Handle processes one batch. An error fails the whole batch.
	Handle(ctx context.Context, b *Batch) (*Result, error)
}

// RecordBorrower is implemented by a Handler that keeps nothing of a batch
// once its Handle has returned: not the records, nor their keys, values,
// header slices or header values (it copies what it keeps). Where the host
// passed the batch's records in the batch file, a handler that says so is
// given records that point into that file where the host wrote them,
// decoded into storage reused by later batches: no copy, and no garbage.
// What such a handler kept past its return would change under it.
type RecordBorrower interface {
	BorrowsRecords() bool
}
