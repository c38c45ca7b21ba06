package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The JSON template reads a record's value only as far as its pointer's
// target, without decoding what it passes over: a key costs a scan of the
// value up to the target and no allocation, unless the target string has
// escapes. What lies past the target is not checked; the handler judges
// the value.

// errSyntax is a value that is not JSON where the scan went.
var errSyntax = errors.New("not JSON")

// jsonKey returns the scalar at t's pointer in v: a string's decoded
// content, or a number, true or false as written.
func (t Template) jsonKey(v []byte) ([]byte, error) {
	i := skipWS(v, 0)
	if i == len(v) {
		return nil, t.missing("the record's value is empty, not JSON")
	}
	for k, tok := range t.ptr {
		var next int
		var err error
		switch v[i] {
		case '{':
			next, err = objectMember(v, i, tok)
			if err == nil && next < 0 {
				return nil, t.missing("the value has no " + t.pointerTo(k+1))
			}
		case '[':
			var n int
			next, n, err = arrayElement(v, i, tok)
			if err == nil && next < 0 {
				return nil, t.missing(fmt.Sprintf("the value has no %s (an array of %d)", t.pointerTo(k+1), n))
			}
		default:
			end, err := skipValue(v, i)
			if err != nil || k == 0 && skipWS(v, end) != len(v) {
				return nil, t.missing("the record's value is not JSON")
			}
			return nil, t.missing(fmt.Sprintf("%s is a %s, not an object or array", pointerOr(t.pointerTo(k)), jsonKind(v[i:])))
		}
		if err != nil {
			return nil, t.missing("the record's value is not JSON")
		}
		i = next
	}
	end, err := skipValue(v, i)
	if err != nil {
		return nil, t.missing("the record's value is not JSON")
	}
	raw := v[i:end]
	switch raw[0] {
	case '"':
		s := raw[1 : len(raw)-1]
		if bytes.IndexByte(s, '\\') >= 0 {
			var u string
			if err := json.Unmarshal(raw, &u); err != nil {
				return nil, t.missing(fmt.Sprintf("%s: %v", t.pointerTo(len(t.ptr)), err))
			}
			s = []byte(u)
		}
		if len(s) == 0 {
			return nil, t.missing(t.pointerTo(len(t.ptr)) + " is an empty string")
		}
		return s, nil
	case 'n':
		return nil, t.missing(t.pointerTo(len(t.ptr)) + " is null")
	case '{', '[':
		return nil, t.missing(fmt.Sprintf("%s is an %s, not a string or number", t.pointerTo(len(t.ptr)), jsonKind(raw)))
	}
	return raw, nil // a number, true or false, as written
}

// pointerTo returns the pointer's first k tokens, for messages.
func (t Template) pointerTo(k int) string {
	if k == 0 {
		return ""
	}
	return "/" + strings.Join(t.ptr[:k], "/")
}

// objectMember returns where the value of member name starts in the object
// at v[i], or -1 if the object has no such member. Of repeated members the
// last counts, as in encoding/json, so the scan goes on to the object's end.
func objectMember(v []byte, i int, name string) (int, error) {
	found := -1
	i = skipWS(v, i+1)
	if i < len(v) && v[i] == '}' {
		return -1, nil
	}
	for {
		if i >= len(v) || v[i] != '"' {
			return 0, errSyntax
		}
		end, err := skipString(v, i)
		if err != nil {
			return 0, err
		}
		match := keyEquals(v[i:end], name)
		i = skipWS(v, end)
		if i >= len(v) || v[i] != ':' {
			return 0, errSyntax
		}
		i = skipWS(v, i+1)
		if match {
			found = i
		}
		if i, err = skipValue(v, i); err != nil {
			return 0, err
		}
		i = skipWS(v, i)
		switch {
		case i < len(v) && v[i] == ',':
			i = skipWS(v, i+1)
		case i < len(v) && v[i] == '}':
			return found, nil
		default:
			return 0, errSyntax
		}
	}
}

// arrayElement returns where element tok (a decimal index without leading
// zeros) of the array at v[i] starts, or -1 and the array's length if it
// has none.
func arrayElement(v []byte, i int, tok string) (start, n int, err error) {
	want, perr := strconv.Atoi(tok)
	if perr != nil || want < 0 || len(tok) > 1 && tok[0] == '0' {
		want = -1
	}
	i = skipWS(v, i+1)
	if i < len(v) && v[i] == ']' {
		return -1, 0, nil
	}
	for {
		if i >= len(v) {
			return 0, 0, errSyntax
		}
		if n == want {
			return i, 0, nil
		}
		if i, err = skipValue(v, i); err != nil {
			return 0, 0, err
		}
		n++
		i = skipWS(v, i)
		switch {
		case i < len(v) && v[i] == ',':
			i = skipWS(v, i+1)
		case i < len(v) && v[i] == ']':
			return -1, n, nil
		default:
			return 0, 0, errSyntax
		}
	}
}

// keyEquals reports whether the JSON string lit (with its quotes) decodes
// to name.
func keyEquals(lit []byte, name string) bool {
	s := lit[1 : len(lit)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s) == name
	}
	var u string
	return json.Unmarshal(lit, &u) == nil && u == name
}

func skipWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at v[i].
func skipString(v []byte, i int) (int, error) {
	for i++; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		default:
			if v[i] < 0x20 {
				return 0, errSyntax
			}
		}
	}
	return 0, errSyntax
}

// skipValue returns the index just past the value starting at v[i]. It
// checks brackets and strings; scalars are checked when they are the key.
func skipValue(v []byte, i int) (int, error) {
	if i >= len(v) {
		return 0, errSyntax
	}
	switch v[i] {
	case '"':
		return skipString(v, i)
	case '{', '[':
		depth := 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '"':
				end, err := skipString(v, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errSyntax
	}
	start := i
	for i < len(v) && v[i] != ',' && v[i] != '}' && v[i] != ']' &&
		v[i] != ' ' && v[i] != '\t' && v[i] != '\n' && v[i] != '\r' {
		i++
	}
	if !json.Valid(v[start:i]) {
		return 0, errSyntax
	}
	return i, nil
}
