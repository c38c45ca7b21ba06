package checkpoint

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weirhq/weir/record"
)

// Template says which field of a record is its idempotency key, under
// ModeTemplate. Its zero value is not usable; make one with ParseTemplate.
// A Template is immutable and safe for concurrent use.
type Template struct {
	text   string
	kind   templateKind
	header string   // kindHeader: the header name
	ptr    []string // kindJSON: the unescaped reference tokens
}

type templateKind uint8

const (
	kindKey templateKind = iota + 1
	kindHeader
	kindJSON
)

// ParseTemplate parses an idempotency key template (YAML: idempotency.key):
//
//	key            the record's key
//	header:NAME    the value of the record's first header named NAME (case-sensitive)
//	json:/a/b      the string or number at JSON pointer /a/b (RFC 6901) in the
//	               record's value, which must be a JSON document
func ParseTemplate(s string) (Template, error) {
	t := Template{text: s}
	switch {
	case s == "key":
		t.kind = kindKey
	case strings.HasPrefix(s, "header:"):
		t.kind, t.header = kindHeader, strings.TrimPrefix(s, "header:")
		if t.header == "" {
			return Template{}, fmt.Errorf("idempotency key %q: the header name is missing (header:NAME)", s)
		}
	case strings.HasPrefix(s, "json:"):
		p := strings.TrimPrefix(s, "json:")
		if !strings.HasPrefix(p, "/") {
			return Template{}, fmt.Errorf("idempotency key %q: %q is not a JSON pointer; write one like json:/message_id", s, p)
		}
		for _, tok := range strings.Split(p[1:], "/") {
			u, err := unescapePointerToken(tok)
			if err != nil {
				return Template{}, fmt.Errorf("idempotency key %q: %w", s, err)
			}
			t.ptr = append(t.ptr, u)
		}
		t.kind = kindJSON
	default:
		return Template{}, fmt.Errorf("idempotency key %q is not a template; expected key, header:NAME or json:/POINTER", s)
	}
	return t, nil
}

// unescapePointerToken undoes RFC 6901's escapes: ~1 is '/', ~0 is '~'.
func unescapePointerToken(tok string) (string, error) {
	if !strings.Contains(tok, "~") {
		return tok, nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		if tok[i] != '~' {
			b.WriteByte(tok[i])
			continue
		}
		if i+1 < len(tok) && (tok[i+1] == '0' || tok[i+1] == '1') {
			b.WriteByte("~/"[tok[i+1]-'0'])
			i++
			continue
		}
		return "", fmt.Errorf("%q: '~' must be followed by 0 or 1 in a JSON pointer", tok)
	}
	return b.String(), nil
}

// String returns the template as it was written.
func (t Template) String() string { return t.text }

// KeyOf returns r's idempotency key under t. A record without the field t
// names (no key, no such header, a value that is not JSON or lacks the
// pointer's target, a target that is null, empty, an object or an array)
// gets a *KeyError (errors.Is(err, ErrNoKey)): the host fails that record,
// without retrying it. JSON numbers are keyed as written (1 and 1.0 differ).
func (t Template) KeyOf(r *record.Record) (string, error) {
	v, err := t.value(r)
	return string(v), err
}

// value is KeyOf without a copy: it returns a slice of the record, or of
// a string decoded from its JSON value.
func (t Template) value(r *record.Record) ([]byte, error) {
	switch t.kind {
	case kindKey:
		if len(r.Key) == 0 {
			return nil, t.missing("the record has no key")
		}
		return r.Key, nil
	case kindHeader:
		for _, h := range r.Headers {
			if h.Key == t.header {
				if len(h.Value) == 0 {
					return nil, t.missing(fmt.Sprintf("header %q is empty", t.header))
				}
				return h.Value, nil
			}
		}
		return nil, t.missing(fmt.Sprintf("the record has no header %q", t.header))
	case kindJSON:
		return t.jsonKey(r.Value)
	}
	return nil, errors.New("checkpoint: Template used without ParseTemplate")
}

func (t Template) missing(reason string) error {
	return &KeyError{Template: t.text, Reason: reason}
}

func pointerOr(at string) string {
	if at == "" {
		return "the value"
	}
	return at
}

func jsonKind(raw []byte) string {
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	}
	return "number"
}
