package iot_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
)

func ptr[T any](v T) *T { return &v }

func TestParseGoodReadings(t *testing.T) {
	recTime := time.Date(2026, 11, 26, 7, 30, 0, 0, time.FixedZone("CET", 3600))
	cases := []struct {
		name  string
		value string
		want  iot.Enriched
	}{
		{
			name:  "fahrenheit, the documented example",
			value: `{"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature":71.3,"unit":"F","humidity":40.2,"battery_mv":3710}`,
			want: iot.Enriched{DeviceID: "d-17", TS: "2026-11-26T06:00:00Z", TemperatureC: 21.83, Humidity: ptr(40.2),
				DewPointC: ptr(7.7), BatteryMV: ptr(int64(3710)), BatteryLow: ptr(false),
				Source: iot.Source{Temperature: 71.3, Unit: "F"}},
		},
		{
			name:  "celsius, lower-case unit, ts in another zone, low battery",
			value: `{"device_id":"d-1","ts":"2026-11-26T08:00:00+02:00","temperature":20,"unit":"c","battery_mv":3299}`,
			want: iot.Enriched{DeviceID: "d-1", TS: "2026-11-26T06:00:00Z", TemperatureC: 20,
				BatteryMV: ptr(int64(3299)), BatteryLow: ptr(true), Source: iot.Source{Temperature: 20, Unit: "C"}},
		},
		{
			name:  "kelvin, no ts: the record's timestamp",
			value: `{"device_id":"d-2","temperature":300.15,"unit":"K","extra":"ignored"}`,
			want:  iot.Enriched{DeviceID: "d-2", TS: "2026-11-26T06:30:00Z", TemperatureC: 27, Source: iot.Source{Temperature: 300.15, Unit: "K"}},
		},
		{
			name:  "hot and humid: heat index",
			value: `{"device_id":"d-3","ts":"2026-11-26T06:00:00Z","temperature":32,"unit":"C","humidity":70}`,
			want: iot.Enriched{DeviceID: "d-3", TS: "2026-11-26T06:00:00Z", TemperatureC: 32, Humidity: ptr(70.0),
				DewPointC: ptr(25.84), HeatIndexC: ptr(40.41), Source: iot.Source{Temperature: 32, Unit: "C"}},
		},
		{
			name:  "zero humidity: no dew point",
			value: `{"device_id":"d-4","ts":"2026-11-26T06:00:00Z","temperature":-40,"unit":"F","humidity":0}`,
			want: iot.Enriched{DeviceID: "d-4", TS: "2026-11-26T06:00:00Z", TemperatureC: -40, Humidity: ptr(0.0),
				Source: iot.Source{Temperature: -40, Unit: "F"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := iot.Parse([]byte(tc.value), recTime)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tc.want)
			if string(g) != string(w) {
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// malformedCases are readings Parse rejects, each with part of its error
// message; the TypeScript handler is held to the same words.
var malformedCases = []struct {
	name  string
	value string
	want  string // in the error message
}{
	{"empty value", ``, "empty value"},
	{"invalid JSON", `{"device_id":"d-1","temperature":`, "invalid JSON"},
	{"not an object", `[1,2]`, "must be a JSON object"},
	{"null", `null`, "device_id is missing"},
	{"missing device_id", `{"temperature":20,"unit":"C"}`, "device_id is missing"},
	{"empty device_id", `{"device_id":" ","temperature":20,"unit":"C"}`, "device_id is empty"},
	{"numeric device_id", `{"device_id":17,"temperature":20,"unit":"C"}`, "device_id must be a string, got number"},
	{"missing temperature", `{"device_id":"d-1","unit":"C"}`, "temperature is missing"},
	{"null temperature", `{"device_id":"d-1","temperature":null,"unit":"C"}`, "temperature is missing"},
	{"NaN temperature", `{"device_id":"d-1","temperature":"NaN","unit":"C"}`, `temperature must be a number, got the string "NaN"`},
	{"boolean temperature", `{"device_id":"d-1","temperature":true,"unit":"C"}`, "temperature must be a number, got true"},
	{"huge temperature", `{"device_id":"d-1","temperature":1e999,"unit":"C"}`, "temperature 1e999 is not a finite number"},
	{"unknown unit", `{"device_id":"d-1","temperature":20,"unit":"X"}`, `unit "X" is unknown (want C, F or K)`},
	{"missing unit", `{"device_id":"d-1","temperature":20}`, "unit is missing"},
	{"below absolute zero", `{"device_id":"d-1","temperature":-5,"unit":"K"}`, "below absolute zero"},
	{"bad ts", `{"device_id":"d-1","ts":"yesterday","temperature":20,"unit":"C"}`, `ts "yesterday" is not an RFC 3339 time`},
	{"humidity out of range", `{"device_id":"d-1","temperature":20,"unit":"C","humidity":140}`, "humidity 140 is out of range"},
	{"negative battery", `{"device_id":"d-1","temperature":20,"unit":"C","battery_mv":-1}`, "battery_mv -1 is negative"},
	{"several problems at once", `{"unit":"Q"}`, "device_id is missing; temperature is missing; unit \"Q\" is unknown"},
}

func TestParseRejectsMalformedReadings(t *testing.T) {
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := iot.Parse([]byte(tc.value), time.Time{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			// Through Enrich, the error is the record's own fault.
			_, err = iot.Enrich(context.Background(), record.Record{Value: []byte(tc.value)})
			if plugins.ClassOf(err) != plugins.ClassInvalidInput || plugins.IsRetryable(err) {
				t.Errorf("Enrich error %v: class %v retryable %v, want invalid_input, not retryable",
					err, plugins.ClassOf(err), plugins.IsRetryable(err))
			}
		})
	}
}

func TestEnrichOutput(t *testing.T) {
	r := record.Record{
		Key:   []byte("ignored-key"),
		Value: []byte(`{"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature":71.3,"unit":"F","humidity":40.2,"battery_mv":3710}`),
		Headers: []record.Header{
			{Key: "trace-id", Value: []byte("abc")},
			{Key: iot.HandlerHeader, Value: []byte("someone-else/0")},
			{Key: "trace-id", Value: []byte("def")},
		},
	}
	outs, err := iot.Enrich(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 1 {
		t.Fatalf("%d outputs", len(outs))
	}
	o := outs[0]
	if o.Sink != iot.Sink || string(o.Key) != "d-17" {
		t.Errorf("sink %q key %q", o.Sink, o.Key)
	}
	wantHeaders := []record.Header{
		{Key: "trace-id", Value: []byte("abc")},
		{Key: "trace-id", Value: []byte("def")},
		{Key: iot.HandlerHeader, Value: []byte("iot/" + iot.Version)},
	}
	if len(o.Headers) != len(wantHeaders) {
		t.Fatalf("headers %q", o.Headers)
	}
	for i, h := range wantHeaders {
		if o.Headers[i].Key != h.Key || string(o.Headers[i].Value) != string(h.Value) {
			t.Errorf("header %d = %s:%s, want %s:%s", i, o.Headers[i].Key, o.Headers[i].Value, h.Key, h.Value)
		}
	}
	if len(r.Headers) != 3 || r.Headers[1].Key != iot.HandlerHeader {
		t.Error("Enrich modified the input's headers")
	}
	const want = `{"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature_c":21.83,"humidity":40.2,"dew_point_c":7.7,"battery_mv":3710,"battery_low":false,"source":{"temperature":71.3,"unit":"F"}}`
	if string(o.Value) != want {
		t.Errorf("value\n got %s\nwant %s", o.Value, want)
	}
	// Deterministic: a redelivery produces the same bytes.
	again, _ := iot.Enrich(context.Background(), r)
	if string(again[0].Value) != string(o.Value) {
		t.Error("output differs on redelivery")
	}
}

// TestHandler runs a whole batch through iot.Handler (the builtin), in
// process.
func TestHandler(t *testing.T) {
	h := iot.Handler()
	info, err := h.Describe(context.Background())
	if err != nil || info.Name != "iot" || info.Version != iot.Version || info.ProtocolVersion != plugins.ProtocolVersion {
		t.Fatalf("Describe = %+v, %v", info, err)
	}
	b := &plugins.Batch{}
	for i := range 300 {
		k, v := iot.Generate(7, i, 10)
		b.Records = append(b.Records, record.Record{Key: k, Value: v})
	}
	res, err := h.Handle(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, 300, 10)
}

// checkResult checks the result of n readings Generate(_, i, every): one
// output per good reading, one invalid_input failure per malformed one.
func checkResult(t *testing.T, res *plugins.Result, n, every int) {
	t.Helper()
	failed := map[int]bool{}
	for _, f := range res.Failures {
		if f.Class != plugins.ClassInvalidInput || f.Retryable || f.Message == "" {
			t.Errorf("failure %+v: want non-retryable invalid_input with a message", f)
		}
		failed[f.Index] = true
	}
	outputs := map[int]bool{}
	for _, o := range res.Outputs {
		if o.Sink != iot.Sink || outputs[o.Index] {
			t.Errorf("output %d: sink %q (duplicate %v)", o.Index, o.Sink, outputs[o.Index])
		}
		outputs[o.Index] = true
	}
	for i := range n {
		if iot.IsMalformed(i, every) != failed[i] || failed[i] == outputs[i] {
			t.Errorf("reading %d: malformed %v, failed %v, output %v", i, iot.IsMalformed(i, every), failed[i], outputs[i])
		}
	}
}

func TestGenerate(t *testing.T) {
	const n, every = 6000, 100
	malformed := 0
	kinds := map[string]int{}
	devices := map[string]bool{}
	for i := range n {
		k, v := iot.Generate(42, i, every)
		k2, v2 := iot.Generate(42, i, every)
		if string(k) != string(k2) || string(v) != string(v2) {
			t.Fatalf("reading %d is not deterministic", i)
		}
		devices[string(k)] = true
		e, err := iot.Parse(v, time.Time{})
		if iot.IsMalformed(i, every) {
			malformed++
			if err == nil {
				t.Errorf("malformed reading %d parsed: %s", i, v)
				continue
			}
			words := strings.Fields(err.Error())
			kinds[words[0]+" "+words[1]]++
			continue
		}
		if err != nil {
			t.Errorf("reading %d: %v: %s", i, err, v)
			continue
		}
		if e.DeviceID != string(k) {
			t.Errorf("reading %d: key %q, device %q", i, k, e.DeviceID)
		}
	}
	if malformed != n/every {
		t.Errorf("%d malformed of %d, want 1%%", malformed, n)
	}
	if len(kinds) != iot.MalformedKinds {
		t.Errorf("malformed kinds seen: %v, want %d", kinds, iot.MalformedKinds)
	}
	if len(devices) != iot.Devices {
		t.Errorf("%d devices, want %d", len(devices), iot.Devices)
	}
	_, a := iot.Generate(42, 0, every)
	_, b := iot.Generate(43, 0, every)
	if string(a) == string(b) {
		t.Error("the seed does not change the readings")
	}
	for i := range 500 {
		if _, v := iot.Generate(1, i, 0); iot.IsMalformed(i, 0) {
			t.Fatal("IsMalformed with malformedEvery 0")
		} else if _, err := iot.Parse(v, time.Time{}); err != nil {
			t.Fatalf("malformedEvery 0 made a malformed reading %d: %v", i, err)
		}
	}
}
