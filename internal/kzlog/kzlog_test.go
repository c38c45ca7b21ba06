package kzlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	base := zerolog.New(&buf)
	cases := []struct {
		name string
		zl   zerolog.Logger
		want kgo.LogLevel
	}{
		{"trace", base.Level(zerolog.TraceLevel), kgo.LogLevelDebug},
		{"debug", base.Level(zerolog.DebugLevel), kgo.LogLevelDebug},
		{"info", base.Level(zerolog.InfoLevel), kgo.LogLevelInfo},
		{"warn", base.Level(zerolog.WarnLevel), kgo.LogLevelWarn},
		{"error", base.Level(zerolog.ErrorLevel), kgo.LogLevelError},
		{"fatal", base.Level(zerolog.FatalLevel), kgo.LogLevelNone},
		{"disabled", base.Level(zerolog.Disabled), kgo.LogLevelNone},
		{"nop", zerolog.Nop(), kgo.LogLevelNone},
		{"zero value has no writer", zerolog.Logger{}, kgo.LogLevelNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := New(c.zl).Level(); got != c.want {
				t.Fatalf("Level() = %v, want %v", got, c.want)
			}
		})
	}
}

func TestLogFields(t *testing.T) {
	var buf bytes.Buffer
	l := New(zerolog.New(&buf).Level(zerolog.InfoLevel))

	l.Log(kgo.LogLevelDebug, "dropped below level")
	if buf.Len() != 0 {
		t.Fatalf("debug line written at info level: %s", buf.String())
	}

	l.Log(kgo.LogLevelWarn, "fetch failed", "broker", int32(1), "topic", "t", "err", errors.New("boom"))
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	want := map[string]any{"level": "warn", "message": "fetch failed", "broker": 1.0, "topic": "t", "err": "boom"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %q = %v, want %v (line %s)", k, got[k], v, buf.String())
		}
	}
}
