package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopics creates those of topics that do not exist, with partitions
// partitions each (the broker's default if partitions <= 0) and the
// broker's default replication factor. Existing topics are left as they are,
// whatever their partition count. opts are connection options, as in
// Config.Client; the admin client is closed before returning. It returns an
// error naming every topic that could neither be found nor created.
func EnsureTopics(ctx context.Context, opts []kgo.Opt, partitions int32, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	for i, t := range topics {
		if t == "" {
			return fmt.Errorf("kafka: ensure topics: topics[%d]: must not be empty", i)
		}
	}
	if partitions <= 0 {
		partitions = -1
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: ensure topics: create client: %w", err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()

	// Look first, so that a principal allowed to use a topic but not to
	// create topics is not refused for a topic that already exists.
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("kafka: ensure topics: list %v: %w", topics, err)
	}
	var missing []string
	for _, t := range topics {
		d, ok := details[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, t)
		} else if d.Err != nil {
			return fmt.Errorf("kafka: ensure topics: describe %q: %w", t, d.Err)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	resps, err := adm.CreateTopics(ctx, partitions, -1, nil, missing...)
	if err != nil {
		return fmt.Errorf("kafka: ensure topics: create %v: %w", missing, err)
	}
	var errs []error
	for _, t := range missing {
		r, ok := resps[t]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("create %q: no reply from the broker", t))
		case r.Err == nil, errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			errs = append(errs, fmt.Errorf("create %q: %w", t, r.Err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kafka: ensure topics: %w", errors.Join(errs...))
	}
	return nil
}
