package plugins_test

import (
	"strconv"
	"testing"

	"github.com/weirhq/weir/plugins"
)

// TestCallsGoOverTheCallSocket: a Go handler's calls go over its call
// socket, records in the batch file or inline; a handler that does not
// serve the socket (an older SDK) gets its calls over gRPC.
func TestCallsGoOverTheCallSocket(t *testing.T) {
	needBatchFiles(t) // and call sockets: both Linux only
	cases := []struct {
		name string
		cfg  plugins.PoolConfig
		want int64 // calls over the socket, of 3
	}{
		{"records in the batch file", plugins.PoolConfig{Builtin: "viafile", Instances: 1, AutoMTLS: true}, 3},
		{"records inline", plugins.PoolConfig{Builtin: "viafile", Instances: 1, BatchFileSlot: -1}, 3},
		{"a handler that ignores the socket", plugins.PoolConfig{Builtin: "viafile", Instances: 1, AutoMTLS: true,
			Env: map[string]string{"WEIR_TEST_NO_CALL_SOCKET": "1"}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newPool(t, tc.cfg)
			before := plugins.SocketCalls()
			for i := range 3 {
				viaFile(t, p, batchOfSize("b"+strconv.Itoa(i), 200, 100))
			}
			if got := plugins.SocketCalls() - before; got != tc.want {
				t.Errorf("%d of 3 calls went over the call socket, want %d", got, tc.want)
			}
		})
	}
}
