package kinesis

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
)

// API is the part of the Kinesis API the source calls; *kinesis.Client
// implements it, and tests fake it.
type API interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

var _ API = (*kinesis.Client)(nil)

// errorCode is the Kinesis error code of err ("" if it has none).
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// IsThrottled reports whether err says a limit was hit (the shard's read
// throughput, the account's control-plane rate, KMS): the call may be
// repeated after a backoff.
func IsThrottled(err error) bool {
	switch errorCode(err) {
	case "ProvisionedThroughputExceededException", "LimitExceededException",
		"ThrottlingException", "KMSThrottlingException":
		return true
	}
	return false
}

// isExpiredIterator reports a shard iterator older than five minutes.
func isExpiredIterator(err error) bool {
	return errorCode(err) == "ExpiredIteratorException"
}

// isNotFound reports a stream or shard that does not exist.
func isNotFound(err error) bool {
	return errorCode(err) == "ResourceNotFoundException"
}

// jitter returns the n-th backoff (n ≥ 1) between base and max: an
// exponential ceiling with full jitter, never below base/2.
func jitter(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
