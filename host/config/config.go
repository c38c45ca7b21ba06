// Package config reads and validates weir configuration files.
//
// A file declares the shared Kafka and Redis connections and any number of
// pipelines; the schema, with every field's YAML key and default, is
// documented on the types of this package (File, Pipeline and below).
//
// Load and Parse walk the YAML node tree themselves, so that every problem
// carries the line and field path it concerns. Unknown fields are errors.
// Every problem in a file is reported at once, as an *Errors.
//
// Before a scalar value is interpreted, ${VAR} and ${VAR:-default} in it are
// expanded from the environment (see WithLookupEnv): ${VAR:-default} uses
// default when VAR is unset or empty, ${VAR} without a default is an error
// when VAR is unset, and $$ is a literal $. A $ followed by anything else is
// kept as is. Expansion happens per scalar after the YAML is parsed, so a
// variable's value can never add YAML structure. Mapping keys are not
// expanded.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Option changes how Load and Parse read a file.
type Option func(*options)

type options struct {
	builtins       []string // nil: any builtin name is accepted
	lookupEnv      func(string) (string, bool)
	skipFileChecks bool
}

func newOptions(opts []Option) options {
	o := options{lookupEnv: os.LookupEnv}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithBuiltins declares the handlers built into the binary, named in a
// config as "builtin:NAME". When given (even with no names), a builtin not
// in names is an error; without it, any builtin name is accepted.
func WithBuiltins(names ...string) Option {
	return func(o *options) { o.builtins = append([]string{}, names...) }
}

// WithLookupEnv sets where ${VAR} takes its values from. Default:
// os.LookupEnv.
func WithLookupEnv(lookup func(string) (string, bool)) Option {
	return func(o *options) { o.lookupEnv = lookup }
}

// SkipFileChecks skips checking that plugin files exist and are
// executable, for validating a file on another machine than the one that
// runs it. Plugin paths are still resolved into Handler.PluginPath.
func SkipFileChecks() Option {
	return func(o *options) { o.skipFileChecks = true }
}

// Load and Parse keep no state between calls and are safe for concurrent
// use.

// Load reads, validates and applies defaults to the configuration file at
// path. Relative plugin paths are resolved against path's directory.
// A file that can be read but is invalid gives an *Errors listing every
// problem; a file that cannot be read gives the error from the file system.
func Load(path string, opts ...Option) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, opts...)
}

// Parse validates a configuration and applies its defaults. name is the
// file name used in problems and File.Path, and its directory is the one
// relative plugin paths are resolved against. An invalid configuration
// gives an *Errors listing every problem, sorted by line.
func Parse(name string, data []byte, opts ...Option) (*File, error) {
	if name == "" {
		name = "<config>"
	}
	d := newDecoder(name, newOptions(opts))
	root, ok := d.parseYAML(data)
	if !ok {
		return nil, d.problems.err()
	}
	f := defaultFile()
	f.Path = name
	d.file(root, &f)
	for i := range f.Pipelines {
		f.Pipelines[i].applyDefaults()
	}
	d.validate(&f)
	if err := d.problems.err(); err != nil {
		return nil, err
	}
	f.Warnings = d.warnings
	return &f, nil
}

// Pipeline returns the pipeline called name.
func (f *File) Pipeline(name string) (*Pipeline, bool) {
	for i := range f.Pipelines {
		if f.Pipelines[i].Name == name {
			return &f.Pipelines[i], true
		}
	}
	return nil, false
}

// yamlLine finds the line in a YAML syntax error ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// unknownAnchor is the one syntax error yaml reports without a line.
var unknownAnchor = regexp.MustCompile(`unknown anchor '([^']*)' referenced`)

// parserErrors are the messages of yaml's parser (as opposed to its
// scanner), whose line numbers it reports 0-based, leaving the line out
// when it is 0.
var parserErrors = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// parseYAML parses the single document in data. It returns a nil root for
// an empty document, and false when data is not a YAML mapping.
func (d *decoder) parseYAML(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		d.syntaxError(err, data)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			d.syntaxError(err, data)
		} else {
			d.problems.add(&extra, "", "a config file holds one YAML document; remove the second ---")
		}
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return nil, true
	}
	if root.Kind != yaml.MappingNode {
		d.problems.add(root, "", "must be a mapping with version and pipelines, not "+describe(root))
		return nil, false
	}
	return root, true
}

// syntaxError records a YAML syntax error, at its line when it has one.
func (d *decoder) syntaxError(err error, data []byte) {
	fe := &FieldError{File: d.problems.file, Msg: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "invalid YAML: " + m[2]
		if slices.Contains(parserErrors, m[2]) {
			fe.Line++
		}
	}
	lines := bytes.Split(data, []byte("\n"))
	if m := unknownAnchor.FindStringSubmatch(fe.Msg); m != nil && fe.Line == 0 {
		fe.Line = 1 + slices.IndexFunc(lines, func(l []byte) bool { return bytes.Contains(l, []byte("*"+m[1])) })
	}
	if fe.Line > 0 && fe.Line <= len(lines) && bytes.Contains(lines[fe.Line-1], []byte("${")) {
		// In { } and [ ], a } ends a plain scalar: ${VAR} needs quotes.
		fe.Msg += ` (inside { } or [ ], quote values that use ${VAR}: "${VAR}")`
	}
	d.problems.list = append(d.problems.list, fe)
}

// resolvePath makes a plugin path absolute against the config file's dir.
func resolvePath(dir, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
