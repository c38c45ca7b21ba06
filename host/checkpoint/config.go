package checkpoint

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how records get their idempotency keys (YAML: idempotency.key).
type Mode string

const (
	// ModePosition (the default) keys a record by its pipeline, stream,
	// partition and position. It catches redelivery (a crash between the
	// outcome and the source commit), not duplicates sent by producers.
	ModePosition Mode = "position"
	// ModeTemplate keys a record by a field of it (Config.Template), so that
	// a record sent twice by its producer is handled once.
	ModeTemplate Mode = "template"
	// ModeOff keeps no marks: Claim reports every record claimable and
	// MarkDone and Release do nothing. Checkpoints still go to Redis when
	// Config names a server, and do nothing when it does not.
	ModeOff Mode = "off"
)

// Defaults of Config.
const (
	DefaultTTL      = 24 * time.Hour
	DefaultClaimTTL = 2 * time.Minute
	DefaultTimeout  = 3 * time.Second
)

// Config configures a Store. The zero value is not valid: Pipeline and a
// server (Addr, SentinelAddrs or ClusterAddrs) are required, except that
// ModeOff needs no server. New applies the defaults and validates it once.
type Config struct {
	// Addr is the host:port of a single Redis server. Exactly one of Addr,
	// SentinelAddrs and ClusterAddrs is set.
	Addr string
	// Username is the Redis ACL user; empty for the default user.
	Username string
	// Password authenticates Username. It never appears in an error, a log
	// line or the String of a Config.
	Password string
	// DB is the database number; not allowed with ClusterAddrs.
	DB int
	// TLS, when set, connects with TLS using this configuration.
	TLS *tls.Config

	// SentinelMaster and SentinelAddrs (host:port of the sentinels) connect
	// to the master that Redis Sentinel names, following failovers.
	SentinelMaster string
	SentinelAddrs  []string
	// ClusterAddrs (host:port of some nodes) connects to a Redis Cluster.
	// Every key of one pipeline carries the hash tag {Pipeline}, so a
	// pipeline's marks and checkpoints live in one slot and every call is a
	// single-slot script.
	ClusterAddrs []string

	// KeyPrefix is put before every key (YAML: redis.key_prefix, whose
	// default is "weir:"); empty means none. It must not contain '{' or
	// '}', which would change the cluster hash tag.
	KeyPrefix string
	// Pipeline is the pipeline's name; required. It is part of every key.
	Pipeline string

	// Mode is how records get their idempotency keys; default ModePosition.
	Mode Mode
	// Template is the idempotency key template of ModeTemplate (see
	// ParseTemplate); required with ModeTemplate, and only allowed with it.
	Template string
	// TTL is how long a done mark is kept (YAML: idempotency.ttl); default
	// 24h. A duplicate arriving later than this is handled again.
	TTL time.Duration
	// ClaimTTL is how long a claim of ModeTemplate holds a key that is
	// neither marked done nor released, e.g. because its owner crashed;
	// default 2m. It must exceed the time a batch takes from Claim to
	// MarkDone (handler timeout plus sink writes), and not exceed TTL.
	ClaimTTL time.Duration
	// Timeout bounds dialing and each socket read and write when the
	// caller's context has no earlier deadline; default 3s.
	Timeout time.Duration

	// hooks are added to the client before it first dials; for tests that
	// count round trips and bytes.
	hooks []redis.Hook
}

// String describes the configuration with the password redacted, so that
// a Config printed with %v or %+v leaks no secret.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("checkpoint.Config{")
	field := func(name, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s:%s ", name, v)
		}
	}
	field("Addr", c.Addr)
	field("Username", c.Username)
	if c.Password != "" {
		field("Password", "[redacted]")
	}
	if c.DB != 0 {
		field("DB", fmt.Sprint(c.DB))
	}
	if c.TLS != nil {
		field("TLS", "on")
	}
	field("SentinelMaster", c.SentinelMaster)
	if len(c.SentinelAddrs) > 0 {
		field("SentinelAddrs", strings.Join(c.SentinelAddrs, ","))
	}
	if len(c.ClusterAddrs) > 0 {
		field("ClusterAddrs", strings.Join(c.ClusterAddrs, ","))
	}
	field("KeyPrefix", fmt.Sprintf("%q", c.KeyPrefix))
	field("Pipeline", c.Pipeline)
	field("Mode", string(c.Mode))
	field("Template", c.Template)
	if c.TTL != 0 {
		field("TTL", c.TTL.String())
	}
	if c.ClaimTTL != 0 {
		field("ClaimTTL", c.ClaimTTL.String())
	}
	if c.Timeout != 0 {
		field("Timeout", c.Timeout.String())
	}
	return strings.TrimSuffix(b.String(), " ") + "}"
}

// GoString is String, so that %#v redacts the password too.
func (c Config) GoString() string { return c.String() }

// withDefaults returns c with every unset option at its default.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModePosition
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.ClaimTTL == 0 {
		c.ClaimTTL = min(DefaultClaimTTL, c.TTL)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// hasServer reports whether c names a Redis server of any kind.
func (c Config) hasServer() bool {
	return c.Addr != "" || len(c.SentinelAddrs) > 0 || len(c.ClusterAddrs) > 0
}

// validate checks a defaulted Config and returns every problem at once,
// each naming its option.
func (c Config) validate() error {
	var errs []error
	bad := func(option, format string, args ...any) {
		errs = append(errs, fmt.Errorf("Config.%s: "+format, append([]any{option}, args...)...))
	}

	if c.Pipeline == "" {
		bad("Pipeline", "is required")
	} else if i := strings.IndexFunc(c.Pipeline, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		bad("Pipeline", "%q has %q; allowed: a-z 0-9 . _ -", c.Pipeline, c.Pipeline[i:i+1])
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		bad("KeyPrefix", "%q must not contain '{' or '}' (the pipeline is the cluster hash tag)", c.KeyPrefix)
	}

	switch c.Mode {
	case ModePosition, ModeOff:
		if c.Template != "" {
			bad("Template", "is only allowed with Mode %q, not %q", ModeTemplate, c.Mode)
		}
	case ModeTemplate:
		if c.Template == "" {
			bad("Template", "is required with Mode %q", ModeTemplate)
		} else if _, err := ParseTemplate(c.Template); err != nil {
			bad("Template", "%v", err)
		}
	default:
		bad("Mode", "%q is not a mode; allowed: %s, %s, %s", c.Mode, ModePosition, ModeTemplate, ModeOff)
	}

	servers := 0
	for _, set := range []bool{c.Addr != "", len(c.SentinelAddrs) > 0, len(c.ClusterAddrs) > 0} {
		if set {
			servers++
		}
	}
	switch {
	case servers == 0 && c.Mode != ModeOff:
		bad("Addr", "is required (or SentinelAddrs, or ClusterAddrs) with Mode %q", c.Mode)
	case servers > 1:
		bad("Addr", "set only one of Addr, SentinelAddrs and ClusterAddrs")
	}
	if (c.SentinelMaster != "") != (len(c.SentinelAddrs) > 0) {
		bad("SentinelMaster", "SentinelMaster and SentinelAddrs go together")
	}
	if len(c.ClusterAddrs) > 0 && c.DB != 0 {
		bad("DB", "must be 0 with ClusterAddrs (a cluster has one database), got %d", c.DB)
	}
	if c.DB < 0 {
		bad("DB", "must not be negative, got %d", c.DB)
	}
	for _, o := range []struct {
		name  string
		addrs []string
	}{{"Addr", []string{c.Addr}}, {"SentinelAddrs", c.SentinelAddrs}, {"ClusterAddrs", c.ClusterAddrs}} {
		for _, a := range o.addrs {
			if a != "" && !strings.Contains(a, ":") {
				bad(o.name, "%q is not host:port", a)
			}
		}
	}

	if c.TTL < time.Millisecond {
		bad("TTL", "must be at least 1ms, got %s", c.TTL)
	}
	if c.ClaimTTL < time.Millisecond {
		bad("ClaimTTL", "must be at least 1ms, got %s", c.ClaimTTL)
	} else if c.ClaimTTL > c.TTL {
		bad("ClaimTTL", "%s must not exceed TTL %s", c.ClaimTTL, c.TTL)
	}
	if c.Timeout < 0 {
		bad("Timeout", "must not be negative, got %s", c.Timeout)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("checkpoint: invalid config: %w", errors.Join(errs...))
}
