package config

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a configuration file: where it is and what
// is wrong. Its Error is one line shaped like
//
//	weir.yaml:14: pipelines[1].batch.max_wait: "fast" is not a duration
type FieldError struct {
	// File is the name given to Load or Parse.
	File string
	// Line and Col are 1-based positions of the offending node (for a
	// missing field, of the mapping that lacks it). Line is 0 when the
	// problem has no position.
	Line, Col int
	// Path is the field path, like pipelines[1].batch.max_wait; "" when
	// the problem concerns the document as a whole (a YAML syntax error).
	Path string
	// Msg says what is wrong, without the position and path.
	Msg string
}

// Error formats the problem as "file:line: path: msg".
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file, sorted by line.
// Load and Parse return it as a *Errors whenever the file could be read but
// is not a valid configuration; find it with errors.As. errors.As also
// finds the first *FieldError through it.
type Errors struct {
	Problems []*FieldError
}

// Error returns one line per problem.
func (e *Errors) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so errors.As and errors.Is see each of them.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problems collects the problems of one file. It keeps the first problem
// reported at a path and drops later ones at that path or below it, so one
// mistake is reported once and not again by every check that depends on it.
type problems struct {
	file     string
	list     []*FieldError
	reported map[string]bool
}

// add records a problem at node n (nil: line 1) unless one was already
// reported at path or above it.
func (ps *problems) add(n *yaml.Node, path, msg string) {
	if ps.suppressed(path) {
		return
	}
	if path != "" {
		ps.reported[path] = true
	}
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	ps.list = append(ps.list, &FieldError{File: ps.file, Line: line, Col: col, Path: path, Msg: msg})
}

func (ps *problems) suppressed(path string) bool {
	for p := path; p != ""; p = parentPath(p) {
		if ps.reported[p] {
			return true
		}
	}
	return false
}

// err returns the problems sorted by position as an *Errors, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	sort.SliceStable(ps.list, func(i, j int) bool {
		a, b := ps.list[i], ps.list[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return &Errors{Problems: ps.list}
}

// joinPath appends a mapping key to a field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a field path.
func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// parentPath strips the last key or index of a field path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
