// Package etl is the ETL example: a Python handler (handler.py) and its
// pipeline (weir.yaml). This test runs the handler as weir does, through a
// plugins.Pool.
package etl_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/conformance"
	"github.com/weirhq/weir/record"
)

func startHandler(t *testing.T) *plugins.Pool {
	t.Helper()
	root, err := conformance.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	py, err := conformance.Python(root)
	if err != nil {
		if errors.Is(err, conformance.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skipf("%v (CI fails instead of skipping)", err)
		}
		t.Fatal(err)
	}
	tgt := conformance.Target{Name: "etl", Config: plugins.PoolConfig{
		Path: py,
		Args: []string{filepath.Join(root, "examples", "etl", "handler.py")},
		// As in weir.yaml's handler.env.
		Env: map[string]string{"ETL_OUTPUT_SINK": "rows", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
	}}
	return conformance.StartPool(t, tgt, 1, 20*time.Second, nil)
}

func TestHandler(t *testing.T) {
	pool := startHandler(t)
	if info := pool.Info(); info.Name != "etl-orders" || info.Version != "1.0.0" {
		t.Errorf("Info = %+v", info)
	}
	good := `{"order_id":"o-1","created_at":"2026-03-01T12:00:00Z","currency":"USD",
		"customer":{"id":"c-7","country":"de"},
		"items":[{"sku":"tea","qty":2,"unit_price":4.5},{"sku":"mug","qty":1,"unit_price":11}]}`
	bad := map[int]string{
		1: `not json`,
		2: `{"order_id":"o-2","created_at":"2026-03-01T12:00:00Z","currency":"EUR","customer":{"id":"c","country":"FR"},"items":[{"sku":"x","qty":0,"unit_price":1}]}`,
		3: `{"order_id":"o-3","created_at":"2026-03-01T12:00:00Z","currency":"XXX","customer":{"id":"c","country":"FR"},"items":[{"sku":"x","qty":1,"unit_price":1}]}`,
		4: `{"created_at":"2026-03-01T12:00:00Z","currency":"EUR","customer":{"id":"c","country":"FR"},"items":[{"sku":"x","qty":1,"unit_price":1}]}`,
		5: ``,
		6: `{"order_id":"o-6","created_at":"yesterday","currency":"EUR","customer":{"id":"c","country":"FR"},"items":[{"sku":"x","qty":1,"unit_price":1}]}`,
	}
	recs := []record.Record{{Key: []byte("o-1"), Value: []byte(good)}}
	for i := 1; i <= len(bad); i++ {
		recs = append(recs, record.Record{Value: []byte(bad[i])})
	}
	recs = append(recs, record.Record{Key: []byte("o-7"), Value: []byte(`{"order_id":"o-7","created_at":"2026-03-02T08:30:00+01:00","currency":"EUR","customer":{"id":"c-9","country":"JP"},"items":[{"sku":"pen","qty":3,"unit_price":1.25}]}`)})

	res, err := pool.Handle(context.Background(), &plugins.Batch{Pipeline: "etl-orders", Stream: "orders", Partition: "0", Attempt: 1, Records: recs})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(res.Failures) != len(bad) {
		t.Fatalf("failures %+v, want one for each of records %v", res.Failures, bad)
	}
	for _, f := range res.Failures {
		if _, ok := bad[f.Index]; !ok || f.Class != plugins.ClassInvalidInput || f.Retryable {
			t.Errorf("failure %+v: want records 1-6 failed as invalid_input, not retryable", f)
		}
		t.Logf("record %d: %s", f.Index, f.Message)
	}
	if len(res.Outputs) != 3 {
		t.Fatalf("%d outputs, want 2 rows of order o-1 and 1 of o-7: %+v", len(res.Outputs), res.Outputs)
	}
	type row struct {
		OrderID      string  `json:"order_id"`
		Line         int     `json:"line"`
		CustomerID   string  `json:"customer_id"`
		Country      string  `json:"country"`
		Region       string  `json:"region"`
		SKU          string  `json:"sku"`
		Qty          int     `json:"qty"`
		LineTotal    float64 `json:"line_total"`
		LineTotalEUR float64 `json:"line_total_eur"`
		OrderTotal   float64 `json:"order_total"`
		OrderLines   int     `json:"order_lines"`
		VATRate      float64 `json:"vat_rate"`
	}
	want := []struct {
		index int
		row   row
	}{
		{0, row{"o-1", 0, "c-7", "DE", "EMEA", "tea", 2, 9, 8.28, 20, 2, 0.19}},
		{0, row{"o-1", 1, "c-7", "DE", "EMEA", "mug", 1, 11, 10.12, 20, 2, 0.19}},
		{7, row{"o-7", 0, "c-9", "JP", "APAC", "pen", 3, 3.75, 3.75, 3.75, 1, 0.10}},
	}
	for i, o := range res.Outputs {
		var got row
		if err := json.Unmarshal(o.Value, &got); err != nil {
			t.Fatalf("output %d: %v: %s", i, err, o.Value)
		}
		if o.Index != want[i].index || o.Sink != "rows" || string(o.Key) != got.OrderID || got != want[i].row {
			t.Errorf("output %d: index %d sink %q key %q row %+v, want index %d sink rows row %+v", i, o.Index, o.Sink, o.Key, got, want[i].index, want[i].row)
		}
		if len(o.Headers) != 1 || o.Headers[0].Key != "weir-handler" || string(o.Headers[0].Value) != "etl-orders/1.0.0" {
			t.Errorf("output %d headers %+v", i, o.Headers)
		}
	}
}
