package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

func startBroker(t *testing.T, opts ...kafkasrc.EmbeddedOption) *kafkasrc.Embedded {
	t.Helper()
	e, err := kafkasrc.StartEmbedded(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func newSink(t *testing.T, e *kafkasrc.Embedded, topic string, opts ...kgo.Opt) *Sink {
	t.Helper()
	s, err := New(Config{Client: append([]kgo.Opt{kgo.SeedBrokers(e.Addrs()...)}, opts...), Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// readAll consumes n records of topic from the start.
func readAll(t *testing.T, e *kafkasrc.Embedded, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading back %s: %v (have %d of %d)", topic, err, len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestWriteKeepsHeadersTimestampsAndOrderPerKey(t *testing.T) {
	const topic, n = "out", 500
	e := startBroker(t, kafkasrc.WithTopic(topic, 4))
	s := newSink(t, e, topic)

	ts := time.UnixMilli(1_700_000_000_000)
	msgs := make([]record.Message, n)
	for i := range msgs {
		msgs[i] = record.Message{
			Key:       []byte("k" + strconv.Itoa(i%5)),
			Value:     []byte(strconv.Itoa(i)),
			Headers:   []record.Header{{Key: "seq", Value: []byte(strconv.Itoa(i))}, {Key: "seq", Value: []byte("again")}},
			Timestamp: ts.Add(time.Duration(i) * time.Millisecond),
		}
	}
	if err := s.Write(context.Background(), msgs); err != nil {
		t.Fatalf("Write: %v", err)
	}

	last := map[string]int{}
	partOf := map[string]int32{}
	for _, r := range readAll(t, e, topic, n) {
		i, _ := strconv.Atoi(string(r.Value))
		k := string(r.Key)
		if prev, ok := last[k]; ok && i <= prev {
			t.Errorf("key %s: message %d read after %d", k, i, prev)
		}
		last[k] = i
		if p, ok := partOf[k]; ok && p != r.Partition {
			t.Errorf("key %s in partitions %d and %d", k, p, r.Partition)
		}
		partOf[k] = r.Partition
		if len(r.Headers) != 2 || r.Headers[0].Key != "seq" || string(r.Headers[0].Value) != string(r.Value) || string(r.Headers[1].Value) != "again" {
			t.Errorf("message %d headers %v", i, r.Headers)
		}
		if !r.Timestamp.Equal(msgs[i].Timestamp) {
			t.Errorf("message %d timestamp %v, want %v", i, r.Timestamp, msgs[i].Timestamp)
		}
	}
	if len(last) != 5 {
		t.Errorf("read keys %v, want 5", last)
	}
}

func TestWriteErrorPerMessage(t *testing.T) {
	cases := []struct {
		name    string
		broker  []kafkasrc.EmbeddedOption
		topic   string
		msgs    []record.Message
		failed  []bool
		wantErr error
	}{
		{
			name:   "record too large fails alone",
			broker: []kafkasrc.EmbeddedOption{kafkasrc.WithTopic("t", 1)},
			topic:  "t",
			msgs: []record.Message{
				{Key: []byte("a"), Value: []byte("small")},
				{Key: []byte("a"), Value: make([]byte, 2<<20)},
				{Key: []byte("a"), Value: []byte("small too")},
			},
			failed:  []bool{false, true, false},
			wantErr: kerr.MessageTooLarge,
		},
		{
			name:    "unknown topic without auto-creation fails every message",
			broker:  []kafkasrc.EmbeddedOption{kafkasrc.WithoutAutoCreateTopics()},
			topic:   "missing",
			msgs:    []record.Message{{Value: []byte("1")}, {Value: []byte("2")}},
			failed:  []bool{true, true},
			wantErr: kerr.UnknownTopicOrPartition,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := startBroker(t, c.broker...)
			s := newSink(t, e, c.topic, kgo.UnknownTopicRetries(1), kgo.MetadataMinAge(10*time.Millisecond))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.Write(ctx, c.msgs)
			var we *sinks.WriteError
			if !errors.As(err, &we) {
				t.Fatalf("Write = %v, want a *sinks.WriteError", err)
			}
			if got := sinks.Failed(err, len(c.msgs)); fmt.Sprint(got) != fmt.Sprint(c.failed) {
				t.Fatalf("failed = %v, want %v (%v)", got, c.failed, err)
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Write = %v, want it to wrap %v", err, c.wantErr)
			}
		})
	}
}

func TestSharedClientAndClose(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("a", 1), kafkasrc.WithTopic("b", 1))
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	a, err := NewWithClient(cl, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewWithClient(cl, "b")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Write(ctx, []record.Message{{Value: []byte("to a")}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := a.Write(ctx, []record.Message{{Value: []byte("late")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
	if err := b.Write(ctx, []record.Message{{Value: []byte("to b")}}); err != nil {
		t.Fatalf("the shared client was closed with a: %v", err)
	}
	if r := readAll(t, e, "b", 1); string(r[0].Value) != "to b" {
		t.Fatalf("read %q from b", r[0].Value)
	}
}

// Close flushes: a write waiting out a long linger completes at once.
func TestCloseFlushes(t *testing.T) {
	e := startBroker(t, kafkasrc.WithTopic("t", 1))
	s := newSink(t, e, "t", kgo.ProducerLinger(time.Minute))
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), []record.Message{{Value: []byte("lingering")}}) }()
	for s.cl.BufferedProduceRecords() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if r := readAll(t, e, "t", 1); string(r[0].Value) != "lingering" {
		t.Fatalf("read %q", r[0].Value)
	}
}
