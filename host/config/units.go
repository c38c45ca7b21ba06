package config

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// sizeUnits are the units a size may end with; longer suffixes first, so
// "KiB" is not read as "B".
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

var sizeNumber = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// parseSize reads a size in bytes: a plain integer, or a number followed
// by B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
// Units are case-sensitive. A fraction is allowed when the result is a
// whole number of bytes: 1.5MB, 0.5KiB.
func parseSize(s string) (int64, error) {
	num, unit := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, unit = strings.TrimSpace(n), u.bytes
			break
		}
	}
	r, ok := new(big.Rat).SetString(num)
	if !sizeNumber.MatchString(num) || !ok {
		return 0, fmt.Errorf("%q is not a size; write bytes or e.g. 512KiB, 1MiB, 1.5MB (units B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return r.Num().Int64(), nil
}

// formatSize writes n bytes in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		bytes  int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.bytes == 0 {
			return fmt.Sprintf("%d%s", n/u.bytes, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// ParseSize reads a size as the config does ("64MiB", "1.5MB", "1024"),
// for command-line flags that take one.
func ParseSize(s string) (int64, error) { return parseSize(s) }
