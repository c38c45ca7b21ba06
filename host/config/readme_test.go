package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// The README's configuration reference is a YAML block that must load with
// this package and name every field the schema has, so it cannot drift from
// the code: a field added here and not documented there fails this test.
func TestReadmeReferenceCoversTheSchema(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	begin, end := strings.Index(s, "<!-- reference:begin -->"), strings.Index(s, "<!-- reference:end -->")
	if begin < 0 || end < begin {
		t.Fatal("README.md has no reference:begin/end block")
	}
	block := s[begin:end]
	block = block[strings.Index(block, "```yaml")+len("```yaml") : strings.LastIndex(block, "```")]

	env := func(string) (string, bool) { return "", false }
	if _, err := Parse("README.md", []byte(block), SkipFileChecks(), WithLookupEnv(env)); err != nil {
		t.Fatalf("the README reference does not load:\n%v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	checkFields(reflect.TypeOf(File{}), doc.Content[0], "", &missing)
	for _, m := range missing {
		t.Errorf("README reference does not document %s", m)
	}
}

// derived fields are computed by the loader, not written in a file.
var derived = map[string]bool{"Path": true, "PluginPath": true, "Builtin": true, "Warnings": true}

// scalars are struct types written as one YAML scalar.
var scalars = map[reflect.Type]bool{reflect.TypeOf(Start{}): true, reflect.TypeOf(time.Time{}): true}

func checkFields(typ reflect.Type, node *yaml.Node, path string, missing *[]string) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case scalars[typ]:
		return
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct:
		// A field is documented when any item of the list shows it (the
		// reference has a Kafka pipeline and a Kinesis one).
		if node.Kind == yaml.SequenceNode && len(node.Content) > 0 {
			var common []string
			for i, item := range node.Content {
				var m []string
				checkFields(typ.Elem(), item, path+"[]", &m)
				if i == 0 {
					common = m
				} else {
					common = slices.DeleteFunc(common, func(p string) bool { return !slices.Contains(m, p) })
				}
			}
			*missing = append(*missing, common...)
		}
		return
	case typ.Kind() == reflect.Map && typ.Elem().Kind() == reflect.Struct:
		// every field of the element type must appear in one of the entries
		seen := map[string]bool{}
		for i := 1; i < len(node.Content); i += 2 {
			v := node.Content[i]
			for j := 0; j+1 < len(v.Content); j += 2 {
				seen[v.Content[j].Value] = true
			}
		}
		for i := 0; i < typ.Elem().NumField(); i++ {
			if name := snake(typ.Elem().Field(i).Name); !seen[name] {
				*missing = append(*missing, path+".*."+name)
			}
		}
		return
	case typ.Kind() != reflect.Struct:
		return
	}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if derived[f.Name] {
			continue
		}
		name := snake(f.Name)
		child := lookup(node, name)
		p := strings.TrimPrefix(path+"."+name, ".")
		if child == nil {
			*missing = append(*missing, p)
			continue
		}
		checkFields(f.Type, child, p, missing)
	}
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// snake turns a Go field name into its YAML key: MaxInflightBytes ->
// max_inflight_bytes, ClientID -> client_id, DB -> db.
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		// CamelCase → camel_case; an acronym ends before the capital of
		// the next word: CAFile → ca_file.
		if i > 0 && unicode.IsUpper(r) && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
