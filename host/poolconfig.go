package host

import (
	"github.com/rs/zerolog"

	"github.com/weirhq/weir/host/config"
	"github.com/weirhq/weir/plugins"
)

// PoolConfig maps a pipeline's handler section onto the plugin pool's
// configuration, as `weir run` starts it; `weir invoke` starts the same.
func PoolConfig(pc *config.Pipeline, log zerolog.Logger) plugins.PoolConfig {
	h := pc.Handler
	return plugins.PoolConfig{
		Name: pc.Name, Path: h.PluginPath, Builtin: h.Builtin,
		Args: h.Args, Env: h.Env, Instances: h.Instances, Dir: h.Dir,
		Timeout: h.Timeout, MemoryLimit: h.MemoryLimit, MaxConcurrency: h.MaxConcurrency, Logger: log,
		SHA256: h.SHA256, AutoMTLS: useMTLS(h), MaxReplyBytes: int(h.MaxReplyBytes),
	}
}
