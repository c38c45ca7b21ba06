package plugins

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// PluginName is the name the handler is dispensed under in the go-plugin
// plugin set.
const PluginName = "handler"

// MaxMessageSize is the largest gRPC message, in bytes, the host and a Go
// handler send or accept: 64 MiB. gRPC's default receive limit is 4 MiB, too
// small for a batch of 500 records of a few KiB each plus headers; a batch
// is bounded by the pipeline's batch.max_bytes well below this. Handlers in
// other languages must raise their server's limits to at least this.
const MaxMessageSize = 64 << 20

// Handshake is the go-plugin handshake shared by the host and every handler.
// It is a UX check (a handler binary run by hand says it is a plugin), not a
// security feature. Changing the cookie breaks every handler in the field.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "WEIR_PLUGIN",
	MagicCookieValue: "b7c1f4e2-weir-handler-9d3a",
}

// PluginSet is the go-plugin plugin set of the current protocol version, as
// used by the host. Do not modify it.
var PluginSet = plugin.PluginSet{PluginName: &GRPCPlugin{}}

// VersionedPlugins maps each protocol version the host speaks to its plugin
// set. There is one version today; a future version is added here and
// go-plugin negotiates the highest one both sides speak.
var VersionedPlugins = map[int]plugin.PluginSet{ProtocolVersion: PluginSet}

// GRPCPlugin is the go-plugin plugin.GRPCPlugin of the handler protocol. On
// the plugin side Impl is the Handler being served; on the host side Impl is
// nil and GRPCClient returns a Handler that calls the plugin.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the handler served by GRPCServer; unused by GRPCClient.
	Impl Handler
	// srv, if set, is what GRPCServer registers instead of a server of
	// Impl: Serve's, which knows its process's batch file and call socket.
	srv *grpcServer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Handler service serving p.Impl on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	srv := p.srv
	if srv == nil {
		srv = &grpcServer{impl: p.Impl}
	}
	s.RegisterService(&serviceDesc, srv)
	return nil
}

// GRPCClient returns a Handler that calls the plugin over conn. go-plugin
// cancels ctx when the plugin process exits; every call made after or
// during that fails with ErrPluginExited.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newGRPCClient(ctx, conn), nil
}

// Serve serves h over go-plugin in a process started by a Pool and returns
// when the host closes the connection. It must be the only thing the process
// does with stdout: go-plugin writes its handshake there, and afterwards
// os.Stdout and os.Stderr are forwarded to the host, which logs them. A
// process not started by a weir host prints a notice and exits with status 1.
//
// Unless GOGC or GOMEMLIMIT is set, Serve lets the process's garbage grow to
// about 16 MiB before a collection (GOGC=100 once the live heap is larger):
// a batch's garbage would otherwise make the collector run every few calls.
// Unless GOMAXPROCS is set, it runs the process with one P, and one more for
// each call served at once beyond the first, and it turns memory profiling
// off unless the process set a rate (see runtimetune.go).
//
// Handler authors call sdk.Serve instead; the weir binary serves its built-in
// handlers through ServeBuiltinIfRequested.
func Serve(h Handler) {
	startGCTuner()
	tuneRuntime()
	batches := openBatchFile()
	serve(h, batches, batches, openCallSocket())
}

// serve serves h, saying in Describe what described says of the batch file
// and reading batches from read, and serving Handle on calls too, unless it
// is nil.
func serve(h Handler, described, read *batchReader, calls net.Conn) {
	srv := &grpcServer{impl: h, batches: described}
	if calls != nil {
		srv.callSocket = true
		newCallServer(calls, srv, read)
	}
	// The key the host made for this process, if it made one; without it
	// go-plugin makes one itself, as it always has.
	tlsConfig, err := serverTLS()
	if err != nil {
		fmt.Fprintf(os.Stderr, "weir handler: %v; making a TLS key of its own instead\n", err)
	}
	var tlsProvider func() (*tls.Config, error)
	if tlsConfig != nil {
		tlsProvider = func() (*tls.Config, error) { return tlsConfig, nil }
	}
	plugin.Serve(&plugin.ServeConfig{
		TLSProvider:     tlsProvider,
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &GRPCPlugin{Impl: h, srv: srv}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server { return newGRPCServer(read, opts) },
		// go-plugin's own server-side logging: only problems, as JSON lines
		// on the process's real stderr, which the host logs.
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "go-plugin",
			Level:      hclog.Warn,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}

// newGRPCServer is the gRPC server of a handler process whose batch file,
// if the host passed one, is batches.
func newGRPCServer(batches *batchReader, opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, serverTransportOptions()...)
	opts = append(opts,
		// Batches decode by hand (wire.go); everything else as usual.
		grpc.ForceServerCodecV2(wireCodec{batches: batches}),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(maxReplyBytes()),
	)
	return grpc.NewServer(opts...)
}

// maxReplyBytes is the send limit of a handler process: what the host said
// it accepts (WEIR_MAX_REPLY_BYTES), else MaxMessageSize.
func maxReplyBytes() int {
	if n, err := strconv.Atoi(os.Getenv(EnvMaxReplyBytes)); err == nil && n > 0 {
		return n
	}
	return MaxMessageSize
}
