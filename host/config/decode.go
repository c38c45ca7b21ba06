package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a YAML node tree into the types of this package and then
// validates the result, recording a problem for everything wrong.
type decoder struct {
	opts     options
	dir      string // relative plugin paths are resolved against it
	problems problems
	// warnings become File.Warnings.
	warnings []*FieldError
	// at holds, for each field path seen, where it is and whether it
	// has a non-null value; validation looks positions up here.
	at map[string]field
	// expanded caches the env-expanded form of each scalar node (nil: it
	// could not be expanded), so an aliased node is expanded only once.
	expanded map[*yaml.Node]*yaml.Node
}

type field struct {
	pos *yaml.Node
	set bool
}

func newDecoder(name string, o options) *decoder {
	return &decoder{
		opts:     o,
		dir:      filepath.Dir(name),
		problems: problems{file: name, reported: map[string]bool{}},
		at:       map[string]field{},
		expanded: map[*yaml.Node]*yaml.Node{},
	}
}

// errorf records a problem at node n.
func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.problems.add(n, path, fmt.Sprintf(format, args...))
}

// errorAt records a problem at the recorded position of path, or of its
// nearest ancestor when path is absent from the file.
func (d *decoder) errorAt(path, format string, args ...any) {
	d.errorf(d.pos(path), path, format, args...)
}

func (d *decoder) pos(path string) *yaml.Node {
	for p := path; ; p = parentPath(p) {
		if f, ok := d.at[p]; ok {
			return f.pos
		}
		if p == "" {
			return nil
		}
	}
}

// has reports whether path is in the file with a non-null value.
func (d *decoder) has(path string) bool { return d.at[path].set }

// mark records where path is: at the value for a scalar, else at the key
// (a block mapping or list starts on the line after its key).
func (d *decoder) mark(path string, key, val *yaml.Node) {
	pos := val
	if key != nil && resolve(val).Kind != yaml.ScalarNode {
		pos = key
	}
	d.at[path] = field{pos: pos, set: !isNull(resolve(val))}
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for messages like `must be a list, not "a"`.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// --- structure ---

type pair struct{ key, val *yaml.Node }

// entries calls fn for each key of mapping n, in order. A null n is an
// empty mapping; anything else that is not a mapping is a problem.
func (d *decoder) entries(n *yaml.Node, path string, fn func(key, val *yaml.Node, path string)) {
	m := resolve(n)
	if isNull(m) {
		return
	}
	if m.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping, not %s", describe(m))
		return
	}
	for _, kv := range d.pairs(m, path) {
		p := joinPath(path, kv.key.Value)
		d.mark(p, kv.key, kv.val)
		fn(kv.key, kv.val, p)
	}
}

// pairs lists the keys of mapping n with merge keys (<<) applied: a key
// set in n wins over a merged one, an earlier merged mapping over a later
// one. A key set twice in n is a problem.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	return d.mergedPairs(n, path, map[*yaml.Node]bool{n: true})
}

// mergedPairs is pairs with merged, the mappings already merged into the
// mapping being listed: merging one again adds nothing (its keys are
// already there, and the earlier ones win), so each is walked once. Without
// that, a chain of mappings each merging the previous one twice costs 2^n
// (a "merge bomb" of a few hundred bytes), and a mapping merging itself
// through an alias would never end.
func (d *decoder) mergedPairs(n *yaml.Node, path string, seen map[*yaml.Node]bool) []pair {
	var own, merged []pair
	line := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, path, "keys must be strings, not %s", describe(k))
		case k.Value == "<<" && k.ShortTag() == "!!merge":
			merged = append(merged, d.mergeSources(v, path, seen)...)
		case line[k.Value] != 0:
			d.errorf(k, joinPath(path, k.Value), "set twice; first at line %d", line[k.Value])
		default:
			line[k.Value] = k.Line
			own = append(own, pair{k, v})
		}
	}
	for _, kv := range merged {
		if line[kv.key.Value] == 0 {
			line[kv.key.Value] = kv.key.Line
			own = append(own, kv)
		}
	}
	return own
}

func (d *decoder) mergeSources(v *yaml.Node, path string, seen map[*yaml.Node]bool) []pair {
	m := resolve(v)
	if m.Kind == yaml.MappingNode {
		if seen[m] {
			return nil
		}
		seen[m] = true
		return d.mergedPairs(m, path, seen)
	}
	if m.Kind == yaml.SequenceNode {
		if seen[m] {
			return nil
		}
		seen[m] = true
		var out []pair
		for _, item := range m.Content {
			out = append(out, d.mergeSources(item, path, seen)...)
		}
		return out
	}
	d.errorf(v, path, "<< must merge a mapping or a list of mappings, not %s", describe(m))
	return nil
}

// fields maps each known key of a mapping to the decoder of its value.
type fields map[string]func(val *yaml.Node, path string)

// object decodes mapping n key by key; an unknown key is a problem.
func (d *decoder) object(n *yaml.Node, path string, fs fields) {
	d.entries(n, path, func(key, val *yaml.Node, p string) {
		if fn, ok := fs[key.Value]; ok {
			fn(val, p)
			return
		}
		d.errorf(key, p, "%s", unknownField(key.Value, fs))
	})
}

func unknownField(name string, fs fields) string {
	if len(fs) == 0 {
		return "unknown field; this mapping takes no fields"
	}
	known := make([]string, 0, len(fs))
	for k := range fs {
		known = append(known, k)
	}
	sort.Strings(known)
	best, dist := "", 3 // suggest a key at most 2 edits away
	for _, k := range known {
		if e := editDistance(name, k); e < dist && e < len(name) {
			best, dist = k, e
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field; did you mean %s?", best)
	}
	return "unknown field; expected one of: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// list calls fn for each item of list n. A null n is an empty list.
func (d *decoder) list(n *yaml.Node, path string, fn func(item *yaml.Node, path string)) {
	m := resolve(n)
	if isNull(m) {
		return
	}
	if m.Kind != yaml.SequenceNode {
		d.errorf(n, path, "must be a list, not %s", describe(m))
		return
	}
	for i, item := range m.Content {
		p := indexPath(path, i)
		d.mark(p, nil, item)
		fn(item, p)
	}
}

// --- scalars ---

// scalar returns scalar n with ${VAR} expanded, ready to interpret. It
// returns false for a null n (leaving the field at its default) and for a
// problem, which it records; want names the expected type ("an integer").
func (d *decoder) scalar(n *yaml.Node, path, want string) (*yaml.Node, bool) {
	m := resolve(n)
	if isNull(m) {
		return nil, false
	}
	if m.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be %s, not %s", want, describe(m))
		return nil, false
	}
	return d.expand(m, n, path)
}

// expand expands ${VAR} in scalar m, reporting a problem at n. A value
// that changed becomes a new plain scalar, so its type is resolved from
// the expanded text: ${N:-500} is an integer.
func (d *decoder) expand(m, n *yaml.Node, path string) (*yaml.Node, bool) {
	if !strings.Contains(m.Value, "$") {
		return m, true
	}
	if x, done := d.expanded[m]; done {
		return x, x != nil
	}
	v, err := expandEnv(m.Value, d.opts.lookupEnv)
	if err != nil {
		d.errorf(n, path, "%v", err)
		d.expanded[m] = nil
		return nil, false
	}
	x := m
	if v != m.Value {
		x = &yaml.Node{Kind: yaml.ScalarNode, Value: v, Line: m.Line, Column: m.Column}
	}
	d.expanded[m] = x
	return x, true
}

func (d *decoder) str(n *yaml.Node, path string, dst *string) {
	if m, ok := d.scalar(n, path, "a string"); ok {
		*dst = m.Value
	}
}

func (d *decoder) int(n *yaml.Node, path string, dst *int) {
	m, ok := d.scalar(n, path, "an integer")
	if !ok {
		return
	}
	if m.ShortTag() != "!!int" {
		d.errorf(n, path, "%q is not an integer", m.Value)
		return
	}
	if err := m.Decode(dst); err != nil {
		d.errorf(n, path, "%s is out of range", m.Value)
	}
}

func (d *decoder) float(n *yaml.Node, path string, dst *float64) {
	m, ok := d.scalar(n, path, "a number")
	if !ok {
		return
	}
	if t := m.ShortTag(); t != "!!float" && t != "!!int" {
		d.errorf(n, path, "%q is not a number", m.Value)
		return
	}
	if err := m.Decode(dst); err != nil {
		d.errorf(n, path, "%q is not a number", m.Value)
	}
}

func (d *decoder) bool(n *yaml.Node, path string, dst *bool) {
	m, ok := d.scalar(n, path, "true or false")
	if !ok {
		return
	}
	if m.ShortTag() != "!!bool" {
		d.errorf(n, path, "%q is not true or false", m.Value)
		return
	}
	if err := m.Decode(dst); err != nil {
		d.errorf(n, path, "%q is not true or false", m.Value)
	}
}

func (d *decoder) duration(n *yaml.Node, path string, dst *time.Duration) {
	m, ok := d.scalar(n, path, "a duration")
	if !ok {
		return
	}
	if t := m.ShortTag(); t == "!!int" || t == "!!float" {
		d.errorf(n, path, "%s is not a duration; write e.g. 50ms", m.Value)
		return
	}
	v, err := time.ParseDuration(m.Value)
	if err != nil {
		d.errorf(n, path, "%q is not a duration", m.Value)
		return
	}
	*dst = v
}

func (d *decoder) size(n *yaml.Node, path string, dst *int64) {
	m, ok := d.scalar(n, path, "a size")
	if !ok {
		return
	}
	if m.ShortTag() == "!!int" {
		if err := m.Decode(dst); err != nil {
			d.errorf(n, path, "%s is out of range", m.Value)
		}
		return
	}
	v, err := parseSize(m.Value)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	*dst = v
}

// secret decodes a password. It must come from the environment: a
// non-empty value written in the file itself (no ${VAR} in it) is a
// problem, so that secrets stay out of config files, which get committed,
// copied and printed. The value is never put in a problem's message.
func (d *decoder) secret(n *yaml.Node, path string, dst *string) {
	m := resolve(n)
	if m != nil && m.Kind == yaml.ScalarNode && !isNull(m) && m.Value != "" && !strings.Contains(m.Value, "${") {
		d.errorf(n, path, "a password must not be written in the config file; write ${VAR} to take it from the environment, or use password_file")
		return
	}
	d.str(n, path, dst)
}

func (d *decoder) strs(n *yaml.Node, path string, dst *[]string) {
	out := []string{}
	d.list(n, path, func(item *yaml.Node, p string) {
		var s string
		d.str(item, p, &s)
		out = append(out, s)
	})
	*dst = out
}

func (d *decoder) strMap(n *yaml.Node, path string, dst *map[string]string) {
	out := map[string]string{}
	d.entries(n, path, func(key, val *yaml.Node, p string) {
		var s string
		d.str(val, p, &s)
		out[key.Value] = s
	})
	*dst = out
}

func (d *decoder) start(n *yaml.Node, path string, dst *Start) {
	m, ok := d.scalar(n, path, "earliest, latest or a time")
	if !ok {
		return
	}
	switch v := m.Value; v {
	case string(StartEarliest), string(StartLatest):
		*dst = Start{Kind: StartKind(v)}
	default:
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			d.errorf(n, path, "%q is not earliest, latest or an RFC 3339 time like 2025-01-31T00:00:00Z", v)
			return
		}
		*dst = Start{Kind: StartTime, Time: t}
	}
}

// --- schema ---

func (d *decoder) file(root *yaml.Node, f *File) {
	d.at[""] = field{pos: root, set: root != nil}
	d.object(root, "", fields{
		"version": func(v *yaml.Node, p string) { d.int(v, p, &f.Version) },
		"kafka":   func(v *yaml.Node, p string) { d.kafka(v, p, &f.Kafka) },
		"redis":   func(v *yaml.Node, p string) { d.redis(v, p, &f.Redis) },
		"admin": func(v *yaml.Node, p string) {
			d.object(v, p, fields{
				"addr":         func(v *yaml.Node, p string) { d.str(v, p, &f.Admin.Addr) },
				"lag_interval": func(v *yaml.Node, p string) { d.duration(v, p, &f.Admin.LagInterval) },
			})
		},
		"pipelines": func(v *yaml.Node, p string) {
			d.list(v, p, func(item *yaml.Node, p string) {
				pl := Defaults()
				d.pipeline(item, p, &pl)
				f.Pipelines = append(f.Pipelines, pl)
			})
		},
	})
}

func (d *decoder) kafka(n *yaml.Node, path string, k *Kafka) {
	d.object(n, path, fields{
		"brokers":            func(v *yaml.Node, p string) { d.strs(v, p, &k.Brokers) },
		"client_id":          func(v *yaml.Node, p string) { d.str(v, p, &k.ClientID) },
		"session_timeout":    func(v *yaml.Node, p string) { d.duration(v, p, &k.SessionTimeout) },
		"heartbeat_interval": func(v *yaml.Node, p string) { d.duration(v, p, &k.HeartbeatInterval) },
		"fetch_max_wait":     func(v *yaml.Node, p string) { d.duration(v, p, &k.FetchMaxWait) },
		"tls": func(v *yaml.Node, p string) {
			if isNull(resolve(v)) {
				return
			}
			t := &KafkaTLS{}
			k.TLS = t
			d.object(v, p, fields{
				"ca_file":              func(v *yaml.Node, p string) { d.str(v, p, &t.CAFile) },
				"cert_file":            func(v *yaml.Node, p string) { d.str(v, p, &t.CertFile) },
				"key_file":             func(v *yaml.Node, p string) { d.str(v, p, &t.KeyFile) },
				"server_name":          func(v *yaml.Node, p string) { d.str(v, p, &t.ServerName) },
				"insecure_skip_verify": func(v *yaml.Node, p string) { d.bool(v, p, &t.InsecureSkipVerify) },
			})
		},
		"sasl": func(v *yaml.Node, p string) {
			if isNull(resolve(v)) {
				return
			}
			s := &KafkaSASL{}
			k.SASL = s
			d.object(v, p, fields{
				"mechanism":     func(v *yaml.Node, p string) { d.str(v, p, &s.Mechanism) },
				"username":      func(v *yaml.Node, p string) { d.str(v, p, &s.Username) },
				"password":      func(v *yaml.Node, p string) { d.secret(v, p, &s.Password) },
				"password_file": func(v *yaml.Node, p string) { d.str(v, p, &s.PasswordFile) },
			})
		},
	})
}

func (d *decoder) redis(n *yaml.Node, path string, r *Redis) {
	d.object(n, path, fields{
		"addr":            func(v *yaml.Node, p string) { d.str(v, p, &r.Addr) },
		"username":        func(v *yaml.Node, p string) { d.str(v, p, &r.Username) },
		"password":        func(v *yaml.Node, p string) { d.secret(v, p, &r.Password) },
		"password_file":   func(v *yaml.Node, p string) { d.str(v, p, &r.PasswordFile) },
		"ca_file":         func(v *yaml.Node, p string) { d.str(v, p, &r.CAFile) },
		"db":              func(v *yaml.Node, p string) { d.int(v, p, &r.DB) },
		"key_prefix":      func(v *yaml.Node, p string) { d.str(v, p, &r.KeyPrefix) },
		"tls":             func(v *yaml.Node, p string) { d.bool(v, p, &r.TLS) },
		"sentinel_master": func(v *yaml.Node, p string) { d.str(v, p, &r.SentinelMaster) },
		"sentinel_addrs":  func(v *yaml.Node, p string) { d.strs(v, p, &r.SentinelAddrs) },
		"cluster_addrs":   func(v *yaml.Node, p string) { d.strs(v, p, &r.ClusterAddrs) },
	})
}

func (d *decoder) pipeline(n *yaml.Node, path string, pl *Pipeline) {
	d.object(n, path, fields{
		"name":    func(v *yaml.Node, p string) { d.str(v, p, &pl.Name) },
		"source":  func(v *yaml.Node, p string) { d.source(v, p, &pl.Source) },
		"batch":   func(v *yaml.Node, p string) { d.batch(v, p, &pl.Batch) },
		"handler": func(v *yaml.Node, p string) { d.handler(v, p, &pl.Handler) },
		"ordering": func(v *yaml.Node, p string) {
			d.str(v, p, (*string)(&pl.Ordering))
		},
		"delivery": func(v *yaml.Node, p string) {
			d.str(v, p, (*string)(&pl.Delivery))
		},
		"retry":   func(v *yaml.Node, p string) { d.retry(v, p, &pl.Retry) },
		"breaker": func(v *yaml.Node, p string) { d.breaker(v, p, &pl.Breaker) },
		"idempotency": func(v *yaml.Node, p string) {
			d.object(v, p, fields{
				"key":       func(v *yaml.Node, p string) { d.str(v, p, &pl.Idempotency.Key) },
				"ttl":       func(v *yaml.Node, p string) { d.duration(v, p, &pl.Idempotency.TTL) },
				"claim_ttl": func(v *yaml.Node, p string) { d.duration(v, p, &pl.Idempotency.ClaimTTL) },
			})
		},
		"sinks": func(v *yaml.Node, p string) { d.sinks(v, p, &pl.Sinks) },
		"dlq": func(v *yaml.Node, p string) {
			if !isNull(resolve(v)) {
				pl.DLQ = defaultDLQ()
				d.object(v, p, fields{
					"kafka":     d.kafkaSink(&pl.DLQ.Kafka),
					"kinesis":   d.kinesisSink(&pl.DLQ.Kinesis),
					"max_ratio": func(v *yaml.Node, p string) { d.float(v, p, &pl.DLQ.MaxRatio) },
					"window":    func(v *yaml.Node, p string) { d.int(v, p, &pl.DLQ.Window) },
				})
			}
		},
		"max_inflight_bytes": func(v *yaml.Node, p string) { d.size(v, p, &pl.MaxInflightBytes) },
		"shutdown_timeout":   func(v *yaml.Node, p string) { d.duration(v, p, &pl.ShutdownTimeout) },
		"commit_interval":    func(v *yaml.Node, p string) { d.duration(v, p, &pl.CommitInterval) },
	})
}

func (d *decoder) source(n *yaml.Node, path string, s *Source) {
	d.object(n, path, fields{
		"kafka": func(v *yaml.Node, p string) {
			k := defaultKafkaSource()
			s.Kafka = k
			d.object(v, p, fields{
				"topics": func(v *yaml.Node, p string) { d.strs(v, p, &k.Topics) },
				"group":  func(v *yaml.Node, p string) { d.str(v, p, &k.Group) },
				"start":  func(v *yaml.Node, p string) { d.start(v, p, &k.Start) },
			})
		},
		"kinesis": func(v *yaml.Node, p string) {
			k := defaultKinesisSource()
			s.Kinesis = k
			d.object(v, p, fields{
				"stream":               func(v *yaml.Node, p string) { d.str(v, p, &k.Stream) },
				"region":               func(v *yaml.Node, p string) { d.str(v, p, &k.Region) },
				"endpoint":             func(v *yaml.Node, p string) { d.str(v, p, &k.Endpoint) },
				"start":                func(v *yaml.Node, p string) { d.kinesisStart(v, p, &k.Start) },
				"poll_interval":        func(v *yaml.Node, p string) { d.duration(v, p, &k.PollInterval) },
				"max_records_per_call": func(v *yaml.Node, p string) { d.int(v, p, &k.MaxRecordsPerCall) },
				"shard_sync_interval":  func(v *yaml.Node, p string) { d.duration(v, p, &k.ShardSyncInterval) },
				"lease": func(v *yaml.Node, p string) {
					d.object(v, p, fields{
						"ttl":       func(v *yaml.Node, p string) { d.duration(v, p, &k.Lease.TTL) },
						"heartbeat": func(v *yaml.Node, p string) { d.duration(v, p, &k.Lease.Heartbeat) },
					})
				},
			})
		},
	})
}

// kinesisStart decodes trim_horizon | latest | an RFC 3339 time.
func (d *decoder) kinesisStart(n *yaml.Node, path string, dst *Start) {
	m, ok := d.scalar(n, path, "trim_horizon, latest or a time")
	if !ok {
		return
	}
	switch v := m.Value; v {
	case "trim_horizon":
		*dst = Start{Kind: StartEarliest}
	case "latest":
		*dst = Start{Kind: StartLatest}
	default:
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			d.errorf(n, path, "%q is not trim_horizon, latest or an RFC 3339 time like 2025-01-31T00:00:00Z", v)
			return
		}
		*dst = Start{Kind: StartTime, Time: t}
	}
}

func (d *decoder) batch(n *yaml.Node, path string, b *Batch) {
	d.object(n, path, fields{
		"max_records": func(v *yaml.Node, p string) { d.int(v, p, &b.MaxRecords) },
		"max_bytes":   func(v *yaml.Node, p string) { d.size(v, p, &b.MaxBytes) },
		"max_wait":    func(v *yaml.Node, p string) { d.duration(v, p, &b.MaxWait) },
	})
}

func (d *decoder) handler(n *yaml.Node, path string, h *Handler) {
	d.object(n, path, fields{
		"plugin":    func(v *yaml.Node, p string) { d.str(v, p, &h.Plugin) },
		"args":      func(v *yaml.Node, p string) { d.strs(v, p, &h.Args) },
		"dir":       func(v *yaml.Node, p string) { d.str(v, p, &h.Dir) },
		"env":       func(v *yaml.Node, p string) { d.strMap(v, p, &h.Env) },
		"outputs":   func(v *yaml.Node, p string) { d.strs(v, p, &h.Outputs) },
		"instances": func(v *yaml.Node, p string) { d.int(v, p, &h.Instances) },
		"timeout":   func(v *yaml.Node, p string) { d.duration(v, p, &h.Timeout) },

		// resource limits
		"memory_limit":    func(v *yaml.Node, p string) { d.size(v, p, &h.MemoryLimit) },
		"max_concurrency": func(v *yaml.Node, p string) { d.int(v, p, &h.MaxConcurrency) },
		"watch":           func(v *yaml.Node, p string) { d.duration(v, p, &h.Watch) },
		"sha256":          func(v *yaml.Node, p string) { d.str(v, p, &h.SHA256) },
		"mtls":            func(v *yaml.Node, p string) { d.str(v, p, &h.MTLS) },

		"max_output_bytes":       func(v *yaml.Node, p string) { d.size(v, p, &h.MaxOutputBytes) },
		"max_outputs_per_record": func(v *yaml.Node, p string) { d.int(v, p, &h.MaxOutputsPerRecord) },
		"max_reply_bytes":        func(v *yaml.Node, p string) { d.size(v, p, &h.MaxReplyBytes) },
	})
}

func (d *decoder) retry(n *yaml.Node, path string, r *Retry) {
	d.object(n, path, fields{
		"max_attempts":    func(v *yaml.Node, p string) { d.int(v, p, &r.MaxAttempts) },
		"initial_backoff": func(v *yaml.Node, p string) { d.duration(v, p, &r.InitialBackoff) },
		"max_backoff":     func(v *yaml.Node, p string) { d.duration(v, p, &r.MaxBackoff) },
		"bisect":          func(v *yaml.Node, p string) { d.bool(v, p, &r.Bisect) },
	})
}

func (d *decoder) breaker(n *yaml.Node, path string, b *Breaker) {
	d.object(n, path, fields{
		"failure_ratio": func(v *yaml.Node, p string) { d.float(v, p, &b.FailureRatio) },
		"min_requests":  func(v *yaml.Node, p string) { d.int(v, p, &b.MinRequests) },
		"open_for":      func(v *yaml.Node, p string) { d.duration(v, p, &b.OpenFor) },
		"interval":      func(v *yaml.Node, p string) { d.duration(v, p, &b.Interval) },
	})
}

func (d *decoder) sinks(n *yaml.Node, path string, dst *map[string]Sink) {
	out := map[string]Sink{}
	d.entries(n, path, func(key, val *yaml.Node, p string) {
		var s Sink
		d.object(val, p, fields{
			"kafka": d.kafkaSink(&s.Kafka),
			"stdout": func(v *yaml.Node, p string) {
				s.Stdout = &StdoutSink{}
				d.object(v, p, fields{})
			},
			"kinesis": d.kinesisSink(&s.Kinesis),
		})
		out[key.Value] = s
	})
	*dst = out
}

// kinesisSink returns the decoder of a kinesis sink ({stream: S}) into
// *dst.
func (d *decoder) kinesisSink(dst **KinesisSink) func(*yaml.Node, string) {
	return func(v *yaml.Node, p string) {
		k := &KinesisSink{}
		*dst = k
		d.object(v, p, fields{
			"stream":   func(v *yaml.Node, p string) { d.str(v, p, &k.Stream) },
			"region":   func(v *yaml.Node, p string) { d.str(v, p, &k.Region) },
			"endpoint": func(v *yaml.Node, p string) { d.str(v, p, &k.Endpoint) },
		})
	}
}

// kafkaSink returns the decoder of a kafka sink ({topic: T}) into *dst.
func (d *decoder) kafkaSink(dst **KafkaSink) func(*yaml.Node, string) {
	return func(v *yaml.Node, p string) {
		k := &KafkaSink{}
		*dst = k
		d.object(v, p, fields{
			"topic":   func(v *yaml.Node, p string) { d.str(v, p, &k.Topic) },
			"brokers": func(v *yaml.Node, p string) { d.strs(v, p, &k.Brokers) },
		})
	}
}
