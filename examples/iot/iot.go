// Package iot is the handler of the IoT ingestion example: it validates
// sensor readings, normalizes them to Celsius, derives comfort and battery
// fields, and emits one enriched reading per good input to the sink
// "enriched", keyed by device id. Malformed readings fail alone, as
// non-retryable invalid_input failures, and go to the dead-letter queue.
//
// The handler runs built into weir (handler: { plugin: "builtin:iot" }) or as
// the standalone plugin in cmd/iot-handler; both serve Enrich through the
// SDK. Generate makes deterministic readings for the quickstart, the load
// generator and the tests.
//
// Input, one JSON object per record value:
//
//	{"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature":71.3,"unit":"F","humidity":40.2,"battery_mv":3710}
//
// device_id, temperature and unit (C, F or K) are required; ts (RFC 3339,
// default: the record's timestamp), humidity (percent, 0-100) and battery_mv
// are optional. Unknown fields are ignored. Output:
//
//	{"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature_c":21.83,"humidity":40.2,"dew_point_c":7.7,"battery_mv":3710,"battery_low":false,"source":{"temperature":71.3,"unit":"F"}}
//
// dew_point_c is present when humidity is above 0; heat_index_c when humidity
// is present and the temperature is at least 26.7 °C (80 °F), where the heat
// index is defined. Output is a pure function of the input record, so a
// redelivered record produces the same bytes.
package iot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/plugins/sdk"
	"github.com/weirhq/weir/record"
)

const (
	// Name is the handler's name (plugins.Info.Name).
	Name = "iot"
	// Version is the handler's version, sent in the weir-handler header.
	Version = "1.0.0"
	// Sink is the sink every output goes to.
	Sink = "enriched"
	// HandlerHeader is the header naming the handler that produced an
	// output, as "iot/<Version>".
	HandlerHeader = "weir-handler"
	// BatteryLowMillivolts is the threshold below which battery_low is true.
	BatteryLowMillivolts = 3300
)

// handlerHeaderValue is the value of HandlerHeader on every output.
var handlerHeaderValue = []byte(Name + "/" + Version)

// Handler returns the IoT handler as a plugins.Handler, for weir's builtin
// registry.
func Handler() plugins.Handler {
	return sdk.New(Options(), sdk.PerRecord(Enrich))
}

// Options are the SDK options the handler is served with.
func Options() sdk.Options { return sdk.Options{Name: Name, Version: Version} }

// reading is the input. Temperature stays raw so that a string ("NaN") or
// null is reported as such rather than as a JSON type error.
type reading struct {
	DeviceID    *string         `json:"device_id"`
	TS          *string         `json:"ts"`
	Temperature json.RawMessage `json:"temperature"`
	Unit        *string         `json:"unit"`
	Humidity    *float64        `json:"humidity"`
	BatteryMV   *int64          `json:"battery_mv"`
}

// Enriched is the output.
type Enriched struct {
	DeviceID     string   `json:"device_id"`
	TS           string   `json:"ts,omitempty"`
	TemperatureC float64  `json:"temperature_c"`
	Humidity     *float64 `json:"humidity,omitempty"`
	DewPointC    *float64 `json:"dew_point_c,omitempty"`
	HeatIndexC   *float64 `json:"heat_index_c,omitempty"`
	BatteryMV    *int64   `json:"battery_mv,omitempty"`
	BatteryLow   *bool    `json:"battery_low,omitempty"`
	Source       Source   `json:"source"`
}

// Source is the temperature as the device reported it.
type Source struct {
	Temperature float64 `json:"temperature"`
	Unit        string  `json:"unit"`
}

// Enrich is the handler's per-record function (an sdk.RecordFunc). It
// returns one output to Sink keyed by the device id, with the record's
// headers (except an existing weir-handler header) plus
// weir-handler: iot/<Version>; or an sdk.Invalid error naming what is wrong
// with the reading.
func Enrich(_ context.Context, r record.Record) ([]sdk.Out, error) {
	e, err := Parse(r.Value, r.Timestamp)
	if err != nil {
		return nil, sdk.Invalid(err)
	}
	value, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding enriched reading: %w", err)
	}
	headers := make([]record.Header, 0, len(r.Headers)+1)
	for _, h := range r.Headers {
		if h.Key != HandlerHeader {
			headers = append(headers, h)
		}
	}
	headers = append(headers, record.Header{Key: HandlerHeader, Value: handlerHeaderValue})
	return []sdk.Out{{Sink: Sink, Key: []byte(e.DeviceID), Value: value, Headers: headers}}, nil
}

// Parse validates one reading and computes its enriched form. recordTime
// is used for ts when the reading has none (zero: ts is left out). The error
// says what is wrong, in words a person fixing the device can use.
func Parse(value []byte, recordTime time.Time) (*Enriched, error) {
	if len(value) == 0 {
		return nil, errors.New("empty value: want a JSON reading")
	}
	var in reading
	if err := json.Unmarshal(value, &in); err != nil {
		return nil, describeJSONError(err)
	}
	var problems []string
	e := &Enriched{}

	switch {
	case in.DeviceID == nil:
		problems = append(problems, "device_id is missing")
	case strings.TrimSpace(*in.DeviceID) == "":
		problems = append(problems, "device_id is empty")
	case len(*in.DeviceID) > 256:
		problems = append(problems, fmt.Sprintf("device_id is %d bytes long (at most 256)", len(*in.DeviceID)))
	default:
		e.DeviceID = *in.DeviceID
	}

	temp, tempErr := parseTemperature(in.Temperature)
	if tempErr != "" {
		problems = append(problems, tempErr)
	}
	unit := ""
	if in.Unit == nil {
		problems = append(problems, "unit is missing (want C, F or K)")
	} else {
		unit = strings.ToUpper(strings.TrimSpace(*in.Unit))
		switch unit {
		case "C", "F", "K":
		default:
			problems = append(problems, fmt.Sprintf("unit %q is unknown (want C, F or K)", *in.Unit))
			unit = ""
		}
	}
	if tempErr == "" && unit != "" {
		c := toCelsius(temp, unit)
		if c < -273.15 {
			problems = append(problems, fmt.Sprintf("temperature %g %s is below absolute zero", temp, unit))
		}
		e.TemperatureC = round2(c)
		e.Source = Source{Temperature: temp, Unit: unit}
	}

	switch {
	case in.TS != nil:
		t, err := time.Parse(time.RFC3339Nano, *in.TS)
		if err != nil {
			problems = append(problems, fmt.Sprintf("ts %q is not an RFC 3339 time", *in.TS))
		} else {
			e.TS = t.UTC().Format(time.RFC3339Nano)
		}
	case !recordTime.IsZero():
		e.TS = recordTime.UTC().Format(time.RFC3339Nano)
	}

	if in.Humidity != nil {
		h := *in.Humidity
		if h < 0 || h > 100 {
			problems = append(problems, fmt.Sprintf("humidity %g is out of range (0-100)", h))
		} else {
			e.Humidity = &h
		}
	}
	if in.BatteryMV != nil {
		mv := *in.BatteryMV
		if mv < 0 {
			problems = append(problems, fmt.Sprintf("battery_mv %d is negative", mv))
		} else {
			low := mv < BatteryLowMillivolts
			e.BatteryMV, e.BatteryLow = &mv, &low
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}

	if e.Humidity != nil {
		c, h := e.Source.toCelsius(), *e.Humidity
		if h > 0 {
			dp := round2(dewPointC(c, h))
			e.DewPointC = &dp
		}
		if c >= 26.7 {
			hi := round2(heatIndexC(c, h))
			e.HeatIndexC = &hi
		}
	}
	return e, nil
}

// parseTemperature returns the temperature, or a problem.
func parseTemperature(raw json.RawMessage) (float64, string) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null":
		return 0, "temperature is missing"
	case s[0] == '"':
		return 0, fmt.Sprintf("temperature must be a number, got the string %s", s)
	case s == "true" || s == "false" || s[0] == '{' || s[0] == '[':
		return 0, fmt.Sprintf("temperature must be a number, got %s", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Sprintf("temperature %s is not a finite number", s)
	}
	return f, ""
}

// describeJSONError words a decoding error for a person.
func describeJSONError(err error) error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return fmt.Errorf("reading must be a JSON object, got %s", te.Value)
		}
		return fmt.Errorf("%s must be a %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "float64", "float32":
		return "number"
	case "int64", "int", "int32":
		return "whole number"
	}
	return goKind
}

func (s Source) toCelsius() float64 { return toCelsius(s.Temperature, s.Unit) }

func toCelsius(t float64, unit string) float64 {
	switch unit {
	case "F":
		return (t - 32) * 5 / 9
	case "K":
		return t - 273.15
	}
	return t
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// dewPointC is the Magnus formula (Alduchov and Eskridge coefficients),
// good to about 0.4 °C for -40..50 °C.
func dewPointC(c, rh float64) float64 {
	const a, b = 17.625, 243.04
	g := math.Log(rh/100) + a*c/(b+c)
	return b * g / (a - g)
}

// heatIndexC is the US National Weather Service heat index (Rothfusz
// regression with its adjustments), computed in °F.
func heatIndexC(c, rh float64) float64 {
	t := c*9/5 + 32
	hi := 0.5 * (t + 61 + (t-68)*1.2 + rh*0.094)
	if (hi+t)/2 >= 80 {
		hi = -42.379 + 2.04901523*t + 10.14333127*rh - 0.22475541*t*rh -
			0.00683783*t*t - 0.05481717*rh*rh + 0.00122874*t*t*rh +
			0.00085282*t*rh*rh - 0.00000199*t*t*rh*rh
		switch {
		case rh < 13 && t >= 80 && t <= 112:
			hi -= (13 - rh) / 4 * math.Sqrt((17-math.Abs(t-95))/17)
		case rh > 85 && t >= 80 && t <= 87:
			hi += (rh - 85) / 10 * (87 - t) / 5
		}
	}
	return (hi - 32) * 5 / 9
}
