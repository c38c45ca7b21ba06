package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnsureTopics(t *testing.T) {
	e := startBroker(t, WithoutAutoCreateTopics(), WithTopic("existing", 2))
	ctx := context.Background()
	opts := []kgo.Opt{kgo.SeedBrokers(e.Addrs()...)}

	for range 2 { // the second call finds everything and creates nothing
		if err := EnsureTopics(ctx, opts, 3, "existing", "sink", "sink.dlq"); err != nil {
			t.Fatalf("EnsureTopics: %v", err)
		}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	details, err := adm.ListTopics(ctx, "existing", "sink", "sink.dlq")
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int{"existing": 2, "sink": 3, "sink.dlq": 3} {
		d := details[topic]
		if d.Err != nil || len(d.Partitions) != want {
			t.Errorf("%s: %d partitions (err %v), want %d", topic, len(d.Partitions), d.Err, want)
		}
	}
	if err := EnsureTopics(ctx, opts, 1, "ok", ""); err == nil {
		t.Error("EnsureTopics accepted an empty topic name")
	}
}
