// Package kzlog adapts a zerolog.Logger to franz-go's kgo.Logger, so the
// Kafka client logs through the logger the host injects, as structured
// fields on the same JSON lines as the rest of weir.
package kzlog

import (
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Logger is a kgo.Logger writing to a zerolog.Logger. kgo's key/value pairs
// become fields of the event. It is safe for concurrent use.
type Logger struct {
	zl zerolog.Logger
	// off is set when zl can never write (the zero Logger, zerolog.Nop, a
	// Disabled level), so that kgo does not even build its messages.
	off bool
}

var _ kgo.Logger = (*Logger)(nil)

// New returns a kgo.Logger over zl. kgo logs at zl's level, or the global
// zerolog level when that is higher; kgo's debug level is verbose, so pass
// zl.Level(zerolog.InfoLevel) to keep the client quieter than the rest of
// the process.
func New(zl zerolog.Logger) *Logger {
	l := &Logger{zl: zl}
	// zerolog exports no way to ask whether a logger has a writer. Probe
	// once: an error event refused although no level filters it means
	// there is nowhere to write.
	if e := zl.WithLevel(zerolog.ErrorLevel); e != nil {
		e.Discard()
	} else {
		l.off = zl.GetLevel() <= zerolog.ErrorLevel && zerolog.GlobalLevel() <= zerolog.ErrorLevel
	}
	return l
}

// Level is for kgo.Logger: the most verbose kgo level zl would write.
func (l *Logger) Level() kgo.LogLevel {
	if l.off {
		return kgo.LogLevelNone
	}
	lvl := l.zl.GetLevel()
	if g := zerolog.GlobalLevel(); g > lvl {
		lvl = g
	}
	switch lvl {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return kgo.LogLevelDebug
	case zerolog.InfoLevel:
		return kgo.LogLevelInfo
	case zerolog.WarnLevel:
		return kgo.LogLevelWarn
	case zerolog.ErrorLevel:
		return kgo.LogLevelError
	default: // fatal, panic, no level, disabled: nothing kgo logs is that severe
		return kgo.LogLevelNone
	}
}

// Log is for kgo.Logger: it writes msg at the zerolog level matching level,
// with keyvals (alternating string keys and values) as fields.
func (l *Logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var zlvl zerolog.Level
	switch level {
	case kgo.LogLevelError:
		zlvl = zerolog.ErrorLevel
	case kgo.LogLevelWarn:
		zlvl = zerolog.WarnLevel
	case kgo.LogLevelInfo:
		zlvl = zerolog.InfoLevel
	case kgo.LogLevelDebug:
		zlvl = zerolog.DebugLevel
	default:
		return
	}
	l.zl.WithLevel(zlvl).Fields(keyvals).Msg(msg)
}
