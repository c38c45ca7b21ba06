package stdout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/record"
)

func TestLineShape(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 123e6, time.FixedZone("CEST", 2*3600))
	cases := []struct {
		name string
		msg  record.Message
		want string
	}{
		{
			name: "JSON value embedded, headers, timestamp in UTC",
			msg: record.Message{Key: []byte("dev-1"), Value: []byte("{\n  \"t\": 21.5,\n  \"ok\": true\n}"),
				Headers: []record.Header{{Key: "src", Value: []byte("iot")}}, Timestamp: ts},
			want: `{"key":"dev-1","value":{"t":21.5,"ok":true},"headers":{"src":"iot"},"timestamp":"2024-05-01T10:00:00.123Z"}`,
		},
		{
			name: "text value is a string",
			msg:  record.Message{Key: []byte("a<b>&c"), Value: []byte("hello \"world\" <b>")},
			want: `{"key":"a<b>&c","value":"hello \"world\" <b>"}`,
		},
		{
			name: "JSON scalar value stays JSON",
			msg:  record.Message{Key: []byte("k"), Value: []byte("42")},
			want: `{"key":"k","value":42}`,
		},
		{
			name: "nil key and value are null",
			msg:  record.Message{},
			want: `{"key":null,"value":null}`,
		},
		{
			name: "empty value is an empty string",
			msg:  record.Message{Key: []byte{}, Value: []byte{}},
			want: `{"key":"","value":""}`,
		},
		{
			name: "binary key and value are base64",
			msg:  record.Message{Key: []byte{0xff, 0x00}, Value: []byte{0xfe, 0x01}},
			want: `{"key_b64":"/wA=","value_b64":"/gE="}`,
		},
		{
			name: "repeated and binary headers",
			msg: record.Message{Key: []byte("k"), Value: []byte("v"), Headers: []record.Header{
				{Key: "a", Value: []byte("1")}, {Key: "a", Value: []byte("2")}, {Key: "bin", Value: []byte{0xff}}}},
			want: `{"key":"k","value":"v","headers":{"a":["1","2"]},"headers_b64":{"bin":"/w=="}}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			s, _ := New(Config{Writer: &buf})
			if err := s.Write(context.Background(), []record.Message{c.msg}); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != c.want+"\n" {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// lockedBuffer records each Write call separately.
type lockedBuffer struct {
	mu     sync.Mutex
	writes []string
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, string(p))
	return len(p), nil
}

func TestConcurrentWritesKeepWholeLines(t *testing.T) {
	var out lockedBuffer
	s, _ := New(Config{Writer: &out})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			msgs := make([]record.Message, 50)
			for i := range msgs {
				msgs[i] = record.Message{Key: fmt.Appendf(nil, "g%d", g), Value: fmt.Appendf(nil, `{"i":%d}`, i)}
			}
			if err := s.Write(context.Background(), msgs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(strings.Join(out.writes, ""), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, l := range lines {
		var v struct {
			Key   string
			Value struct{ I int }
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("broken line %q: %v", l, err)
		}
	}
}

func TestClose(t *testing.T) {
	var buf bytes.Buffer
	s, _ := New(Config{Writer: &buf})
	for range 2 {
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(context.Background(), []record.Message{{}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}
