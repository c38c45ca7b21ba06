// Package kinesis_test runs the Kinesis example (weir.yaml) as a user
// would, against a kinesalite and a redis-server of the test's own.
package kinesis_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/builtin"
	kinesissrc "github.com/weirhq/weir/sources/kinesis"
)

// TestMain lets this test binary serve the builtin echo handler.
func TestMain(m *testing.M) {
	plugins.ServeBuiltinIfRequested(builtin.Handlers())
	os.Exit(m.Run())
}

func TestExampleRunsAgainstKinesalite(t *testing.T) {
	ep := testenv.Kinesis(t)
	t.Setenv("KINESIS_ENDPOINT", ep)
	t.Setenv("REDIS_ADDR", testenv.Redis(t))
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	cfg, err := config.Load("weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cl, err := kinesissrc.NewClient(ctx, kinesissrc.ClientConfig{Region: "us-east-1", Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("clicks"), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("clicks-dlq"), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if d := cfg.Pipelines[0].DLQ; d == nil || d.Kinesis == nil || d.Kinesis.Stream != "clicks-dlq" {
		t.Fatalf("the example's dlq is not the clicks-dlq stream: %+v", d)
	}
	var entries []types.PutRecordsRequestEntry
	for i := range 100 {
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("user-" + strconv.Itoa(i%7)), Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = cl.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("clicks"), Records: entries})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the stream is still being created
	}
	if err != nil {
		t.Fatal(err)
	}
	h := host.New(cfg, host.Options{Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), AdminAddr: "off"})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	for {
		var n int64
		for _, s := range h.Stats() {
			n += s.Completed
		}
		if n >= 100 {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("%d of 100 records completed", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
