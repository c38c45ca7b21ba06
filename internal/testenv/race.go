//go:build race

package testenv

// RaceEnabled reports whether the binary was built with -race (which
// multiplies the memory every process of it uses, plugins re-executed from
// a test binary included).
const RaceEnabled = true
