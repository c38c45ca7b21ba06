package dlq

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/record"
)

// DefaultSamples is how many sample records a Report holds by default.
const DefaultSamples = 5

// previewBytes is how much of a key, value or header value a sample shows.
const previewBytes = 160

// InspectConfig configures an Inspector.
type InspectConfig struct {
	// Brokers are the seed brokers; required.
	Brokers []string
	// Client holds extra connection options (TLS, SASL, client id, ...),
	// applied after the inspector's own, so they may override them.
	Client []kgo.Opt
	// Topic is the DLQ topic; required.
	Topic string
	// Samples is how many sample records the report shows: the first
	// record of each pipeline and error class, then the most recent ones.
	// 0 means DefaultSamples; negative means none.
	Samples int
	// Logger receives the Kafka client's warnings. The zero value logs
	// nothing.
	Logger zerolog.Logger
}

// Inspector reads a whole DLQ topic and summarizes it. It reads without a
// consumer group and commits nothing, so it can run at any time, beside a
// replay or a pipeline writing the topic. It is safe for concurrent use;
// each Inspect call has its own clients.
type Inspector struct {
	cfg InspectConfig
}

// NewInspector validates cfg and applies its defaults. It connects to
// nothing.
func NewInspector(cfg InspectConfig) (*Inspector, error) {
	if err := validateConn("dlq inspect", cfg.Brokers, cfg.Topic); err != nil {
		return nil, err
	}
	switch {
	case cfg.Samples == 0:
		cfg.Samples = DefaultSamples
	case cfg.Samples < 0:
		cfg.Samples = 0
	}
	return &Inspector{cfg: cfg}, nil
}

// Report is what Inspect found in a DLQ topic. Counts are over the records
// read: every record from each partition's start to its last stable offset
// when Inspect began.
type Report struct {
	// Topic is the DLQ topic; Stream the DLQ stream (a Kinesis DLQ). One
	// of them is set.
	Topic  string `json:"topic,omitempty"`
	Stream string `json:"stream,omitempty"`
	// Records is every record read; Envelopes + Invalid.
	Records   int64 `json:"records"`
	Envelopes int64 `json:"envelopes"`
	// Invalid counts records that are not weir envelopes (Parse failed).
	Invalid int64 `json:"invalid"`
	// InvalidRecords are the first MaxListed of them, with the reason.
	InvalidRecords []RecordRef `json:"invalid_records,omitempty"`
	// ByPipeline, BySource ("stream/partition") and ByErrorClass count the
	// envelopes; ByReplayCount counts them by weir.replay-count (how many
	// times a record was replayed before it failed this time).
	ByPipeline    map[string]int64 `json:"by_pipeline"`
	BySource      map[string]int64 `json:"by_source"`
	ByErrorClass  map[string]int64 `json:"by_error_class"`
	ByReplayCount map[string]int64 `json:"by_replay_count"`
	// FirstFailure is the earliest weir.failure.first, LastFailure the
	// latest weir.failure.last; nil when no envelope has one.
	FirstFailure *time.Time `json:"first_failure,omitempty"`
	LastFailure  *time.Time `json:"last_failure,omitempty"`
	Samples      []Sample   `json:"samples"`
	// Partitions are the offsets read, per partition (a Kafka DLQ).
	Partitions []PartitionSpan `json:"partitions,omitempty"`
	// Shards are the sequence numbers read, per shard (a Kinesis DLQ).
	Shards []ShardSpan `json:"shards,omitempty"`
}

// RecordRef points at one record of the DLQ, with why it is listed: a
// record of a Kafka DLQ by Partition and Offset, one of a Kinesis DLQ by
// Shard and Sequence (JSON then shows those, not partition and offset).
type RecordRef struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Shard     string `json:"shard,omitempty"`
	Sequence  string `json:"sequence,omitempty"`
	// Key is a preview of the record's key; nil for a null key.
	Key *string `json:"key"`
	// Destination is where a replay sends (or would send) it.
	Destination string `json:"destination,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Sample is one DLQ record shown in full: its key, a preview of its value
// and every header, weir.* included. Bytes that are not UTF-8 are shown as
// hex ("0x..."); long values are cut, ending in "…".
type Sample struct {
	Partition  int32          `json:"partition"`
	Offset     int64          `json:"offset"`
	Shard      string         `json:"shard,omitempty"`
	Sequence   string         `json:"sequence,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
	Key        *string        `json:"key"`
	Value      string         `json:"value"`
	ValueBytes int            `json:"value_bytes"`
	Headers    []SampleHeader `json:"headers"`
}

// SampleHeader is one header of a Sample.
type SampleHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Inspect reads the topic from the start of each partition to its last
// stable offset at the time of the call (read_committed; records written
// meanwhile are left out) and returns the report. A record that is not an
// envelope is counted in Invalid, never an error. It fails if the topic
// does not exist or cannot be read, or when ctx ends.
func (in *Inspector) Inspect(ctx context.Context) (*Report, error) {
	cl, err := kgo.NewClient(baseOpts(in.cfg.Brokers, in.cfg.Logger, in.cfg.Client)...)
	if err != nil {
		return nil, fmt.Errorf("dlq inspect: create client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	spans, err := topicSpans(ctx, adm, in.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("dlq inspect: %w", err)
	}
	rep := &Report{
		Topic:      in.cfg.Topic,
		ByPipeline: map[string]int64{}, BySource: map[string]int64{},
		ByErrorClass: map[string]int64{}, ByReplayCount: map[string]int64{},
		Samples: []Sample{},
	}
	for _, s := range spans {
		rep.Partitions = append(rep.Partitions, s)
	}
	sort.Slice(rep.Partitions, func(i, j int) bool { return rep.Partitions[i].Partition < rep.Partitions[j].Partition })

	r := newReader(adm, in.cfg.Topic, spans, false, in.cfg.Logger)
	if r.pending() {
		rcl, err := kgo.NewClient(append(baseOpts(in.cfg.Brokers, in.cfg.Logger, in.cfg.Client),
			kgo.ConsumePartitions(r.startOffsets()))...)
		if err != nil {
			return nil, fmt.Errorf("dlq inspect: create client: %w", err)
		}
		defer rcl.Close()
		r.cl = rcl
	}
	samples := newSampler(in.cfg.Samples)
	for !r.finished() {
		recs, err := r.poll(ctx, 1000)
		if err != nil {
			return nil, fmt.Errorf("dlq inspect: %w", err)
		}
		for _, rec := range recs {
			if rec.Attrs.IsControl() {
				continue
			}
			rep.add(kafkaRaw(rec), samples)
		}
	}
	rep.Samples = samples.result()
	return rep, nil
}

// rawRecord is one record read from a DLQ, Kafka or Kinesis, before its
// envelope is parsed.
type rawRecord struct {
	ref        RecordRef // where it is: partition and offset, or shard and sequence
	key, value []byte
	headers    []record.Header
	ts         time.Time
	// err is set when the record could not be decoded at all (a Kinesis
	// record that is not a weir envelope); key then is its partition key.
	err error
}

func kafkaRaw(rec *kgo.Record) rawRecord {
	return rawRecord{ref: RecordRef{Partition: rec.Partition, Offset: rec.Offset}, key: rec.Key, value: rec.Value,
		headers: headers(rec.Headers), ts: rec.Timestamp}
}

// parse reads the record's envelope.
func (r *rawRecord) parse() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	return Parse(r.key, r.value, r.headers)
}

// add counts one record.
func (rep *Report) add(rec rawRecord, s *sampler) {
	rep.Records++
	e, err := rec.parse()
	if err != nil {
		rep.Invalid++
		if len(rep.InvalidRecords) < MaxListed {
			ref := rec.ref
			ref.Key, ref.Reason = previewKey(rec.key), err.Error()
			rep.InvalidRecords = append(rep.InvalidRecords, ref)
		}
		return
	}
	rep.Envelopes++
	rep.ByPipeline[e.Origin.Pipeline]++
	rep.BySource[e.Source.String()]++
	rep.ByErrorClass[e.Failure.Class]++
	rep.ByReplayCount[fmt.Sprint(e.ReplayCount)]++
	first, last := e.Failure.FirstFailure, e.Failure.LastFailure
	if first.IsZero() {
		first = last
	}
	if last.IsZero() {
		last = first
	}
	if !first.IsZero() && (rep.FirstFailure == nil || first.Before(*rep.FirstFailure)) {
		rep.FirstFailure = &first
	}
	if !last.IsZero() && (rep.LastFailure == nil || last.After(*rep.LastFailure)) {
		rep.LastFailure = &last
	}
	s.offer(e.Origin.Pipeline+"\x00"+e.Failure.Class, rec)
}

// sampler keeps the first record of each kind (pipeline and class) and the
// most recent records, n of each at most.
type sampler struct {
	n      int
	kinds  map[string]bool
	first  []rawRecord
	recent []rawRecord // a ring of the last n
	seen   int
}

func newSampler(n int) *sampler { return &sampler{n: n, kinds: map[string]bool{}} }

func (s *sampler) offer(kind string, rec rawRecord) {
	if s.n == 0 {
		return
	}
	if !s.kinds[kind] && len(s.first) < s.n {
		s.kinds[kind] = true
		s.first = append(s.first, rec)
		return
	}
	if len(s.recent) < s.n {
		s.recent = append(s.recent, rec)
	} else {
		s.recent[s.seen%s.n] = rec
	}
	s.seen++
}

// result returns the first of each kind, then the most recent, n at most.
func (s *sampler) result() []Sample {
	out := []Sample{}
	if s.n == 0 {
		return out
	}
	add := func(rec rawRecord) {
		if len(out) < s.n {
			out = append(out, sampleOf(rec))
		}
	}
	for _, rec := range s.first {
		add(rec)
	}
	// The ring's oldest entry is at seen%n once it is full.
	start := 0
	if len(s.recent) == s.n {
		start = s.seen % s.n
	}
	// Most recent first.
	for i := len(s.recent) - 1; i >= 0; i-- {
		add(s.recent[(start+i)%len(s.recent)])
	}
	return out
}

func sampleOf(rec rawRecord) Sample {
	s := Sample{Partition: rec.ref.Partition, Offset: rec.ref.Offset, Shard: rec.ref.Shard, Sequence: rec.ref.Sequence,
		Timestamp: rec.ts.UTC(), Key: previewKey(rec.key), Value: preview(rec.value), ValueBytes: len(rec.value),
		Headers: make([]SampleHeader, len(rec.headers))}
	for i, h := range rec.headers {
		s.Headers[i] = SampleHeader{Key: h.Key, Value: preview(h.Value)}
	}
	return s
}

func previewKey(k []byte) *string {
	if k == nil {
		return nil
	}
	s := preview(k)
	return &s
}

// preview shows b as text when it is UTF-8, else as hex, cut to about
// previewBytes.
func preview(b []byte) string {
	if utf8.Valid(b) {
		if len(b) <= previewBytes {
			return string(b)
		}
		cut := previewBytes
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return string(b[:cut]) + "…"
	}
	if len(b) <= previewBytes/2 {
		return "0x" + hex.EncodeToString(b)
	}
	return "0x" + hex.EncodeToString(b[:previewBytes/2]) + "…"
}

// WriteText writes the report as tables, for a terminal.
func (rep *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	what, name := "topic", rep.Topic
	if rep.Stream != "" {
		what, name = "stream", rep.Stream
	}
	fmt.Fprintf(tw, "DLQ %s %s: %d records (%d envelopes, %d not envelopes)\n", what, name, rep.Records, rep.Envelopes, rep.Invalid)
	if rep.FirstFailure != nil {
		fmt.Fprintf(tw, "failures from %s to %s\n", rep.FirstFailure.Format(time.RFC3339), rep.LastFailure.Format(time.RFC3339))
	}
	table := func(title string, m map[string]int64) {
		if len(m) == 0 {
			return
		}
		fmt.Fprintf(tw, "\n%s\tRECORDS\n", title)
		for _, kv := range sortedCounts(m) {
			fmt.Fprintf(tw, "%s\t%d\n", orNone(kv.k), kv.n)
		}
	}
	table("PIPELINE", rep.ByPipeline)
	table("SOURCE", rep.BySource)
	table("ERROR CLASS", rep.ByErrorClass)
	if len(rep.ByReplayCount) > 1 || rep.ByReplayCount["0"] == 0 {
		table("REPLAYED BEFORE", rep.ByReplayCount)
	}
	if rep.Invalid > 0 {
		fmt.Fprintf(tw, "\nNOT ENVELOPES\tREASON\n")
		for _, r := range rep.InvalidRecords {
			fmt.Fprintf(tw, "%s\t%s\n", r.where(name), r.Reason)
		}
		if n := rep.Invalid - int64(len(rep.InvalidRecords)); n > 0 {
			fmt.Fprintf(tw, "... and %d more\t\n", n)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range rep.Samples {
		key := "null"
		if s.Key != nil {
			key = fmt.Sprintf("%q", *s.Key)
		}
		ref := RecordRef{Partition: s.Partition, Offset: s.Offset, Shard: s.Shard, Sequence: s.Sequence}
		fmt.Fprintf(w, "\nsample %s  key %s  %s\n", ref.where(name), key, s.Timestamp.Format(time.RFC3339))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  (value, %d bytes)\t%s\n", s.ValueBytes, s.Value)
		for _, h := range s.Headers {
			fmt.Fprintf(tw, "  %s\t%s\n", h.Key, h.Value)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// where names the record in dlq (the DLQ topic or stream):
// "dlq/partition@offset" or "dlq/shard@sequence".
func (r RecordRef) where(dlq string) string {
	if r.Shard != "" {
		return dlq + "/" + r.Shard + "@" + r.Sequence
	}
	return fmt.Sprintf("%s/%d@%d", dlq, r.Partition, r.Offset)
}

type count struct {
	k string
	n int64
}

// sortedCounts orders m by count, largest first, then by key.
func sortedCounts(m map[string]int64) []count {
	out := make([]count, 0, len(m))
	for k, n := range m {
		out = append(out, count{k, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].k < out[j].k
	})
	return out
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(none)"
	}
	return s
}

// MarshalJSON leaves out partition and offset for a record of a Kinesis
// DLQ (Shard set), which has none.
func (r RecordRef) MarshalJSON() ([]byte, error) {
	type plain RecordRef
	if r.Shard == "" {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		Shard       string  `json:"shard"`
		Sequence    string  `json:"sequence"`
		Key         *string `json:"key"`
		Destination string  `json:"destination,omitempty"`
		Reason      string  `json:"reason,omitempty"`
	}{r.Shard, r.Sequence, r.Key, r.Destination, r.Reason})
}

// MarshalJSON leaves out partition and offset for a record of a Kinesis
// DLQ (Shard set), which has none.
func (s Sample) MarshalJSON() ([]byte, error) {
	type plain Sample
	if s.Shard == "" {
		return json.Marshal(plain(s))
	}
	return json.Marshal(struct {
		Shard      string         `json:"shard"`
		Sequence   string         `json:"sequence"`
		Timestamp  time.Time      `json:"timestamp"`
		Key        *string        `json:"key"`
		Value      string         `json:"value"`
		ValueBytes int            `json:"value_bytes"`
		Headers    []SampleHeader `json:"headers"`
	}{s.Shard, s.Sequence, s.Timestamp, s.Key, s.Value, s.ValueBytes, s.Headers})
}
