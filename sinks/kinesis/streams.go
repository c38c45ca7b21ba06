package kinesis

import (
	"context"
	"sync"

	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sinks"
)

// Streams writes to any stream of one account through one client, with a
// Sink per stream made on first use (`weir dlq replay` sends dead letters
// back to the streams they came from with it). Safe for concurrent use.
type Streams struct {
	// API returns the client, called once, on the first Write; its error
	// fails that Write (and is returned again by later ones).
	API func(ctx context.Context) (API, error)

	once  sync.Once
	api   API
	err   error
	mu    sync.Mutex
	sinks map[string]*Sink
}

// Write writes msgs to stream and returns one error per message (nil
// where it was written), or nil when every one was.
func (s *Streams) Write(ctx context.Context, stream string, msgs []record.Message) []error {
	s.once.Do(func() { s.api, s.err = s.API(ctx) })
	fail := func(err error) []error {
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	if s.err != nil {
		return fail(s.err)
	}
	s.mu.Lock()
	if s.sinks == nil {
		s.sinks = map[string]*Sink{}
	}
	k := s.sinks[stream]
	if k == nil {
		var err error
		if k, err = New(Config{API: s.api, Stream: stream}); err != nil {
			s.mu.Unlock()
			return fail(err)
		}
		s.sinks[stream] = k
	}
	s.mu.Unlock()
	err := k.Write(ctx, msgs)
	if err == nil {
		return nil
	}
	failed := sinks.Failed(err, len(msgs))
	errs := make([]error, len(msgs))
	for i, f := range failed {
		if f {
			errs[i] = err
		}
	}
	return errs
}
