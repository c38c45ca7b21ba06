package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid file; bad cases below change one or two of
// its lines, so their line numbers are easy to check against it.
const minimal = `version: 1
kafka: {brokers: [embedded]}
pipelines:
  - name: p
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop"}
    sinks: {out: {kafka: {topic: out}}}
`

// problem is one expected problem: its line, its exact field path and a
// part of its message.
type problem struct {
	line int
	path string
	msg  string
}

// noEnv is an environment with nothing set, so tests do not depend on the
// environment they run in.
func noEnv(string) (string, bool) { return "", false }

func env(vars map[string]string) Option {
	return WithLookupEnv(func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	})
}

func parse(t *testing.T, src string, opts ...Option) (*File, error) {
	t.Helper()
	return Parse("weir.yaml", []byte(src), append([]Option{WithLookupEnv(noEnv)}, opts...)...)
}

func mustParse(t *testing.T, src string, opts ...Option) *File {
	t.Helper()
	f, err := parse(t, src, opts...)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return f
}

// problemsOf returns the problems in err, which must be an *Errors.
func problemsOf(t *testing.T, err error) []*FieldError {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T (%v), want *Errors", err, err)
	}
	return errs.Problems
}

// checkProblems asserts that err holds exactly the wanted problems, each
// in weir.yaml at its line and path.
func checkProblems(t *testing.T, err error, want []problem) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d problems", len(want))
	}
	got := problemsOf(t, err)
	matched := make([]bool, len(got))
	for _, w := range want {
		i := slices.IndexFunc(got, func(p *FieldError) bool {
			return p.File == "weir.yaml" && p.Line == w.line && p.Path == w.path && strings.Contains(p.Msg, w.msg)
		})
		if i < 0 {
			t.Errorf("missing problem weir.yaml:%d: %s: ...%s...", w.line, w.path, w.msg)
			continue
		}
		matched[i] = true
	}
	for i, p := range got {
		if !matched[i] {
			t.Errorf("unexpected problem %v", p)
		}
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts []Option
		want []problem
	}{
		{
			name: "version missing",
			src: `kafka: {brokers: [embedded]}
pipelines:
  - name: p
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop"}
    sinks: {out: {stdout: {}}}
`,
			want: []problem{{1, "version", "is required"}},
		},
		{
			name: "version 2",
			src:  strings.Replace(minimal, "version: 1", "version: 2", 1),
			want: []problem{{1, "version", "unsupported version 2"}},
		},
		{
			name: "version quoted is a string, not an int",
			src:  strings.Replace(minimal, "version: 1", `version: "1"`, 1),
			want: []problem{{1, "version", `"1" is not an integer`}},
		},
		{
			name: "empty file",
			src:  "",
			want: []problem{{1, "version", "is required"}, {1, "pipelines", "is required"}},
		},
		{
			name: "pipelines empty",
			src:  "version: 1\npipelines: []\n",
			want: []problem{{2, "pipelines", "must not be empty"}},
		},
		{
			name: "pipelines missing",
			src:  "version: 1\nkafka: {brokers: [embedded]}\n",
			want: []problem{{1, "pipelines", "is required"}},
		},
		{
			name: "duplicate pipeline names",
			src: minimal + `  - name: p
    source: {kafka: {topics: [in2]}}
    handler: {plugin: "builtin:noop"}
    sinks: {out: {stdout: {}}}
`,
			want: []problem{{8, "pipelines[1].name", `"p" is already the name of pipelines[0] (line 4)`}},
		},
		{
			name: "name missing",
			src:  strings.Replace(minimal, "  - name: p\n    source:", "  - source:", 1),
			want: []problem{{4, "pipelines[0].name", "is required"}},
		},
		{
			name: "name invalid",
			src:  strings.Replace(minimal, "name: p", "name: Iot Ingest", 1),
			want: []problem{{4, "pipelines[0].name", `"Iot Ingest" is not a valid name`}},
		},
		{
			name: "brokers empty while a pipeline uses kafka",
			src:  strings.Replace(minimal, "brokers: [embedded]", "brokers: []", 1),
			want: []problem{{2, "kafka.brokers", `must not be empty: pipeline "p" uses Kafka`}},
		},
		{
			name: "kafka section missing",
			src:  strings.Replace(minimal, "kafka: {brokers: [embedded]}\n", "", 1),
			want: []problem{{1, "kafka.brokers", "is required"}},
		},
		{
			name: "embedded mixed with brokers",
			src:  strings.Replace(minimal, "[embedded]", `[embedded, "k1:9092"]`, 1),
			want: []problem{{2, "kafka.brokers[0]", "embedded cannot be mixed"}},
		},
		{
			name: "source without kind",
			src:  strings.Replace(minimal, "{kafka: {topics: [in]}}", "{}", 1),
			want: []problem{{5, "pipelines[0].source", "set exactly one of: kafka"}},
		},
		{
			name: "source of unknown kind",
			src:  strings.Replace(minimal, "{kafka: {topics: [in]}}", "{pulsar: {topic: s}}", 1),
			want: []problem{
				{5, "pipelines[0].source.pulsar", "unknown field; expected one of: kafka, kinesis"},
				{5, "pipelines[0].source", "set exactly one of: kafka, kinesis"},
			},
		},
		{
			name: "kinesis source without redis",
			src:  strings.Replace(minimal, "{kafka: {topics: [in]}}", "{kinesis: {stream: s}}", 1),
			want: []problem{{5, "pipelines[0].source.kinesis", "needs the redis section"}},
		},
		{
			name: "kinesis source fields",
			src: "redis: {addr: embedded}\n" + strings.Replace(minimal, "    source: {kafka: {topics: [in]}}\n",
				"    source:\n      kinesis:\n        stream: arn:aws:kinesis:nowhere\n        endpoint: localhost:4567\n        start: earliest\n"+
					"        poll_interval: 10ms\n        max_records_per_call: 20000\n        lease: {ttl: 3s, heartbeat: 2s}\n", 1),
			want: []problem{
				{8, "pipelines[0].source.kinesis.stream", "is not a stream ARN"},
				{9, "pipelines[0].source.kinesis.endpoint", "is not an http(s) URL"},
				{10, "pipelines[0].source.kinesis.start", "is not trim_horizon, latest or an RFC 3339 time"},
				{11, "pipelines[0].source.kinesis.poll_interval", "at least 200ms"},
				{12, "pipelines[0].source.kinesis.max_records_per_call", "must be 1 to 10000"},
				{13, "pipelines[0].source.kinesis.lease.heartbeat", "at most a third of lease.ttl"},
			},
		},
		{
			name: "kinesis sink",
			src: "redis: {addr: embedded}\n" + strings.Replace(strings.Replace(minimal, "{kafka: {topics: [in]}}", "{kinesis: {stream: s}}", 1),
				"{out: {kafka: {topic: out}}}", "{out: {kinesis: {stream: s}}, bad: {kinesis: {stream: 'a b', endpoint: 'ftp://x'}}}", 1),
			want: []problem{
				{8, "pipelines[0].sinks.bad.kinesis.stream", "is not a valid stream name"},
				{8, "pipelines[0].sinks.bad.kinesis.endpoint", "is not an http(s) URL"},
				{8, "pipelines[0].sinks.out.kinesis.stream", "also the source stream"},
			},
		},
		{
			name: "kafka and kinesis sources at once",
			src:  "redis: {addr: embedded}\n" + strings.Replace(minimal, "{kafka: {topics: [in]}}", "{kafka: {topics: [in]}, kinesis: {stream: s}}", 1),
			want: []problem{{6, "pipelines[0].source", "set exactly one of: kafka, kinesis"}},
		},
		{
			name: "source missing",
			src:  strings.Replace(minimal, "    source: {kafka: {topics: [in]}}\n", "", 1),
			want: []problem{{4, "pipelines[0].source", "is required"}},
		},
		{
			name: "topics empty",
			src:  strings.Replace(minimal, "topics: [in]", "topics: []", 1),
			want: []problem{{5, "pipelines[0].source.kafka.topics", "must not be empty"}},
		},
		{
			name: "topics missing",
			src:  strings.Replace(minimal, "{topics: [in]}", "{group: g}", 1),
			want: []problem{{5, "pipelines[0].source.kafka.topics", "is required"}},
		},
		{
			name: "invalid topic names",
			src:  strings.Replace(minimal, "topics: [in]", `topics: [in, "bad topic", "..", in]`, 1),
			want: []problem{
				{5, "pipelines[0].source.kafka.topics[1]", `"bad topic" is not a valid topic name`},
				{5, "pipelines[0].source.kafka.topics[2]", `".." is not a valid topic name`},
				{5, "pipelines[0].source.kafka.topics[3]", `"in" is listed twice`},
			},
		},
		{
			name: "topic and stream names at their longest and past it",
			src: "redis: {addr: embedded}\n" + strings.Replace(strings.Replace(minimal, "topics: [in]", "topics: [in, "+strings.Repeat("t", 249)+", "+strings.Repeat("t", 250)+"]", 1),
				"{out: {kafka: {topic: out}}}", "{out: {kinesis: {stream: "+strings.Repeat("s", 128)+"}}, long: {kinesis: {stream: "+strings.Repeat("s", 129)+"}}, "+
					"arn: {kinesis: {stream: 'arn:aws:kinesis:us-east-1:123456789012:stream/"+strings.Repeat("s", 128)+"'}}, "+
					"longarn: {kinesis: {stream: 'arn:aws:kinesis:us-east-1:123456789012:stream/"+strings.Repeat("s", 129)+"'}}}", 1),
			want: []problem{
				{6, "pipelines[0].source.kafka.topics[2]", "is not a valid topic name; use at most 249"},
				{8, "pipelines[0].sinks.long.kinesis.stream", "is not a valid stream name; use 1 to 128"},
				{8, "pipelines[0].sinks.longarn.kinesis.stream", "is not a stream ARN"},
			},
		},
		{
			name: "bad start",
			src:  strings.Replace(minimal, "{topics: [in]}", "{topics: [in], start: yesterday}", 1),
			want: []problem{{5, "pipelines[0].source.kafka.start", `"yesterday" is not earliest, latest or an RFC 3339 time`}},
		},
		{
			name: "batch values not positive",
			src:  minimal + "    batch: {max_records: 0, max_bytes: 0, max_wait: 0s}\n",
			want: []problem{
				{8, "pipelines[0].batch.max_records", "must be at least 1, got 0"},
				{8, "pipelines[0].batch.max_bytes", "must be greater than 0, got 0"},
				{8, "pipelines[0].batch.max_wait", "must be greater than 0, got 0s"},
			},
		},
		{
			name: "max_wait not a duration",
			src:  minimal + "    batch: {max_wait: fast}\n",
			want: []problem{{8, "pipelines[0].batch.max_wait", `"fast" is not a duration`}},
		},
		{
			name: "max_wait a bare integer",
			src:  minimal + "    batch: {max_wait: 50}\n",
			want: []problem{{8, "pipelines[0].batch.max_wait", "50 is not a duration; write e.g. 50ms"}},
		},
		{
			name: "max_bytes not a size",
			src:  minimal + "    batch: {max_bytes: 1mb}\n    max_inflight_bytes: 1.3B\n",
			want: []problem{
				{8, "pipelines[0].batch.max_bytes", `"1mb" is not a size`},
				{9, "pipelines[0].max_inflight_bytes", `"1.3B" is not a whole number of bytes`},
			},
		},
		{
			name: "max_bytes over max_inflight_bytes",
			src:  minimal + "    batch: {max_bytes: 2MiB}\n    max_inflight_bytes: 1MiB\n",
			want: []problem{{8, "pipelines[0].batch.max_bytes", "2MiB is more than max_inflight_bytes (1MiB)"}},
		},
		{
			name: "default max_bytes over a small max_inflight_bytes",
			src:  minimal + "    max_inflight_bytes: 512KiB\n",
			want: []problem{{4, "pipelines[0].batch.max_bytes", "1MiB is more than max_inflight_bytes (512KiB)"}},
		},
		{
			name: "plugin missing",
			src:  strings.Replace(minimal, `{plugin: "builtin:noop"}`, "{instances: 1}", 1),
			want: []problem{{6, "pipelines[0].handler.plugin", "is required"}},
		},
		{
			name: "handler missing",
			src:  strings.Replace(minimal, "    handler: {plugin: \"builtin:noop\"}\n", "", 1),
			want: []problem{{4, "pipelines[0].handler.plugin", "is required"}},
		},
		{
			name: "unknown builtin",
			src:  minimal,
			opts: []Option{WithBuiltins("passthrough", "echo")},
			want: []problem{{6, "pipelines[0].handler.plugin", `unknown builtin "noop"; known: echo, passthrough`}},
		},
		{
			name: "builtin without a name",
			src:  strings.Replace(minimal, "builtin:noop", "builtin:", 1),
			want: []problem{{6, "pipelines[0].handler.plugin", "builtin: needs a name"}},
		},
		{
			name: "plugin file missing",
			src:  strings.Replace(minimal, `"builtin:noop"`, "./no/such/plugin", 1),
			want: []problem{{6, "pipelines[0].handler.plugin", `"./no/such/plugin" does not exist`}},
		},
		{
			name: "handler instances and timeout",
			src:  strings.Replace(minimal, `{plugin: "builtin:noop"}`, `{plugin: "builtin:noop", instances: 0, timeout: -1s}`, 1),
			want: []problem{
				{6, "pipelines[0].handler.instances", "must be at least 1, got 0"},
				{6, "pipelines[0].handler.timeout", "must be greater than 0, got -1s"},
			},
		},
		{
			name: "section set twice",
			src:  minimal + "    handler: {plugin: \"builtin:noop\", outputs: [nope]}\n",
			want: []problem{
				// Only the first handler counts, so its outputs are not checked.
				{8, "pipelines[0].handler", "set twice; first at line 6"},
			},
		},
		{
			name: "outputs name undeclared sinks",
			src: strings.Replace(strings.Replace(minimal, "{out: {kafka: {topic: out}}}", "{enriched: {kafka: {topic: out}}, console: {stdout: {}}}", 1),
				`{plugin: "builtin:noop"}`, `{plugin: "builtin:noop", outputs: [enriched, enriched2, enriched]}`, 1),
			want: []problem{
				{6, "pipelines[0].handler.outputs[1]", `"enriched2" is not a declared sink; declared: console, enriched`},
				{6, "pipelines[0].handler.outputs[2]", `"enriched" is listed twice`},
			},
		},
		{
			name: "env names",
			src:  strings.Replace(minimal, `{plugin: "builtin:noop"}`, `{plugin: "builtin:noop", env: {"1X": a, OK: b}}`, 1),
			want: []problem{{6, "pipelines[0].handler.env.1X", `"1X" is not a valid environment variable name`}},
		},
		{
			name: "ordering unknown",
			src:  minimal + "    ordering: fifo\n",
			want: []problem{{8, "pipelines[0].ordering", `"fifo" is not an ordering; allowed: partition, key, none`}},
		},
		{
			name: "delivery unknown",
			src:  minimal + "    delivery: twice\n",
			want: []problem{{8, "pipelines[0].delivery", `"twice" is not a delivery mode; allowed: at_least_once, exactly_once`}},
		},
		{
			name: "exactly_once with a stdout sink, another cluster and marks in redis",
			src: `version: 1
kafka: {brokers: [embedded]}
redis: {addr: "127.0.0.1:6379"}
pipelines:
  - name: p
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop"}
    delivery: exactly_once
    idempotency: {key: position}
    sinks: {out: {kafka: {topic: out, brokers: ["other:9092"]}}, console: {stdout: {}}}
    dlq: {kafka: {topic: dead, brokers: ["other:9092"]}}
`,
			want: []problem{
				{9, "pipelines[0].idempotency.key", "must be off with delivery: exactly_once"},
				{10, "pipelines[0].sinks.console", "exactly_once needs every sink to be kafka"},
				{10, "pipelines[0].sinks.out.kafka.brokers", "remove brokers"},
				{11, "pipelines[0].dlq.kafka.brokers", "remove brokers"},
			},
		},
		{
			name: "retry values",
			src:  minimal + "    retry: {max_attempts: 0, initial_backoff: 20s, max_backoff: 10s, bisect: yes}\n",
			want: []problem{
				{8, "pipelines[0].retry.max_attempts", "must be at least 1, got 0"},
				{8, "pipelines[0].retry.initial_backoff", "20s is more than max_backoff (10s)"},
				{8, "pipelines[0].retry.bisect", `"yes" is not true or false`},
			},
		},
		{
			name: "sinks empty",
			src:  strings.Replace(minimal, "{out: {kafka: {topic: out}}}", "{}", 1),
			want: []problem{{7, "pipelines[0].sinks", "must not be empty; declare at least one sink"}},
		},
		{
			name: "sinks missing",
			src:  strings.Replace(minimal, "    sinks: {out: {kafka: {topic: out}}}\n", "", 1),
			want: []problem{{4, "pipelines[0].sinks", "is required"}},
		},
		{
			name: "sink name and kinds",
			src:  strings.Replace(minimal, "{out: {kafka: {topic: out}}}", `{"bad name": {stdout: {}}, none: {}, both: {kafka: {topic: x}, stdout: {}}, noTopic: {kafka: {}}}`, 1),
			want: []problem{
				{7, "pipelines[0].sinks.bad name", `"bad name" is not a valid sink name`},
				{7, "pipelines[0].sinks.none", "set exactly one of: kafka, stdout"},
				{7, "pipelines[0].sinks.both", "set exactly one of: kafka, stdout"},
				{7, "pipelines[0].sinks.noTopic.kafka.topic", "is required"},
			},
		},
		{
			name: "stdout takes no fields",
			src:  strings.Replace(minimal, "{out: {kafka: {topic: out}}}", "{out: {stdout: {pretty: true}}}", 1),
			want: []problem{{7, "pipelines[0].sinks.out.stdout.pretty", "unknown field; this mapping takes no fields"}},
		},
		{
			name: "sink topic is a source topic",
			src:  strings.Replace(minimal, "{topic: out}", "{topic: in}", 1),
			want: []problem{{7, "pipelines[0].sinks.out.kafka.topic", `"in" is also a source topic of this pipeline`}},
		},
		{
			name: "dlq without kind",
			src:  minimal + "    dlq: {}\n",
			want: []problem{{8, "pipelines[0].dlq", "set exactly one of: kafka, kinesis"}},
		},
		{
			name: "dlq both kinds",
			src:  minimal + "    dlq: {kafka: {topic: dead}, kinesis: {stream: dead}}\n",
			want: []problem{{8, "pipelines[0].dlq", "set exactly one of: kafka, kinesis"}},
		},
		{
			name: "kinesis dlq fields",
			src: "redis: {addr: embedded}\n" + strings.Replace(minimal, "{kafka: {topics: [in]}}", "{kinesis: {stream: s}}", 1) +
				"    dlq:\n      kinesis:\n        stream: s\n        shards: 2\n",
			want: []problem{
				{12, "pipelines[0].dlq.kinesis.shards", "unknown field; expected one of: endpoint, region, stream"},
				{11, "pipelines[0].dlq.kinesis.stream", `"s" is also the source stream of this pipeline; dead letters would loop`},
			},
		},
		{
			name: "kinesis dlq endpoint",
			src:  minimal + "    dlq: {kinesis: {stream: 'a b', endpoint: localhost:4567}}\n",
			want: []problem{
				{8, "pipelines[0].dlq.kinesis.stream", "is not a valid stream name"},
				{8, "pipelines[0].dlq.kinesis.endpoint", "is not an http(s) URL"},
			},
		},
		{
			name: "kinesis dlq under exactly_once",
			src:  minimal + "    delivery: exactly_once\n    idempotency: {key: \"off\"}\n    dlq: {kinesis: {stream: dead}}\n",
			want: []problem{{10, "pipelines[0].dlq.kinesis", "exactly_once writes dead letters in the Kafka transaction; use dlq.kafka"}},
		},
		{
			name: "kinesis dlq without stream",
			src:  minimal + "    dlq: {kinesis: {region: eu-west-1}}\n",
			want: []problem{{8, "pipelines[0].dlq.kinesis.stream", "is required"}},
		},
		{
			name: "dlq topic is a source topic",
			src:  minimal + "    dlq: {kafka: {topic: in}}\n",
			want: []problem{{8, "pipelines[0].dlq.kafka.topic", `"in" is also a source topic of this pipeline; dead letters would loop`}},
		},
		{
			name: "shutdown_timeout and max_inflight_bytes",
			src:  minimal + "    shutdown_timeout: 0s\n    max_inflight_bytes: -1\n",
			want: []problem{
				{8, "pipelines[0].shutdown_timeout", "must be greater than 0"},
				{9, "pipelines[0].max_inflight_bytes", "must be greater than 0, got -1"},
			},
		},
		{
			name: "unknown fields",
			src:  minimal + "    batch: {max_wiat: 5ms}\n    handlr: {}\nextra: 1\n",
			want: []problem{
				{8, "pipelines[0].batch.max_wiat", "unknown field; did you mean max_wait?"},
				{9, "pipelines[0].handlr", "unknown field; did you mean handler?"},
				{10, "extra", "unknown field; expected one of: admin, kafka, pipelines, redis, version"},
			},
		},
		{
			name: "wrong YAML types",
			src: `version: 1
kafka: {brokers: embedded}
pipelines:
  - name: [p]
    source: {kafka: {topics: {a: b}}}
    handler: {plugin: "builtin:noop", instances: two, args: {a: b}}
    batch: [1]
    sinks: {out: [stdout]}
`,
			want: []problem{
				{2, "kafka.brokers", `must be a list, not "embedded"`},
				{4, "pipelines[0].name", "must be a string, not a list"},
				{5, "pipelines[0].source.kafka.topics", "must be a list, not a mapping"},
				{6, "pipelines[0].handler.instances", `"two" is not an integer`},
				{6, "pipelines[0].handler.args", "must be a list, not a mapping"},
				{7, "pipelines[0].batch", "must be a mapping, not a list"},
				{8, "pipelines[0].sinks.out", "must be a mapping, not a list"},
			},
		},
		{
			name: "pipeline not a mapping",
			src:  "version: 1\npipelines: [oops]\n",
			want: []problem{{2, "pipelines[0]", `must be a mapping, not "oops"`}},
		},
		{
			name: "key set twice",
			src:  strings.Replace(minimal, "name: p\n", "name: p\n    name: q\n", 1),
			want: []problem{{5, "pipelines[0].name", "set twice; first at line 4"}},
		},
		{
			name: "redis without addr, negative db",
			src:  minimal + "redis: {db: -1}\n",
			want: []problem{
				{8, "redis.addr", "is required"},
				{8, "redis.db", "must not be negative, got -1"},
			},
		},
		{
			name: "YAML syntax error",
			src:  "version: 1\npipelines:\n  - name: p\n    source: {kafka: {topics: [in]}\n",
			want: []problem{{4, "", "invalid YAML"}},
		},
		{
			name: "unquoted ${VAR} in a flow mapping",
			src:  minimal + "    batch: {max_wait: ${WAIT:-50ms}}\n",
			want: []problem{{8, "", `quote values that use ${VAR}`}},
		},
		{
			name: "unknown anchor",
			src:  minimal + "    batch: *defaults\n",
			want: []problem{{8, "", "invalid YAML: unknown anchor 'defaults' referenced"}},
		},
		{
			name: "merge of a scalar",
			src:  strings.Replace(minimal, "name: p\n", "name: p\n    <<: oops\n", 1),
			want: []problem{{5, "pipelines[0]", `<< must merge a mapping or a list of mappings, not "oops"`}},
		},
		{
			name: "document not a mapping",
			src:  "- version: 1\n",
			want: []problem{{1, "", "must be a mapping with version and pipelines, not a list"}},
		},
		{
			name: "two documents",
			src:  minimal + "---\nversion: 1\n",
			want: []problem{{8, "", "one YAML document"}},
		},
		{
			name: "unset environment variable",
			src:  strings.Replace(minimal, "topic: out", `topic: "${OUT_TOPIC}"`, 1),
			want: []problem{{7, "pipelines[0].sinks.out.kafka.topic", "environment variable OUT_TOPIC is not set; set it or write ${OUT_TOPIC:-default}"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.src, tt.opts...)
			checkProblems(t, err, tt.want)
		})
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		opts  []Option
		check func(t *testing.T, f *File)
	}{
		{
			name: "minimal",
			src:  minimal,
			check: func(t *testing.T, f *File) {
				if !f.Kafka.Embedded() || f.Pipelines[0].Sinks["out"].Kafka.Topic != "out" {
					t.Errorf("got %+v", f)
				}
			},
		},
		{
			name: "known builtin",
			src:  minimal,
			opts: []Option{WithBuiltins("noop")},
			check: func(t *testing.T, f *File) {
				h := f.Pipelines[0].Handler
				if h.Builtin != "noop" || h.PluginPath != "" {
					t.Errorf("handler = %+v, want Builtin noop and no PluginPath", h)
				}
			},
		},
		{
			name: "explicit false and start time are kept",
			src: strings.Replace(minimal, "{topics: [in]}", `{topics: [in], start: "2025-01-31T10:00:00+01:00", group: g}`, 1) +
				"    retry: {bisect: false}\n    ordering: none\n",
			check: func(t *testing.T, f *File) {
				p := f.Pipelines[0]
				want := Start{Kind: StartTime, Time: time.Date(2025, 1, 31, 9, 0, 0, 0, time.UTC)}
				if k := p.Source.Kafka; k.Start.Kind != want.Kind || !k.Start.Time.Equal(want.Time) || k.Group != "g" {
					t.Errorf("source = %+v", k)
				}
				if p.Retry.Bisect || p.Ordering != OrderingNone {
					t.Errorf("retry.bisect = %v, ordering = %q", p.Retry.Bisect, p.Ordering)
				}
			},
		},
		{
			name: "merge keys share settings between pipelines",
			src: `version: 1
kafka: {brokers: [embedded]}
pipelines:
  - &base
    name: a
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop", instances: 4}
    sinks: {out: {stdout: {}}}
  - <<: *base
    name: b
`,
			check: func(t *testing.T, f *File) {
				b, ok := f.Pipeline("b")
				if !ok || b.Handler.Instances != 4 || b.Source.Kafka.Group != "b" {
					t.Errorf("pipeline b = %+v", b)
				}
			},
		},
		{
			name: "merge of a list: own keys win, then earlier merges",
			src: `version: 1
kafka: {brokers: [embedded]}
pipelines:
  - name: a
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop"}
    sinks: {out: {stdout: {}}}
    batch: &small {max_records: 10, max_wait: 1s}
  - name: b
    source: {kafka: {topics: [in]}}
    handler: {plugin: "builtin:noop"}
    sinks: {out: {stdout: {}}}
    batch:
      <<: [*small, &big {max_records: 1000, max_bytes: 2MiB}]
      max_wait: 5ms
`,
			check: func(t *testing.T, f *File) {
				got, want := f.Pipelines[1].Batch, Batch{MaxRecords: 10, MaxBytes: 2 << 20, MaxWait: 5 * time.Millisecond}
				if got != want {
					t.Errorf("batch = %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "null sections take defaults",
			src:  minimal + "    batch:\n    retry: ~\n    dlq:\n",
			check: func(t *testing.T, f *File) {
				p := f.Pipelines[0]
				if p.Batch != Defaults().Batch || p.Retry != Defaults().Retry || p.DLQ != nil {
					t.Errorf("pipeline = %+v", p)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustParse(t, tt.src, tt.opts...))
		})
	}
}

// TestAllProblemsAtOnce checks that one pass reports every problem of a
// file, sorted by line, not just the first.
func TestAllProblemsAtOnce(t *testing.T) {
	src := `version: 3
kafka: {brokers: [embedded, "k:9092"]}
pipelines:
  - name: iot-ingest
    source: {kafka: {topics: [sensor-readings]}}
    batch: {max_records: 500, max_bytes: 1MiB, max_wait: fast}
    handler: {plugin: "builtin:enrich", outputs: [enriched2], instances: 0}
    ordering: fifo
    sinks: {enriched: {kafka: {topic: sensor-readings}}, console: {stdout: {}}}
  - name: iot-ingest
    source: {kafka: {topics: []}}
    handler: {plugin: "builtin:noop"}
    retry: {max_attempts: 0}
    sinks: {out: {stdout: {}}}
    dlq: {kafka: {topic: "${DLQ_TOPIC}"}}
`
	want := []problem{
		{1, "version", "unsupported version 3"},
		{2, "kafka.brokers[0]", "embedded cannot be mixed"},
		{6, "pipelines[0].batch.max_wait", `"fast" is not a duration`},
		{7, "pipelines[0].handler.plugin", `unknown builtin "enrich"`},
		{7, "pipelines[0].handler.outputs[0]", `"enriched2" is not a declared sink; declared: console, enriched`},
		{7, "pipelines[0].handler.instances", "must be at least 1"},
		{8, "pipelines[0].ordering", `"fifo" is not an ordering`},
		{9, "pipelines[0].sinks.enriched.kafka.topic", "is also a source topic"},
		{10, "pipelines[1].name", `"iot-ingest" is already the name of pipelines[0] (line 4)`},
		{11, "pipelines[1].source.kafka.topics", "must not be empty"},
		{13, "pipelines[1].retry.max_attempts", "must be at least 1"},
		{15, "pipelines[1].dlq.kafka.topic", "environment variable DLQ_TOPIC is not set"},
	}
	_, err := parse(t, src, WithBuiltins("noop"))
	checkProblems(t, err, want)

	got := problemsOf(t, err)
	if !slices.IsSortedFunc(got, func(a, b *FieldError) int { return a.Line - b.Line }) {
		t.Errorf("problems not sorted by line:\n%v", err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want one per problem (%d):\n%v", len(lines), len(want), err)
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := parse(t, minimal+"    batch: {max_wait: fast}\n")
	if got, want := err.Error(), `weir.yaml:8: pipelines[0].batch.max_wait: "fast" is not a duration`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 8 || fe.Col != 23 || fe.Path != "pipelines[0].batch.max_wait" {
		t.Errorf("errors.As(*FieldError) = %+v", fe)
	}
}

func TestEnvExpansion(t *testing.T) {
	vars := map[string]string{
		"TOPIC": "events",
		"EMPTY": "",
		"WAIT":  "75ms",
		"N":     "250",
		// A value that would be YAML structure if it were pasted into the
		// text: expansion is per scalar, so it stays one string.
		"EVIL": "x]\n  evil: {a: 1}",
	}
	tests := []struct {
		name, value, want string
	}{
		{"set", "${TOPIC}", "events"},
		{"in text", "pre-${TOPIC}-post", "pre-events-post"},
		{"default unused", "${TOPIC:-other}", "events"},
		{"default for unset", "${NOPE:-fallback}", "fallback"},
		{"default for empty", "${EMPTY:-fallback}", "fallback"},
		{"empty without default", "a${EMPTY}b", "ab"},
		{"empty default", "${NOPE:-}", ""},
		{"dollar escape", "price$$5", "price$5"},
		{"escaped reference is literal", "$${TOPIC}", "${TOPIC}"},
		{"lone dollar kept", "a$b$", "a$b$"},
		{"no structure injected", "${EVIL}", "x]\n  evil: {a: 1}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandEnv(tt.value, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
			if err != nil || got != tt.want {
				t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.value, got, err, tt.want)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		for value, want := range map[string]string{
			"${NOPE}":        "environment variable NOPE is not set",
			"${A}-${B}":      "environment variables A, B are not set",
			"${TOPIC":        "without its closing }",
			"${1X}":          `"1X" is not a variable name`,
			"${TOPIC:=dflt}": `"TOPIC:=dflt" is not a variable name`,
		} {
			if _, err := expandEnv(value, noEnv); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("expandEnv(%q) error = %v, want %q", value, err, want)
			}
		}
	})

	t.Run("before interpreting values", func(t *testing.T) {
		src := strings.Replace(minimal, "topics: [in]", `topics: ["${TOPIC}"]`, 1) +
			"    batch:\n      max_wait: ${WAIT:-50ms}\n      max_records: ${N}\n      max_bytes: ${SIZE:-2MiB}\n" +
			"    retry: {bisect: \"${BISECT:-false}\"}\n" +
			"    handler: {plugin: \"builtin:noop\", env: {SECRET: \"${EVIL}\"}}\n"
		src = strings.Replace(src, "    handler: {plugin: \"builtin:noop\"}\n", "", 1)
		f := mustParse(t, src, env(vars))
		p := f.Pipelines[0]
		if p.Source.Kafka.Topics[0] != "events" || p.Batch.MaxWait != 75*time.Millisecond ||
			p.Batch.MaxRecords != 250 || p.Batch.MaxBytes != 2<<20 || p.Retry.Bisect {
			t.Errorf("pipeline = %+v", p)
		}
		if got := p.Handler.Env["SECRET"]; got != vars["EVIL"] {
			t.Errorf("env SECRET = %q, want the variable's text unchanged", got)
		}
	})

	t.Run("expanded value still type checked", func(t *testing.T) {
		_, err := parse(t, minimal+"    batch:\n      max_records: ${N}\n", env(map[string]string{"N": "many"}))
		checkProblems(t, err, []problem{{9, "pipelines[0].batch.max_records", `"many" is not an integer`}})
	})

	t.Run("alias expanded once", func(t *testing.T) {
		src := strings.Replace(minimal, "topics: [in]", "topics: [&t \"$${X}\", *t]", 1)
		_, err := parse(t, src)
		// Both items are the literal "${X}" (an invalid topic name): the
		// escaped text must not be expanded a second time through the alias.
		checkProblems(t, err, []problem{
			{5, "pipelines[0].source.kafka.topics[0]", `"${X}" is not a valid topic name`},
			{5, "pipelines[0].source.kafka.topics[1]", `"${X}" is not a valid topic name`},
		})
	})

	t.Run("os environment by default", func(t *testing.T) {
		t.Setenv("WEIR_TEST_TOPIC", "from-os")
		f, err := Parse("weir.yaml", []byte(strings.Replace(minimal, "topic: out", `topic: "${WEIR_TEST_TOPIC}"`, 1)))
		if err != nil || f.Pipelines[0].Sinks["out"].Kafka.Topic != "from-os" {
			t.Errorf("Parse = %v, %v", f, err)
		}
	})
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1024": 1024, "10B": 10, "1KB": 1000, "1MB": 1e6, "2GB": 2e9,
		"1KiB": 1024, "1MiB": 1 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10,
		"1.5MB": 1_500_000, "0.5KiB": 512, "1 MiB": 1 << 20,
	}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"1mb": "is not a size", "1MIB": "is not a size", "1TB": "is not a size", "MiB": "is not a size",
		"-1MiB": "is not a size", "1e6": "is not a size", "": "is not a size", "1.2.3MB": "is not a size",
		"0.3B": "is not a whole number of bytes", "1.0000001KB": "is not a whole number of bytes",
		"99999999999GiB": "is too large",
	}
	for in, want := range bad {
		if _, err := parseSize(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseSize(%q) error = %v, want %q", in, err, want)
		}
	}

	t.Run("in a file", func(t *testing.T) {
		f := mustParse(t, minimal+"    batch: {max_bytes: 4096}\n    max_inflight_bytes: 1.5MB\n")
		if p := f.Pipelines[0]; p.Batch.MaxBytes != 4096 || p.MaxInflightBytes != 1_500_000 {
			t.Errorf("sizes = %d, %d", p.Batch.MaxBytes, p.MaxInflightBytes)
		}
	})

	for n, want := range map[int64]string{0: "0B", 100: "100B", 1536: "1536B", 2048: "2KiB", 64 << 20: "64MiB", 3 << 30: "3GiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		value string
		want  time.Duration
		err   string
	}{
		{value: "50ms", want: 50 * time.Millisecond},
		{value: "1m30s", want: 90 * time.Second},
		{value: `"10s"`, want: 10 * time.Second},
		{value: "50", err: "50 is not a duration; write e.g. 50ms"},
		{value: "1.5", err: "1.5 is not a duration; write e.g. 50ms"},
		{value: "fast", err: `"fast" is not a duration`},
		{value: "10 s", err: `"10 s" is not a duration`},
		{value: "{a: 1}", err: "must be a duration, not a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			f, err := parse(t, minimal+"    shutdown_timeout: "+tt.value+"\n")
			if tt.err != "" {
				checkProblems(t, err, []problem{{8, "pipelines[0].shutdown_timeout", tt.err}})
				return
			}
			if err != nil || f.Pipelines[0].ShutdownTimeout != tt.want {
				t.Errorf("got %v, %v; want %v", f, err, tt.want)
			}
		})
	}
}

// A Kinesis DLQ decodes with the guard's defaults, on a Kafka pipeline too
// (dead letters of any pipeline can go to a stream).
func TestKinesisDLQ(t *testing.T) {
	f := mustParse(t, minimal+"    dlq: { kinesis: { stream: arn:aws:kinesis:eu-west-1:123456789012:stream/dead, endpoint: \"http://localhost:4567\" }, window: 50 }\n")
	d := f.Pipelines[0].DLQ
	if d == nil || d.Kafka != nil || d.Kinesis == nil || d.Kinesis.Stream != "arn:aws:kinesis:eu-west-1:123456789012:stream/dead" ||
		d.Kinesis.Endpoint != "http://localhost:4567" || d.MaxRatio != 0.5 || d.Window != 50 {
		t.Fatalf("dlq = %+v (kinesis %+v)", d, d.Kinesis)
	}
	if f.Pipelines[0].UsesKafka() != true {
		t.Fatal("a kafka source uses kafka")
	}
}

// The DLQ guard's defaults apply when a dlq section is present.
func TestDLQDefaultsAndChecks(t *testing.T) {
	f := mustParse(t, minimal+"    dlq: { kafka: { topic: dead } }\n")
	if d := f.Pipelines[0].DLQ; d == nil || d.MaxRatio != 0.5 || d.Window != 1000 || d.Kafka.Topic != "dead" {
		t.Fatalf("dlq = %+v", d)
	}
	_, err := Parse("weir.yaml", []byte(minimal+"    dlq: { kafka: { topic: dead, brokers: [other:9092] }, max_ratio: 1.5, window: 3 }\n    breaker: { failure_ratio: 0, min_requests: 0, open_for: 0s }\n"), SkipFileChecks())
	for _, want := range []string{"dlq.max_ratio: must be more than 0 and at most 1, got 1.5", "dlq.window: must be at least 10, got 3",
		"breaker.failure_ratio: must be more than 0", "breaker.min_requests: must be at least 1", "breaker.open_for:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestIdempotencyKeyModes(t *testing.T) {
	withRedis := strings.Replace(minimal, "pipelines:", "redis: {addr: localhost:6379}\npipelines:", 1)
	if k := mustParse(t, withRedis).Pipelines[0].Idempotency.Key; k != "position" {
		t.Fatalf("default key with a redis section = %q, want position", k)
	}
	for _, key := range []string{"position", "off", "key", "header:message-id", "json:/message_id"} {
		f := mustParse(t, withRedis+"    idempotency: { key: \""+key+"\" }\n")
		if got := f.Pipelines[0].Idempotency.Key; got != key {
			t.Errorf("key %q parsed as %q", key, got)
		}
	}
	for key, want := range map[string]string{
		"header:":  "the header name is missing",
		"json:a":   "is not a JSON pointer",
		"sha1":     "is not an idempotency key",
		"position": "needs a redis section",
	} {
		src := withRedis
		if want == "needs a redis section" {
			src = minimal
		}
		_, err := Parse("weir.yaml", []byte(src+"    idempotency: { key: \""+key+"\" }\n"), SkipFileChecks())
		if err == nil || !strings.Contains(err.Error(), "pipelines[0].idempotency.key: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("key %q: err = %v, want %q", key, err, want)
		}
	}
}

// TestDefaults pins the documented defaults, so changing one is a visible
// decision (types.go documents them for users).
func TestDefaults(t *testing.T) {
	f := mustParse(t, minimal)
	if f.Kafka.ClientID != "weir" || f.Redis.KeyPrefix != "weir:" {
		t.Errorf("kafka client_id = %q, redis key_prefix = %q", f.Kafka.ClientID, f.Redis.KeyPrefix)
	}
	want := Pipeline{
		Name:   "p",
		Source: Source{Kafka: &KafkaSource{Topics: []string{"in"}, Group: "p", Start: Start{Kind: StartEarliest}}},
		Batch:  Batch{MaxRecords: 1000, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond},
		Handler: Handler{
			Plugin: "builtin:noop", Builtin: "noop",
			Instances: max(2, runtime.NumCPU()), Timeout: 30 * time.Second, MaxConcurrency: 1, Watch: 2 * time.Second,
			MTLS: MTLSAuto, MaxOutputBytes: 1 << 20, MaxOutputsPerRecord: 1000, MaxReplyBytes: 64 << 20,
		},
		Ordering:         OrderingPartition,
		Delivery:         DeliveryAtLeastOnce,
		Retry:            Retry{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Bisect: true},
		Breaker:          Breaker{FailureRatio: 0.5, MinRequests: 20, OpenFor: 30 * time.Second, Interval: time.Minute},
		Idempotency:      Idempotency{Key: "off", TTL: 24 * time.Hour, ClaimTTL: 2 * time.Minute}, // no redis section
		Sinks:            map[string]Sink{"out": {Kafka: &KafkaSink{Topic: "out"}}},
		MaxInflightBytes: 64 << 20,
		CommitInterval:   100 * time.Millisecond,
		ShutdownTimeout:  30 * time.Second,
	}
	if got := f.Pipelines[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("pipeline with defaults (no dlq):\n got %+v\nwant %+v", got, want)
	}
	d := Defaults()
	d.Name, d.Source, d.Handler.Plugin, d.Handler.Builtin, d.Sinks = want.Name, want.Source, want.Handler.Plugin, want.Handler.Builtin, want.Sinks
	d.Idempotency.Key = "off" // resolved from the redis section, which Defaults cannot see
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Defaults() = %+v, disagrees with the defaults Parse applies", Defaults())
	}
}

// writeExample copies testdata/weir.yaml into a temp dir beside an
// executable bin/iot-enrich, as a user would lay it out.
func writeExample(t *testing.T, mode fs.FileMode) (dir string) {
	t.Helper()
	dir = t.TempDir()
	data, err := os.ReadFile("testdata/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "weir.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "iot-enrich"), []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadExample(t *testing.T) {
	t.Setenv("WEIR_MAX_WAIT", "")
	t.Run("testdata as is", func(t *testing.T) {
		f, err := Load("testdata/weir.yaml", SkipFileChecks(), WithBuiltins("passthrough"))
		if err != nil {
			t.Fatal(err)
		}
		checkExample(t, f)
		abs, _ := filepath.Abs("testdata/bin/iot-enrich")
		if got := f.Pipelines[0].Handler.PluginPath; got != abs {
			t.Errorf("PluginPath = %q, want %q (even with SkipFileChecks)", got, abs)
		}
	})
	t.Run("with the plugin file", func(t *testing.T) {
		dir := writeExample(t, 0o755)
		t.Chdir(t.TempDir()) // relative to the config file, not the working directory
		f, err := Load(filepath.Join(dir, "weir.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		checkExample(t, f)
		if got, want := f.Pipelines[0].Handler.PluginPath, filepath.Join(dir, "bin", "iot-enrich"); got != want {
			t.Errorf("PluginPath = %q, want %q", got, want)
		}
	})
	t.Run("file missing", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "weir.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
}

func checkExample(t *testing.T, f *File) {
	t.Helper()
	if len(f.Pipelines) != 2 || f.Version != 1 || f.Kafka.ClientID != "weir-example" || f.Redis.DB != 2 {
		t.Fatalf("file = %+v", f)
	}
	p, ok := f.Pipeline("iot-ingest")
	if !ok {
		t.Fatal(`Pipeline("iot-ingest") not found`)
	}
	if p.Ordering != OrderingKey || p.Batch.MaxWait != 50*time.Millisecond || p.Handler.Timeout != 10*time.Second ||
		p.DLQ.Kafka.Topic != "iot-ingest.dlq" || p.Sinks["console"].Stdout == nil || p.Handler.Env["LOG_LEVEL"] != "info" ||
		!slices.Equal(p.Handler.Args, []string{"--units", "metric"}) {
		t.Errorf("iot-ingest = %+v", p)
	}
	a, _ := f.Pipeline("audit")
	if a.Handler.Builtin != "passthrough" || a.Source.Kafka.Start.Kind != StartTime || a.Source.Kafka.Group != "audit" ||
		a.Batch != Defaults().Batch || a.Sinks["console"].Stdout == nil {
		t.Errorf("audit = %+v", a)
	}
	if _, ok := f.Pipeline("nope"); ok {
		t.Error(`Pipeline("nope") found`)
	}
}

func TestPluginFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode fs.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("handler", 0o755)
	write("not-exec", 0o644)
	if err := os.MkdirAll(filepath.Join(dir, "conf", "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "conf", "weir.yaml")

	tests := []struct {
		name, plugin string
		opts         []Option
		wantPath     string // resolved PluginPath when valid
		wantErr      string
	}{
		{name: "relative to the config dir", plugin: "../handler", wantPath: filepath.Join(dir, "handler")},
		{name: "absolute", plugin: filepath.Join(dir, "handler"), wantPath: filepath.Join(dir, "handler")},
		{name: "not executable", plugin: "../not-exec", wantErr: `"../not-exec" is not executable; chmod +x ` + filepath.Join(dir, "not-exec")},
		{name: "a directory", plugin: "./plugins", wantErr: `"./plugins" is a directory`},
		{name: "missing", plugin: "./handler", wantErr: `"./handler" does not exist (looked for ` + filepath.Join(dir, "conf", "handler") + ")"},
		{name: "missing but checks skipped", plugin: "./handler", opts: []Option{SkipFileChecks()}, wantPath: filepath.Join(dir, "conf", "handler")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(minimal, `"builtin:noop"`, `"`+tt.plugin+`"`, 1)
			f, err := Parse(name, []byte(src), tt.opts...)
			if tt.wantErr != "" {
				fes := problemsOf(t, err)
				if len(fes) != 1 || fes[0].Line != 6 || fes[0].Path != "pipelines[0].handler.plugin" || !strings.Contains(fes[0].Msg, tt.wantErr) {
					t.Errorf("err = %v, want line 6 pipelines[0].handler.plugin: %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Pipelines[0].Handler.PluginPath; got != tt.wantPath {
				t.Errorf("PluginPath = %q, want %q", got, tt.wantPath)
			}
		})
	}
}

func TestAdmin(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		addr       string
		off        bool
		problem    string // part of the message at admin.addr; "" means valid
	}{
		{name: "default", yaml: "", addr: DefaultAdminAddr},
		{name: "explicit", yaml: "admin: {addr: \"0.0.0.0:9000\"}\n", addr: "0.0.0.0:9000"},
		{name: "any interface", yaml: "admin: {addr: \":9000\"}\n", addr: ":9000"},
		{name: "free port", yaml: "admin: {addr: \"127.0.0.1:0\"}\n", addr: "127.0.0.1:0"},
		{name: "off", yaml: "admin: {addr: off}\n", addr: "off", off: true},
		{name: "empty", yaml: "admin: {addr: \"\"}\n", addr: "", off: true},
		{name: "no port", yaml: "admin: {addr: localhost}\n", problem: "is not host:port"},
		{name: "bad port", yaml: "admin: {addr: \"localhost:http\"}\n", problem: "is not a number"},
		{name: "port too big", yaml: "admin: {addr: \"localhost:70000\"}\n", problem: "is not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parse(t, minimal+tc.yaml)
			if tc.problem != "" {
				ps := problemsOf(t, err)
				if len(ps) != 1 || ps[0].Path != "admin.addr" || !strings.Contains(ps[0].Error(), tc.problem) {
					t.Fatalf("want one problem at admin.addr containing %q, got %v", tc.problem, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Admin.Addr != tc.addr || f.Admin.Off() != tc.off {
				t.Fatalf("admin = %+v (off %v), want addr %q off %v", f.Admin, f.Admin.Off(), tc.addr, tc.off)
			}
		})
	}
}

func TestAdminLagInterval(t *testing.T) {
	f, err := parse(t, minimal)
	if err != nil || f.Admin.LagInterval != 5*time.Second {
		t.Fatalf("default lag_interval = %v (%v), want 5s", f.Admin.LagInterval, err)
	}
	f, err = parse(t, minimal+"admin: {lag_interval: 250ms}\n")
	if err != nil || f.Admin.LagInterval != 250*time.Millisecond {
		t.Fatalf("lag_interval = %v (%v), want 250ms", f.Admin.LagInterval, err)
	}
	for _, tc := range []struct{ yaml, problem string }{
		{"admin: {lag_interval: 10ms}\n", "too short: at least 100ms"},
		{"admin: {lag_interval: soon}\n", "not a duration"},
	} {
		ps := problemsOf(t, mustFail(t, minimal+tc.yaml))
		if len(ps) != 1 || ps[0].Path != "admin.lag_interval" || !strings.Contains(ps[0].Error(), tc.problem) {
			t.Errorf("%q: want one problem at admin.lag_interval containing %q, got %v", tc.yaml, tc.problem, ps)
		}
	}
}

func mustFail(t *testing.T, yaml string) error {
	t.Helper()
	_, err := parse(t, yaml)
	if err == nil {
		t.Fatalf("accepted:\n%s", yaml)
	}
	return err
}
