package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/weirhq/weir/record"
)

func TestParseTemplate(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  string // substring; empty means valid
	}{
		{"record key", "key", ""},
		{"header", "header:message-id", ""},
		{"header with colon in name", "header:x:id", ""},
		{"json pointer", "json:/message_id", ""},
		{"nested json pointer", "json:/meta/id", ""},
		{"json pointer with escapes", "json:/a~1b/c~0d", ""},
		{"empty", "", "is not a template"},
		{"position is a mode, not a template", "position", "is not a template"},
		{"unknown kind", "body:/x", "is not a template"},
		{"header without name", "header:", "header name is missing"},
		{"json without pointer", "json:", "is not a JSON pointer"},
		{"json pointer without slash", "json:message_id", "is not a JSON pointer"},
		{"bad escape", "json:/a~2", "must be followed by 0 or 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseTemplate(%q): %v", tc.in, err)
				}
				if tmpl.String() != tc.in {
					t.Fatalf("String() = %q, want %q", tmpl.String(), tc.in)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseTemplate(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestTemplateKeyOf(t *testing.T) {
	rec := func(key, value string, headers ...string) *record.Record {
		r := &record.Record{Value: []byte(value)}
		if key != "" {
			r.Key = []byte(key)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			r.Headers = append(r.Headers, record.Header{Key: headers[i], Value: []byte(headers[i+1])})
		}
		return r
	}
	for _, tc := range []struct {
		name, tmpl string
		r          *record.Record
		want       string
		wantErr    string // substring of a *KeyError; empty means none
	}{
		{"key", "key", rec("dev-1", "x"), "dev-1", ""},
		{"no key", "key", rec("", "x"), "", "the record has no key"},

		{"header", "header:message-id", rec("", "", "a", "1", "message-id", "m-42"), "m-42", ""},
		{"first of repeated headers", "header:message-id", rec("", "", "message-id", "m-1", "message-id", "m-2"), "m-1", ""},
		{"header names are case-sensitive", "header:message-id", rec("", "", "Message-Id", "m-1"), "", `no header "message-id"`},
		{"missing header", "header:message-id", rec("", "", "other", "x"), "", `the record has no header "message-id"`},
		{"empty header", "header:message-id", rec("", "", "message-id", ""), "", `header "message-id" is empty`},

		{"json string", "json:/message_id", rec("", `{"message_id":"m-7","t":1}`), "m-7", ""},
		{"json string with escapes", "json:/message_id", rec("", `{"message_id":"a\u00e9\"b"}`), `aé"b`, ""},
		{"json number as written", "json:/message_id", rec("", `{"message_id": 1.50}`), "1.50", ""},
		{"json bool", "json:/ok", rec("", `{"ok":true}`), "true", ""},
		{"nested", "json:/meta/id", rec("", `{"meta":{"id":"x-1"}}`), "x-1", ""},
		{"array index", "json:/ids/1", rec("", `{"ids":["a","b"]}`), "b", ""},
		{"escaped token", "json:/a~1b", rec("", `{"a/b":"slash"}`), "slash", ""},
		{"surrounding whitespace", "json:/id", rec("", " \n{\"id\":\"w\"}\n"), "w", ""},
		{"missing field", "json:/message_id", rec("", `{"id":"m-7"}`), "", "the value has no /message_id"},
		{"missing nested field", "json:/meta/id", rec("", `{"meta":{}}`), "", "the value has no /meta/id"},
		{"array index out of range", "json:/ids/5", rec("", `{"ids":["a"]}`), "", "no /ids/5 (an array of 1)"},
		{"leading zero index", "json:/ids/01", rec("", `{"ids":["a","b"]}`), "", "no /ids/01"},
		{"through a scalar", "json:/id/x", rec("", `{"id":"s"}`), "", "/id is a string, not an object or array"},
		{"null", "json:/message_id", rec("", `{"message_id":null}`), "", "/message_id is null"},
		{"empty string", "json:/message_id", rec("", `{"message_id":""}`), "", "/message_id is an empty string"},
		{"object", "json:/message_id", rec("", `{"message_id":{"a":1}}`), "", "is an object, not a string or number"},
		{"value not json", "json:/message_id", rec("", `temp=21`), "", "the record's value is not JSON"},
		{"value empty", "json:/message_id", rec("", ``), "", "the record's value is empty"},
		{"value is a scalar", "json:/message_id", rec("", `"m-1"`), "", "the value is a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.KeyOf(tc.r)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("KeyOf = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrNoKey) {
				t.Fatalf("KeyOf = %q, %v; want an ErrNoKey", got, err)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Template != tc.tmpl {
				t.Fatalf("KeyOf error %v is not a *KeyError of template %q", err, tc.tmpl)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.tmpl) {
				t.Fatalf("KeyOf error = %q, want it to name the template and contain %q", err, tc.wantErr)
			}
		})
	}
}

// The JSON template scans instead of decoding; it must find what a full
// decode finds.
func TestJSONScanAgreesWithDecode(t *testing.T) {
	docs := []string{
		`{"message_id":"m-1","t":1}`,
		`{"t":{"a":[1,2,{"message_id":"nested"}]},"message_id":"outer"}`,
		`{"a":"x\"y}","message_id":"after a tricky string"}`,
		`{"a":[{"b":"]"},{"c":"["}],"message_id":42}`,
		`{"msg\u005fid":"escaped key","message_id":"plain"}`,
		`{"message_id":"caf\u00e9"}`,
		`{"message_id":-1.5e3}`,
		`{"message_id":false}`,
		` { "message_id" : "spaced" } `,
		`{"ids":["a","b","c"],"meta":{"id":"x","ids":[[1],[2]]}}`,
		`{}`, `[]`, `[1,"two",{"message_id":"in array"}]`,
		// Found by FuzzJSONKey: of repeated members the scan took the first,
		// encoding/json (and JavaScript, Python) the last.
		`{"message_id":"first","message_id":"last"}`,
		`{"":"","":0}`,
	}
	pointers := []string{"/", "/message_id", "/t/a/2/message_id", "/ids/1", "/meta/ids/1/0", "/2/message_id", "/msg_id", "/0", "/a/1/c"}
	for _, doc := range docs {
		for _, ptr := range pointers {
			tmpl, err := ParseTemplate("json:" + ptr)
			if err != nil {
				t.Fatal(err)
			}
			got, gotErr := tmpl.KeyOf(&record.Record{Value: []byte(doc)})
			want, ok := decodePointer(doc, tmpl.ptr)
			if ok != (gotErr == nil) || ok && got != want {
				t.Errorf("%s in %s: scan = %q, %v; decode = %q, %v", ptr, doc, got, gotErr, want, ok)
			}
		}
	}
}

// decodePointer is the reference: a full decode, then a walk.
func decodePointer(doc string, ptr []string) (string, bool) {
	d := json.NewDecoder(strings.NewReader(doc))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return "", false
	}
	for _, tok := range ptr {
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[tok]; !ok {
				return "", false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return "", false
			}
			v = c[i]
		default:
			return "", false
		}
	}
	switch s := v.(type) {
	case string:
		return s, s != ""
	case json.Number:
		return s.String(), true
	case bool:
		return strconv.FormatBool(s), true
	}
	return "", false
}

// FuzzJSONKey: wherever a full decode finds a key, the scan finds the same.
// (The scan may also find one in a value that is broken past the key.)
func FuzzJSONKey(f *testing.F) {
	f.Add(`{"message_id":"m-1","t":1}`, "/message_id")
	f.Add(`{"a":[{"b":"]"},{"c":"[\""}],"message_id":42}`, "/a/1/c")
	f.Add(`[1,"two",{"k":"v"}]`, "/2/k")
	f.Fuzz(func(t *testing.T, doc, ptr string) {
		tmpl, err := ParseTemplate("json:" + ptr)
		if err != nil {
			return
		}
		got, gotErr := tmpl.KeyOf(&record.Record{Value: []byte(doc)})
		if want, ok := decodePointer(doc, tmpl.ptr); ok && (gotErr != nil || got != want) {
			t.Fatalf("%s in %s: scan = %q, %v; decode = %q", ptr, doc, got, gotErr, want)
		}
	})
}

// Regression: a record replayed from the DLQ keeps its producer's id, which
// was marked done when it was dead-lettered; its key must differ, or the
// replay is dropped as a duplicate.
func TestReplayedRecordGetsItsOwnTemplateKey(t *testing.T) {
	s, err := New(context.Background(), Config{Pipeline: "p", Mode: ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.Mode = ModeTemplate
	if s.tmpl, err = ParseTemplate("header:message-id"); err != nil {
		t.Fatal(err)
	}
	orig := record.Record{Headers: []record.Header{{Key: "message-id", Value: []byte("m-1")}}}
	replayed := orig
	replayed.Headers = append([]record.Header{}, orig.Headers...)
	replayed.Headers = append(replayed.Headers, record.Header{Key: "weir.replay-count", Value: []byte("1")})
	k1, err1 := s.KeyOf(&orig)
	k2, err2 := s.KeyOf(&replayed)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if k1 == k2 {
		t.Fatalf("a replayed record has its original's key %v", k1)
	}
}
