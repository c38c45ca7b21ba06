package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/loadtest"
	kafkasrc "github.com/weirhq/weir/sources/kafka"
)

// composeFile is the part of docker-compose.yml these tests read.
type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// The compose stack holds what the README promises, runs the Kafka version
// the tests run, and starts weir the way the image does. (scripts/test also
// runs `docker-compose config`, which checks the file against the compose
// schema.)
func TestComposeFile(t *testing.T) {
	f := readCompose(t)
	for _, name := range []string{"kafka", "redis", "kinesis", "weir"} {
		if _, ok := f.Services[name]; !ok {
			t.Errorf("docker-compose.yml: no service %q", name)
		}
	}

	pom, err := os.ReadFile("../../testenv/kafka/pom.xml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom)
	if m == nil {
		t.Fatal("testenv/kafka/pom.xml: no <kafka.version>")
	}
	for name, s := range f.Services {
		if strings.HasPrefix(s.Image, "apache/kafka:") && s.Image != "apache/kafka:"+string(m[1]) {
			t.Errorf("service %s runs %s; the tests run Kafka %s (testenv/kafka/pom.xml)", name, s.Image, m[1])
		}
	}
	if !strings.HasPrefix(f.Services["kafka"].Image, "apache/kafka:") {
		t.Errorf("service kafka runs %q, want the official apache/kafka image", f.Services["kafka"].Image)
	}

	w := f.Services["weir"]
	if w.Build == nil || w.Build.Context != "." || w.Build.Dockerfile != "Dockerfile" {
		t.Errorf("service weir must be built from ./Dockerfile, got %+v", w.Build)
	}
	if got := w.Environment["KAFKA_BROKERS"]; got != "kafka:9092" {
		t.Errorf("service weir: KAFKA_BROKERS=%q, want kafka:9092", got)
	}
	for _, dep := range []string{"redis", "kinesis"} {
		if _, ok := w.DependsOn[dep]; !ok {
			t.Errorf("service weir does not depend on %s", dep)
		}
	}
	cfg := composeConfigPath(t, w.Command)

	// The image's default command is the compose command.
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^FROM golang:\S+ AS build$`).Match(df) || !regexp.MustCompile(`(?m)^FROM \S+distroless\S+`).Match(df) {
		t.Error("Dockerfile: want a golang build stage and a distroless final stage")
	}
	if want := `CMD ["` + strings.Join(w.Command, `", "`) + `"]`; !strings.Contains(string(df), "\n"+want+"\n") {
		t.Errorf("Dockerfile: want %s, the command of the compose service", want)
	}

	// The config file validates with the service's environment.
	for k, v := range w.Environment {
		t.Setenv(k, v)
	}
	var stderr strings.Builder
	if _, err := loadConfig(filepath.Join("../..", cfg), &stderr); err != nil {
		t.Errorf("%s with the compose environment: %v\n%s", cfg, err, stderr.String())
	}
}

// composeConfigPath checks that command is `run -c FILE ...` and returns
// FILE (relative to the repository root, the image's working directory).
func composeConfigPath(t *testing.T, command []string) string {
	t.Helper()
	i := slices.Index(command, "-c")
	if len(command) == 0 || command[0] != "run" || i < 0 || i+1 >= len(command) {
		t.Fatalf("service weir: command %q, want run -c FILE", command)
	}
	return command[i+1]
}

// The compose stack's weir service, run here: the same command and
// environment, except that KAFKA_BROKERS is the test broker (Apache Kafka
// in CI's real-Kafka pass, else an in-process kfake) and REDIS_ADDR is the
// embedded Redis. Sensor readings produced to the example's source topic
// come out enriched or dead-lettered, every one, and the group commits to
// the end.
func TestComposeWeirService(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the weir binary")
	}
	w := readCompose(t).Services["weir"]
	composeConfigPath(t, w.Command)

	brokers := os.Getenv("WEIR_TEST_KAFKA")
	if brokers == "" {
		emb, err := kafkasrc.StartEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(emb.Close)
		brokers = strings.Join(emb.Addrs(), ",")
	}
	const n, malformedEvery = 2000, 100
	const in, out, dlq, group = "sensor-readings", "readings-enriched", "iot-ingest.dlq", "iot-ingest"
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// What the stack's kafka-init service does.
	if err := kafkasrc.EnsureTopics(ctx, opts, 8, in); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	count := func(topic string) int64 {
		ends, err := loadtest.EndOffsets(ctx, adm, topic)
		if err != nil {
			return 0 // not created yet
		}
		var s int64
		for _, e := range ends {
			s += e
		}
		return s
	}
	// A broker shared with earlier runs may hold records: count new ones.
	out0, dlq0 := count(out), count(dlq)
	seed := time.Now().UnixNano()
	if err := loadtest.Produce(ctx, cl, in, n, func(i int) *kgo.Record {
		k, v := iot.Generate(seed, i, malformedEvery)
		return &kgo.Record{Key: k, Value: v}
	}); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "weir")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/weirhq/weir/cmd/weir").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	cmd := exec.Command(bin, w.Command...)
	cmd.Dir = "../.." // the image's working directory holds examples/
	cmd.Env = os.Environ()
	for k, v := range w.Environment {
		switch k {
		case "KAFKA_BROKERS":
			v = brokers
		case "REDIS_ADDR":
			v = "embedded"
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	wantDLQ := int64(n / malformedEvery)
	var gotOut, gotDLQ int64
	for ctx.Err() == nil {
		gotOut, gotDLQ = count(out)-out0, count(dlq)-dlq0
		if gotOut+gotDLQ >= n {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("weir %s exited: %v\n%s", strings.Join(w.Command, " "), err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("weir exited with %v after SIGTERM", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("weir did not stop within a minute of SIGTERM")
	}
	if gotOut != n-wantDLQ || gotDLQ != wantDLQ {
		t.Errorf("%d enriched and %d dead-lettered of %d readings, want %d and %d\n%s", gotOut, gotDLQ, n, n-wantDLQ, wantDLQ, logs.String())
	}
	lags, err := loadtest.Uncommitted(ctx, adm, group, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) > 0 {
		t.Errorf("group %s is not committed to the end of %s: %+v", group, in, lags)
	}
}
