package invoke

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/weirhq/weir/examples/iot"
)

// WriteJSON writes rep as one indented JSON object.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// maxCell bounds a value shown in the table; --json shows it whole.
const maxCell = 100

// WriteTable writes rep for a person: one row per record (its outputs or
// its failure), then a summary line.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "handler %s %s\n\n", rep.Handler.Name, rep.Handler.Version)
	fmt.Fprintln(tw, "LINE\tPART\tOFFSET\tKEY\tBATCH\tRESULT\tDETAIL")
	for _, r := range rep.Records {
		lead := fmt.Sprintf("%d\t%d\t%d\t%s\t%d\t", r.Line, r.Partition, r.Offset, clip(r.Key, 24), r.Batch)
		switch {
		case r.Failure != nil:
			what := "FAILED"
			if r.Failure.Batch {
				what = "FAILED (batch)"
			}
			retry := ""
			if r.Failure.Retryable {
				retry = ", retryable"
			}
			fmt.Fprintf(tw, "%s%s\t[%s%s] %s\n", lead, what, r.Failure.Class, retry, clip(oneLine(r.Failure.Message), maxCell))
		case len(r.Outputs) == 0:
			fmt.Fprintf(tw, "%sok\t(no output)\n", lead)
		default:
			for i, o := range r.Outputs {
				if i > 0 {
					lead = "\t\t\t\t\t"
				}
				res := "ok"
				if i > 0 {
					res = ""
				}
				fmt.Fprintf(tw, "%s%s\t-> %s: %s\n", lead, res, o.Sink, clip(text(o.Value, o.ValueB64), maxCell))
			}
		}
	}
	s := rep.Summary
	fmt.Fprintf(tw, "\n%d records in %d batches: %d ok, %d failed, %d outputs (%s)\n",
		s.Records, s.Batches, s.OK, s.Failed, s.Outputs, s.Duration.Round(1000))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

func text(s, b64 *string) string {
	switch {
	case s != nil:
		return *s
	case b64 != nil:
		return "base64:" + *b64
	}
	return "(null)"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// SampleMalformedEvery is how often WriteSample writes a malformed reading:
// every 10th, so a sample shows the failure path too.
const SampleMalformedEvery = 10

// WriteSample writes n JSON lines of IoT readings (the schema of
// examples/iot, from iot.Generate with seed 1), every 10th malformed, over
// two partitions by device.
func WriteSample(w io.Writer, n int) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range n {
		k, v := iot.Generate(1, i, SampleMalformedEvery)
		key, value := string(k), string(v)
		dev, _ := strconv.Atoi(strings.TrimPrefix(key, "d-"))
		part := int32(dev % 2)
		if err := enc.Encode(Line{Key: &key, Value: &value, Partition: &part}); err != nil {
			return fmt.Errorf("writing sample records: %w", err)
		}
	}
	return nil
}
