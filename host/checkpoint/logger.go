package checkpoint

import (
	"context"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// SetRedisLogger makes go-redis write its own log lines (connection pool
// errors, reconnects) to zl as warnings with component=redis, instead of to
// standard error. go-redis has one logger per process, so the host calls
// this once at start. No line carries a password.
func SetRedisLogger(zl zerolog.Logger) {
	redis.SetLogger(redisLogger{zl: zl.With().Str("component", "redis").Logger()})
}

type redisLogger struct{ zl zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.zl.Warn().Msgf(format, v...)
}
