package checkpoint

import (
	"os"
	"testing"

	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) {
	// go-redis logs every refused dial; the outage tests make many.
	SetRedisLogger(zerolog.Nop())
	os.Exit(m.Run())
}
