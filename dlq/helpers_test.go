package dlq

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/loadtest"
	"github.com/weirhq/weir/record"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// t0 is when the test failures happened; failure i is t0 + i minutes.
var t0 = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

func startBroker(t *testing.T, opts ...kafkasrc.EmbeddedOption) *kafkasrc.Embedded {
	t.Helper()
	e, err := kafkasrc.StartEmbedded(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func newClient(t *testing.T, e *kafkasrc.Embedded, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.Addrs()...), kgo.ProducerLinger(time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// failed describes one record that failed for good, as the host would
// dead-letter it.
type failed struct {
	pipeline, class string
	stream          string
	partition       int32
	offset          int64
	key, value      string
	headers         []record.Header
	minute          int // the last failure is t0 + minute
}

// envelope is f wrapped by Envelope, as a kgo record for topic.
func (f failed) envelope(topic string) *kgo.Record {
	var key []byte
	if f.key != "" {
		key = []byte(f.key)
	}
	r := &record.Record{
		Key: key, Value: []byte(f.value), Headers: f.headers,
		Timestamp: t0.Add(-time.Hour).Add(time.Duration(f.offset) * time.Millisecond),
		Partition: record.KafkaPartition(f.stream, f.partition), Position: record.Position{Offset: f.offset},
	}
	last := t0.Add(time.Duration(f.minute) * time.Minute)
	m := Envelope(r, Failure{Message: "bad " + f.value, Class: f.class, Attempts: 1, FirstFailure: last.Add(-time.Second), LastFailure: last},
		Origin{Pipeline: f.pipeline, HandlerName: "h", HandlerVersion: "1", HostID: "host-1"})
	out := &kgo.Record{Topic: topic, Key: m.Key, Value: m.Value, Timestamp: m.Timestamp}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return out
}

// produce writes recs synchronously, each to its Topic and Partition (when
// the client uses a manual partitioner) or by key.
func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// produceFailed dead-letters fs into topic, on DLQ partition i%parts.
func produceFailed(t *testing.T, e *kafkasrc.Embedded, topic string, parts int32, fs ...failed) {
	t.Helper()
	cl := newClient(t, e, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i, f := range fs {
		r := f.envelope(topic)
		r.Partition = int32(i) % parts
		produce(t, cl, r)
	}
}

// readTopic returns every record of topic, from the start to the end
// offsets of the moment.
func readTopic(t *testing.T, e *kafkasrc.Embedded, topic string) []*kgo.Record {
	t.Helper()
	adm := kadm.NewClient(newClient(t, e))
	n, err := loadtest.Count(testCtx(t), adm, topic)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return nil
	}
	cl := newClient(t, e, kgo.ConsumeTopics(topic), kgo.FetchMaxWait(100*time.Millisecond))
	ctx := testCtx(t)
	var out []*kgo.Record
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading back %s: %v (have %d of %d)", topic, err, len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// committed returns group's committed offsets on topic.
func committed(t *testing.T, e *kafkasrc.Embedded, group, topic string) map[int32]int64 {
	t.Helper()
	c, err := committedOffsets(testCtx(t), kadm.NewClient(newClient(t, e)), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func keys(recs []*kgo.Record) map[string]bool {
	out := map[string]bool{}
	for _, r := range recs {
		out[string(r.Key)] = true
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
