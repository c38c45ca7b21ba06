package config

import (
	"fmt"
	"regexp"
	"strings"
)

// envName is what ${...} may name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv expands ${VAR} and ${VAR:-default} in s and turns $$ into $.
// ${VAR:-default} takes default when VAR is unset or empty; ${VAR} with VAR
// unset is an error naming VAR. A default ends at the first }. Any other $
// is kept as is.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q has a ${ without its closing }; write $$ for a literal $", s)
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !envName.MatchString(name) {
				return "", fmt.Errorf("${%s}: %q is not a variable name; write $$ for a literal $", expr, name)
			}
			v, ok := lookup(name)
			switch {
			case ok && (v != "" || !hasDef):
				b.WriteString(v)
			case hasDef:
				b.WriteString(def)
			default:
				missing = append(missing, name)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	if len(missing) > 0 {
		return "", missingEnv(missing)
	}
	return b.String(), nil
}

func missingEnv(names []string) error {
	if len(names) == 1 {
		return fmt.Errorf("environment variable %s is not set; set it or write ${%s:-default}", names[0], names[0])
	}
	return fmt.Errorf("environment variables %s are not set", strings.Join(names, ", "))
}
