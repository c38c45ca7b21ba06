package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/weirhq/weir/dlq"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/record"
	kinesissrc "github.com/weirhq/weir/sources/kinesis"
)

// `weir dlq inspect --stream` and `weir dlq replay --stream` against
// kinesalite, with the stream's endpoint and the Redis for the replay's
// checkpoints taken from the config file: inspect counts the envelopes
// and the record that is not one, a dry run changes nothing, the replay
// writes each dead letter back to its source stream once, and a second
// replay reads nothing.
func TestDLQKinesisCommands(t *testing.T) {
	endpoint, redisAddr := testenv.Kinesis(t), testenv.Redis(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kinesissrc.NewClient(ctx, kinesissrc.ClientConfig{Region: "us-east-1", Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	src, dlqStream := "src-"+suffix, "src-"+suffix+"-dlq"
	for _, s := range []string{src, dlqStream} {
		if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(s), ShardCount: aws.Int32(1)}); err != nil {
			t.Fatal(err)
		}
		for {
			out, err := cl.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(s)})
			if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("stream %s not active", s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	now := time.Now().UTC()
	var entries []types.PutRecordsRequestEntry
	for i := range 6 {
		class := "invalid_input"
		if i%3 == 2 {
			class = "timeout"
		}
		m := dlq.Envelope(&record.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i)), Timestamp: now,
			Partition: record.Partition{Stream: src, ID: "shardId-000000000000"}, Position: record.Position{Seq: "4959" + strconv.Itoa(i)}},
			dlq.Failure{Message: "boom", Class: class, Attempts: 1, FirstFailure: now, LastFailure: now}, dlq.Origin{Pipeline: "clicks"})
		dl := dlq.KinesisDeadLetter(m)
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(string(dl.Key)), Data: dl.Value})
	}
	entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("x"), Data: []byte("not an envelope")})
	if out, err := cl.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(dlqStream), Records: entries}); err != nil || aws.ToInt32(out.FailedRecordCount) > 0 {
		t.Fatalf("put: %v", err)
	}
	cfgPath := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`version: 1
redis: { addr: %q, key_prefix: "t-%s:" }
pipelines:
  - name: clicks
    source: { kinesis: { stream: %s, endpoint: %q, region: us-east-1 } }
    handler: { plugin: "builtin:echo" }
    sinks: { out: { stdout: {} } }
    dlq: { kinesis: { stream: %s, endpoint: %q, region: us-east-1 } }
`, redisAddr, suffix, src, endpoint, dlqStream, endpoint)), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := weir(t, "dlq", "inspect", "-c", cfgPath, "--stream", dlqStream)
	if err != nil || !strings.Contains(out, "DLQ stream "+dlqStream+": 7 records (6 envelopes, 1 not envelopes)") ||
		!strings.Contains(out, "sample "+dlqStream+"/shardId-000000000000@") || !strings.Contains(out, "does not start with WDLQ") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	t.Logf("weir dlq inspect --stream:\n%s", out)
	out, err = weir(t, "dlq", "inspect", "-c", cfgPath, "--stream", dlqStream, "--json")
	var rep dlq.Report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Stream != dlqStream || rep.ByErrorClass["timeout"] != 2 ||
		len(rep.Shards) != 1 || rep.Shards[0].Records != 7 || len(rep.InvalidRecords) != 1 || rep.InvalidRecords[0].Shard == "" ||
		strings.Contains(out, `"offset"`) {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}

	replay := []string{"dlq", "replay", "-c", cfgPath, "--stream", dlqStream}
	out, err = weir(t, append(replay, "--dry-run")...)
	if err != nil || !regexp.MustCompile(`would replay +6\n`).MatchString(out) || !strings.Contains(out, "to kinesis:"+src) {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = weir(t, append(replay, "--json")...)
	var sum dlq.ReplaySummary
	if err != nil || json.Unmarshal([]byte(out), &sum) != nil || sum.Replayed != 6 || sum.Invalid != 1 || sum.ByDestination["kinesis:"+src] != 6 ||
		sum.Group != "weir-replay."+dlqStream {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(src), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 6 {
		t.Fatalf("%d records back in %s, want 6", len(res.Records), src)
	}
	for i, r := range res.Records {
		if string(r.Data) != strconv.Itoa(i) || aws.ToString(r.PartitionKey) != "k"+strconv.Itoa(i) {
			t.Errorf("record %d back in the source: key %s value %q", i, aws.ToString(r.PartitionKey), r.Data)
		}
	}
	out, err = weir(t, replay...)
	if err != nil || !regexp.MustCompile(`read +0\n`).MatchString(out) {
		t.Fatalf("second replay: %v\n%s", err, out)
	}
	t.Logf("second weir dlq replay --stream:\n%s", out)
}
