package invoke

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

// Handler is what Run needs of a handler: a plugins.Pool.
type Handler interface {
	Handle(ctx context.Context, b *plugins.Batch) (*plugins.Result, error)
}

// Options configure Run.
type Options struct {
	// Pipeline is the pipeline name the batches carry. Default "invoke".
	Pipeline string
	// MaxRecords and MaxBytes close a batch, as the pipeline's batch
	// section does (max_wait has no meaning here: the input is all there).
	// Defaults 500 and 1MiB, the pipeline defaults.
	MaxRecords int
	MaxBytes   int64
	// Sinks are the sink names outputs may use; an output to another sink
	// fails its record (class bad_reply), as in a pipeline. nil: any.
	Sinks []string
	// Bisect splits a batch that fails as a whole (an error, a crash, a
	// timeout) until the records at fault are isolated, as a pipeline with
	// retry.bisect does, so the report names them. Without it every record
	// of such a batch is reported failed.
	Bisect bool
}

// Defaults of Options.
const (
	DefaultPipeline   = "invoke"
	DefaultMaxRecords = 500
	DefaultMaxBytes   = 1 << 20
)

// Output is one handler output in a report.
type Output struct {
	Sink string `json:"sink"`
	Line
}

// Failure is a record's failure in a report.
type Failure struct {
	Class     string `json:"class"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// Batch is true when the whole batch (or the bisected part of it
	// holding this record) failed, rather than the handler failing this
	// record alone.
	Batch bool `json:"batch,omitempty"`
}

// Result is what happened to one input record.
type Result struct {
	// Line is the input line of the record.
	Line      int    `json:"line"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key,omitempty"`
	// Batch numbers the handler call that settled the record, from 1.
	Batch   int      `json:"batch"`
	OK      bool     `json:"ok"`
	Outputs []Output `json:"outputs,omitempty"`
	Failure *Failure `json:"failure,omitempty"`
}

// Summary counts a report.
type Summary struct {
	Records  int           `json:"records"`
	OK       int           `json:"ok"`
	Failed   int           `json:"failed"`
	Outputs  int           `json:"outputs"`
	Batches  int           `json:"batches"`
	Duration time.Duration `json:"duration_ns"`
}

// HandlerInfo names the handler in a report, as it described itself.
type HandlerInfo struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	ProtocolVersion int    `json:"protocol_version"`
}

// Report is the outcome of Run, in input order.
type Report struct {
	Handler HandlerInfo `json:"handler"`
	Records []Result    `json:"records"`
	Summary Summary     `json:"summary"`
}

func (o *Options) applyDefaults() {
	if o.Pipeline == "" {
		o.Pipeline = DefaultPipeline
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
}

// Run sends inputs to h: per partition, in input order, in batches closed
// at MaxRecords or MaxBytes. It returns a report of every record; an error
// only if ctx ended first. Whether records failed is in the report.
func Run(ctx context.Context, h Handler, info plugins.Info, inputs []Input, opts Options) (*Report, error) {
	opts.applyDefaults()
	start := time.Now()
	rep := &Report{Handler: HandlerInfo(info), Records: make([]Result, len(inputs))}
	// Partitions in order of first appearance; each holds input indexes.
	var order []record.Partition
	byPart := map[record.Partition][]int{}
	for i, in := range inputs {
		p := in.Partition
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], i)
		rep.Records[i] = Result{Line: in.Line, Partition: p.KafkaID(), Offset: in.Position.Offset, Key: quoteKey(in.Key)}
	}
	r := &runner{h: h, opts: opts, inputs: inputs, rep: rep}
	if opts.Sinks != nil {
		r.sinks = make(map[string]bool, len(opts.Sinks))
		for _, s := range opts.Sinks {
			r.sinks[s] = true
		}
	}
	for _, p := range order {
		idx := byPart[p]
		for len(idx) > 0 {
			n, size := 0, int64(0)
			for n < len(idx) && n < opts.MaxRecords {
				sz := int64(inputs[idx[n]].Size())
				if n > 0 && size+sz > opts.MaxBytes {
					break
				}
				size += sz
				n++
			}
			if err := r.batch(ctx, p, idx[:n]); err != nil {
				return nil, err
			}
			idx = idx[n:]
		}
	}
	for _, res := range rep.Records {
		rep.Summary.Records++
		rep.Summary.Outputs += len(res.Outputs)
		if res.OK {
			rep.Summary.OK++
		} else {
			rep.Summary.Failed++
		}
	}
	rep.Summary.Batches = r.calls
	rep.Summary.Duration = time.Since(start)
	return rep, nil
}

type runner struct {
	h      Handler
	opts   Options
	inputs []Input
	rep    *Report
	sinks  map[string]bool
	calls  int
}

// batch calls the handler on the inputs at idx (one partition, in order)
// and records the outcome of each; a batch failing as a whole is bisected
// when Options.Bisect is set.
func (r *runner) batch(ctx context.Context, p record.Partition, idx []int) error {
	recs := make([]record.Record, len(idx))
	for i, j := range idx {
		recs[i] = r.inputs[j].Record
	}
	b := &plugins.Batch{Pipeline: r.opts.Pipeline, Stream: p.Stream, Partition: p.ID, Attempt: 1, Records: recs}
	r.calls++
	call := r.calls
	res, err := r.h.Handle(ctx, b)
	if ctx.Err() != nil {
		return fmt.Errorf("invoking the handler: %w", ctx.Err())
	}
	if err == nil {
		err = checkIndexes(res, len(idx))
	}
	if err != nil {
		if len(idx) > 1 && r.opts.Bisect {
			mid := len(idx) / 2
			if err := r.batch(ctx, p, idx[:mid]); err != nil {
				return err
			}
			return r.batch(ctx, p, idx[mid:])
		}
		f := &Failure{Class: plugins.ClassOf(err).String(), Message: err.Error(), Retryable: plugins.IsRetryable(err), Batch: true}
		for _, j := range idx {
			r.rep.Records[j].Batch, r.rep.Records[j].Failure = call, f
		}
		return nil
	}
	failed := map[int]*Failure{}
	for _, f := range res.Failures {
		if failed[f.Index] == nil {
			failed[f.Index] = &Failure{Class: f.Class.String(), Message: f.Message, Retryable: f.Retryable}
		}
	}
	for _, o := range res.Outputs {
		if r.sinks != nil && !r.sinks[o.Sink] && failed[o.Index] == nil {
			failed[o.Index] = &Failure{Class: plugins.ClassBadReply.String(),
				Message: fmt.Sprintf("output to sink %q, which the pipeline does not declare (declared: %v)", o.Sink, slices.Sorted(maps.Keys(r.sinks)))}
		}
	}
	for i, j := range idx {
		rr := &r.rep.Records[j]
		rr.Batch = call
		if f := failed[i]; f != nil {
			rr.Failure = f
			continue
		}
		rr.OK = true
	}
	for _, o := range res.Outputs {
		if failed[o.Index] == nil {
			rr := &r.rep.Records[idx[o.Index]]
			rr.Outputs = append(rr.Outputs, Output{Sink: o.Sink, Line: LineOf(o.Message)})
		}
	}
	return nil
}

// checkIndexes rejects a reply whose indexes are out of range, as the
// pipeline does (a protocol error fails the batch).
func checkIndexes(res *plugins.Result, n int) error {
	if res == nil {
		return plugins.NewError(plugins.ClassBadReply, false, errors.New("bad reply from handler: no result"))
	}
	for _, o := range res.Outputs {
		if o.Index < 0 || o.Index >= n {
			return plugins.NewError(plugins.ClassBadReply, false, fmt.Errorf("bad reply from handler: output index %d out of range [0,%d)", o.Index, n))
		}
	}
	for _, f := range res.Failures {
		if f.Index < 0 || f.Index >= n {
			return plugins.NewError(plugins.ClassBadReply, false, fmt.Errorf("bad reply from handler: failure index %d out of range [0,%d)", f.Index, n))
		}
	}
	return nil
}

// quoteKey renders a key as text, or "base64:..." when it is not UTF-8.
func quoteKey(k []byte) string {
	if utf8.Valid(k) {
		return string(k)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(k)
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
