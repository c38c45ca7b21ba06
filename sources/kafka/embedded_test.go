package kafka

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEmbeddedPortAndAutoCreate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	e := startBroker(t, WithPort(port), WithDefaultPartitions(3))
	if got := e.Addrs(); len(got) != 1 || got[0] != "127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("Addrs() = %v, want 127.0.0.1:%d", got, port)
	}
	// Auto-creation takes both sides: the broker allows it, the client asks.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.AllowAutoTopicCreation(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce(t, cl, &kgo.Record{Topic: "auto", Partition: 2, Value: []byte("x")})
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(context.Background(), "auto")
	if err != nil || len(details["auto"].Partitions) != 3 {
		t.Fatalf("auto-created topic: %+v, %v; want 3 partitions", details["auto"], err)
	}
	e.Close()
	e.Close() // safe twice
}

// The host's exactly_once mode consumes and produces in one transaction
// (GroupTransactSession); the embedded broker must support it, including
// aborts being invisible to read_committed consumers.
func TestEmbeddedTransactions(t *testing.T) {
	e := startBroker(t, WithTopic("in", 2), WithTopic("out", 2))
	produceN(t, newProducer(t, e), "in", []int32{0, 1}, 10, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	sess, err := kgo.NewGroupTransactSession(append(connOpts(e),
		kgo.TransactionalID("weir-test"),
		kgo.ConsumerGroup("eos"),
		kgo.ConsumeTopics("in"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	for round, commit := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < 20 {
			fs := sess.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("round %d poll: %v", round, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				n++
				sess.Produce(ctx, &kgo.Record{Topic: "out", Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
					if err != nil && commit == kgo.TryCommit { // aborting fails what is buffered
						t.Errorf("produce: %v", err)
					}
				})
			})
		}
		committed, err := sess.End(ctx, commit)
		if err != nil || committed != (commit == kgo.TryCommit) {
			t.Fatalf("round %d End(%v) = %v, %v", round, commit, committed, err)
		}
	}

	rc, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ConsumeTopics("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := 0
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		got += len(rc.PollFetches(pctx).Records())
		pcancel()
	}
	if got != 20 {
		t.Fatalf("read_committed sees %d records, want the 20 of the committed transaction only", got)
	}
	offs, err := kadm.NewClient(rc).FetchOffsets(ctx, "eos")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if o, ok := offs.Lookup("in", p); !ok || o.At != 10 {
			t.Errorf("transactional offset commit of in/%d = %+v, want 10", p, o)
		}
	}
}
