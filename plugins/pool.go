package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
)

// Defaults of PoolConfig.
const (
	DefaultInstances    = 2
	DefaultTimeout      = 30 * time.Second
	DefaultStartTimeout = 30 * time.Second
)

// Restart backoff of a crashed instance: the first restart waits
// restartBackoffMin, each further restart without a successful call in
// between waits twice as long, up to restartBackoffMax.
const (
	restartBackoffMin = 100 * time.Millisecond
	restartBackoffMax = 5 * time.Second
)

// PoolConfig configures a Pool. Exactly one of Path and Builtin is set.
type PoolConfig struct {
	// Name names the pool in logs and errors: the pipeline or handler name.
	// Default: Builtin, or the base name of Path.
	Name string
	// Path is the handler executable. A name without a path separator is
	// looked up in PATH; a relative path is relative to the working
	// directory.
	Path string
	// Builtin, if set, runs the current executable (os.Executable) with
	// WEIR_BUILTIN_HANDLER=Builtin, so that ServeBuiltinIfRequested serves
	// the handler of that name compiled into it.
	Builtin string
	// Dir is the handler process's working directory; "" means the host's.
	Dir string
	// Args are the arguments of the handler process.
	Args []string
	// Env is the handler process's environment. Nothing else of this
	// process's environment is passed on (it may hold the host's secrets),
	// except PATH and TMPDIR (which an interpreter or a runtime needs to
	// find programs and a place for go-plugin's socket), unless Env sets
	// them; go-plugin adds its own protocol variables, the pool
	// WEIR_MAX_REPLY_BYTES, WEIR_BATCH_FD (with a batch file) and, for a
	// builtin, WEIR_BUILTIN_HANDLER.
	Env map[string]string
	// SHA256, if set, pins the executable: the lowercase hex SHA-256 its
	// file must have at every start and restart (go-plugin's SecureConfig
	// checks it again just before exec). A mismatch fails the start with an
	// error printing both digests. Not allowed with Builtin.
	SHA256 string
	// AutoMTLS secures the connection to the handler process with
	// go-plugin's automatic mutual TLS (a certificate pair per process,
	// made at start). The handler's go-plugin server must support it: Go
	// handlers do; the Python and TypeScript SDKs do not.
	AutoMTLS bool
	// MaxReplyBytes is the largest reply accepted from a handler process
	// (the host's gRPC receive limit; the process gets it as
	// WEIR_MAX_REPLY_BYTES, which the SDKs use as their send limit). A
	// larger reply fails the call with ClassBadReply, not retryable.
	// Default MaxMessageSize.
	MaxReplyBytes int
	// Instances is the number of handler processes. Default 2.
	Instances int
	// Timeout bounds one Handle call. An instance whose call times out is
	// killed and restarted (it may be wedged). Default 30s.
	Timeout time.Duration
	// Logger receives the pool's events and every line the handler
	// processes write to stderr or stdout, with fields plugin=<Name> and
	// instance=<n>. go-plugin's own logging goes here at debug level.
	// Default: the zero Logger, which discards.
	Logger zerolog.Logger
	// StartTimeout bounds starting one process: the go-plugin handshake and
	// the Describe call. Default 30s.
	StartTimeout time.Duration
	// MemoryLimit, if positive, caps the bytes each handler process may
	// allocate, enforced by the kernel (see limitMemory). A process past it
	// dies and is restarted like any crash. Linux only; elsewhere NewPool
	// fails. Default 0: no limit.
	MemoryLimit int64
	// MaxConcurrency is how many Handle calls one process serves at once.
	// A crash or timeout of one call kills the process, failing its other
	// calls too. Default 1.
	MaxConcurrency int
	// BatchFileSlot is the size in bytes of each call's part of a handler
	// process's batch file, through which a Go handler gets the records of
	// a batch (see batchfile.go): a batch whose records take more goes
	// inline over the connection. Default DefaultBatchFileSlot; negative:
	// no batch file, every batch inline. A handler that does not read the
	// file (the Python and TypeScript SDKs) gets every batch inline.
	BatchFileSlot int
}

func (c *PoolConfig) applyDefaults() {
	if c.Name == "" {
		if c.Builtin != "" {
			c.Name = c.Builtin
		} else {
			c.Name = filepath.Base(c.Path)
		}
	}
	if c.Instances == 0 {
		c.Instances = DefaultInstances
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 1
	}
	if c.MaxReplyBytes == 0 {
		c.MaxReplyBytes = MaxMessageSize
	}
	if c.BatchFileSlot == 0 {
		c.BatchFileSlot = DefaultBatchFileSlot
	}
	c.SHA256 = strings.ToLower(c.SHA256)
}

func (c *PoolConfig) validate() error {
	var errs []error
	switch {
	case c.Path == "" && c.Builtin == "":
		errs = append(errs, errors.New("one of Path and Builtin must be set"))
	case c.Path != "" && c.Builtin != "":
		errs = append(errs, fmt.Errorf("only one of Path (%q) and Builtin (%q) may be set", c.Path, c.Builtin))
	}
	if c.Instances < 0 {
		errs = append(errs, fmt.Errorf("Instances: %d is negative", c.Instances))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Timeout: %s is negative", c.Timeout))
	}
	if c.MaxConcurrency < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrency: %d is negative", c.MaxConcurrency))
	}
	if c.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("MemoryLimit: %d is negative", c.MemoryLimit))
	}
	if c.MemoryLimit > 0 && !MemoryLimitSupported {
		errs = append(errs, errors.New("MemoryLimit: handler memory limits are only supported on Linux"))
	}
	if c.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("StartTimeout: %s is negative", c.StartTimeout))
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			errs = append(errs, fmt.Errorf("Env: invalid variable name %q", k))
		}
	}
	if c.SHA256 != "" {
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("SHA256: %q is not 64 hexadecimal digits", c.SHA256))
		}
		if c.Builtin != "" {
			errs = append(errs, errors.New("SHA256: not allowed with Builtin (the running executable)"))
		}
	}
	if c.MaxReplyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxReplyBytes: %d is negative", c.MaxReplyBytes))
	}
	return errors.Join(errs...)
}

// Pool runs a fixed number of handler processes and spreads Handle calls
// over them, up to MaxConcurrency calls at a time per process (Pool.idle
// holds that many tokens per instance, each the right to one call on it).
// It restarts a process that crashes or times out, in the background, with
// backoff. All methods are safe for concurrent use.
type Pool struct {
	cfg  PoolConfig
	log  zerolog.Logger
	exe  string   // resolved executable
	env  []string // full environment of a handler process
	idle chan *instance
	all  []*instance

	// ctx is canceled when Close stops waiting for in-flight calls; it
	// stops restarts.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	info    Info
	closed  bool
	busy    int           // Handle calls between enter and leave
	drained chan struct{} // closed once closed && busy == 0
	closing chan struct{} // closed when Close begins
	bg      sync.WaitGroup

	closeOnce sync.Once
	closeDone chan struct{}
	closeErr  error

	restarts atomic.Int64
}

// instance is one handler process slot. Whoever took a token of it from
// Pool.idle (a Handle call) may call it; client, h and pid change only
// while the restart goroutine owns it (every token collected), under
// Pool.mu.
type instance struct {
	n      int
	log    zerolog.Logger
	client *plugin.Client
	h      *grpcClient
	pid    int
	// hostKeys is set when the current process serves TLS with the key
	// the host made for it (mtls.go).
	hostKeys bool
	// logs of the current process, flushed when it is gone.
	logs []*lineLogger
	// failures counts restarts since the last successful call.
	failures int
	// Under Pool.mu: broken is set once the process must be replaced; its
	// tokens are then collected (not put back) and the restart starts
	// when the last one is in, for the reason and hard of the first.
	broken    bool
	collected int
	reason    string
	hard      bool
}

func (inst *instance) dead() bool {
	return inst.client.Exited() || inst.h.done.Err() != nil
}

func (inst *instance) flushLogs() {
	for _, l := range inst.logs {
		l.Flush()
	}
}

// NewPool validates cfg, starts cfg.Instances handler processes, and checks
// that each speaks this host's protocol version. ctx bounds the start only;
// the processes live until Close. A handler executable that does not exist
// or cannot be executed fails NewPool with an error naming its path; if any
// process fails to start, the others are killed and the errors returned.
func NewPool(ctx context.Context, cfg PoolConfig) (*Pool, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("plugin %q: invalid pool config: %w", cfg.Name, err)
	}
	exe, err := resolveExecutable(cfg)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", cfg.Name, err)
	}
	p := &Pool{
		cfg:       cfg,
		log:       cfg.Logger.With().Str("plugin", cfg.Name).Logger(),
		exe:       exe,
		env:       processEnv(cfg),
		idle:      make(chan *instance, cfg.Instances*cfg.MaxConcurrency),
		all:       make([]*instance, cfg.Instances),
		drained:   make(chan struct{}),
		closing:   make(chan struct{}),
		closeDone: make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())

	errs := make([]error, cfg.Instances)
	infos := make([]Info, cfg.Instances)
	var wg sync.WaitGroup
	for i := range p.all {
		inst := &instance{n: i, log: p.log.With().Int("instance", i).Logger()}
		p.all[i] = inst
		wg.Go(func() { infos[i], errs[i] = p.launch(ctx, inst) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.cancel()
		for _, inst := range p.all {
			if inst.client != nil {
				kill(inst, false)
			}
		}
		return nil, fmt.Errorf("plugin %q: starting %s: %w", cfg.Name, exe, err)
	}
	p.info = infos[0]
	for _, info := range infos[1:] {
		if info != p.info {
			p.log.Warn().Str("first", p.info.Name+"/"+p.info.Version).Str("other", info.Name+"/"+info.Version).Msg("plugin instances describe themselves differently")
		}
	}
	for _, inst := range p.all {
		for range cfg.MaxConcurrency {
			p.idle <- inst
		}
	}
	p.log.Info().Str("handler", p.info.Name).Str("version", p.info.Version).Int("instances", cfg.Instances).
		Str("path", exe).Str("builtin", cfg.Builtin).Msg("plugin pool started")
	return p, nil
}

// resolveExecutable returns the absolute path of the executable to run,
// checking that it exists and is executable.
func resolveExecutable(cfg PoolConfig) (string, error) {
	if cfg.Builtin != "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("builtin handler %q: locating the running executable: %w", cfg.Builtin, err)
		}
		return exe, nil
	}
	path := cfg.Path
	if !strings.ContainsRune(path, filepath.Separator) && !strings.ContainsRune(path, '/') {
		found, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("handler executable %q not found in PATH: %w", path, err)
		}
		path = found
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("handler executable %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("handler executable %s does not exist: %w", abs, err)
	case err != nil:
		return "", fmt.Errorf("handler executable %s: %w", abs, err)
	case fi.IsDir():
		return "", fmt.Errorf("handler executable %s is a directory", abs)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("handler executable %s is not executable (mode %s)", abs, fi.Mode().Perm())
	}
	return abs, nil
}

// EnvMaxReplyBytes tells a handler process the largest reply the host
// accepts (PoolConfig.MaxReplyBytes), in bytes.
const EnvMaxReplyBytes = "WEIR_MAX_REPLY_BYTES"

// passedEnv are the variables of this process a handler process gets
// unless PoolConfig.Env sets them: what finding programs and a temporary
// directory needs, nothing that may hold a secret.
var passedEnv = []string{"PATH", "TMPDIR"}

// processEnv is the environment of a handler process: passedEnv from this
// process, then cfg.Env in key order, then WEIR_MAX_REPLY_BYTES and, for a
// builtin, WEIR_BUILTIN_HANDLER. Later entries win (os/exec keeps the last
// value of a repeated key). go-plugin appends its handshake variables.
func processEnv(cfg PoolConfig) []string {
	var env []string
	for _, k := range passedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Env)) {
		env = append(env, k+"="+cfg.Env[k])
	}
	env = append(env, EnvMaxReplyBytes+"="+strconv.Itoa(cfg.MaxReplyBytes))
	if cfg.Builtin != "" {
		env = append(env, EnvBuiltinHandler+"="+cfg.Builtin)
	}
	return env
}

// checkDigest fails unless the file at exe has the SHA-256 want (hex).
func checkDigest(exe, want string) error {
	f, err := os.Open(exe)
	if err != nil {
		return fmt.Errorf("checking the sha256 of %s: %w", exe, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("checking the sha256 of %s: %w", exe, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: %s has sha256 %s, but %s is pinned; refusing to start it", ErrDigestMismatch, exe, got, want)
	}
	return nil
}

// launch starts a process for inst, connects to it and describes it. On
// success inst's client, h, pid and logs are set (the caller owns inst or
// holds no one else's reference to it); on failure the process is killed.
func (p *Pool) launch(ctx context.Context, inst *instance) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("instance %d: %w", inst.n, err)
	}
	var secure *plugin.SecureConfig
	if p.cfg.SHA256 != "" {
		if err := checkDigest(p.exe, p.cfg.SHA256); err != nil {
			return Info{}, fmt.Errorf("instance %d: %w", inst.n, err)
		}
		sum, _ := hex.DecodeString(p.cfg.SHA256)
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	cmd := exec.Command(p.exe, p.cfg.Args...)
	cmd.Dir = p.cfg.Dir
	// A copy: go-plugin appends to it, and launches run concurrently.
	cmd.Env = slices.Clone(p.env)
	setProcAttr(cmd)
	var batches *batchFile
	if p.cfg.BatchFileSlot > 0 {
		bf, err := newBatchFile(p.cfg.MaxConcurrency, p.cfg.BatchFileSlot, p.cfg.MaxReplyBytes)
		if err != nil {
			inst.log.Debug().Err(err).Msg("no batch file: batches go inline")
		} else {
			// The process's fd 3 (the first of ExtraFiles).
			batches = bf
			cmd.ExtraFiles = []*os.File{bf.f}
			cmd.Env = append(cmd.Env, EnvBatchFD+"=3")
		}
	}
	var creds *handlerTLS
	if p.cfg.AutoMTLS {
		var err error
		if creds, err = newHandlerTLS(); err != nil {
			_ = batches.Close()
			return Info{}, fmt.Errorf("instance %d: %w", inst.n, err)
		}
		keys, err := creds.pipe()
		if err != nil {
			_ = batches.Close()
			return Info{}, fmt.Errorf("instance %d: %w", inst.n, err)
		}
		// The process has its own copy once started (or failed to).
		defer keys.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, keys)
		cmd.Env = append(cmd.Env, EnvTLSFD+"="+strconv.Itoa(2+len(cmd.ExtraFiles)), "PLUGIN_CLIENT_CERT="+creds.clientPEM)
	}
	// The call socket: the process's end is its own once started (or
	// failed to); the host's is the client's once the process says in
	// Describe that it serves calls there.
	calls, callsEnd, err := newCallSocket()
	if err != nil {
		inst.log.Debug().Err(err).Msg("no call socket: calls go over gRPC")
	} else {
		defer callsEnd.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, callsEnd)
		cmd.Env = append(cmd.Env, EnvCallFD+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	}
	stderr := newLineLogger(inst.log, "stderr")
	syncStderr := newLineLogger(inst.log, "stderr")
	syncStdout := newLineLogger(inst.log, "stdout")
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: maps.Clone(VersionedPlugins), // go-plugin may add to it
		Cmd:              cmd,
		SkipHostEnv:      true, // never the host's environment: cmd.Env is all it gets
		SecureConfig:     secure,
		// Mutual TLS with keys of our own (mtls.go), not go-plugin's
		// automatic mTLS, which makes slow P-521 keys at every start.
		TLSConfig:        creds.clientConfig(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     p.cfg.StartTimeout,
		// The process's own stderr (what it writes before go-plugin takes
		// over, Go panics, runtime errors) ...
		Stderr: stderr,
		// ... and os.Stderr / os.Stdout of a Go handler once serving,
		// which go-plugin forwards over the connection.
		SyncStderr: syncStderr,
		SyncStdout: syncStdout,
		Logger:     newHclogAdapter(inst.log, filepath.Base(p.exe)),
		GRPCDialOptions: append(dialTransportOptions(), grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(p.cfg.MaxReplyBytes),
			grpc.MaxCallSendMsgSize(MaxMessageSize),
		)),
	})
	logs := []*lineLogger{stderr, syncStderr, syncStdout}
	fail := func(err error) (Info, error) {
		if p.cfg.AutoMTLS && strings.Contains(err.Error(), "tls: ") {
			err = fmt.Errorf("%w (automatic mTLS is on, handler.mtls: a plugin whose go-plugin server does not support it, like the Python and TypeScript SDKs, needs mtls: off)", err)
		}
		client.Kill()
		_ = batches.Close()
		if calls != nil {
			_ = calls.Close()
		}
		for _, l := range logs {
			l.Flush()
		}
		if p.cfg.Builtin != "" {
			return Info{}, fmt.Errorf("instance %d (builtin handler %q): %w", inst.n, p.cfg.Builtin, err)
		}
		return Info{}, fmt.Errorf("instance %d: %w", inst.n, err)
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(fmt.Errorf("%w (the process's stderr is logged with plugin=%q)", err, p.cfg.Name))
	}
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	if p.cfg.MemoryLimit > 0 {
		if err := limitMemory(pid, p.cfg.MemoryLimit); err != nil {
			return fail(err)
		}
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return fail(err)
	}
	h, ok := raw.(*grpcClient)
	if !ok {
		return fail(fmt.Errorf("dispensed %T, want a handler client", raw))
	}
	dctx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	info, err := h.Describe(dctx)
	if err != nil {
		return fail(err)
	}
	if info.ProtocolVersion != ProtocolVersion {
		return fail(fmt.Errorf("handler %q speaks protocol version %d, this host speaks %d", info.Name, info.ProtocolVersion, ProtocolVersion))
	}
	switch {
	case h.readsBatchFile && batches != nil && bytes.Equal(h.batchFileCheck, batches.check[:]):
		h.batches = batches
	case h.readsBatchFile && batches != nil:
		inst.log.Warn().Str("handler", info.Name).Msg("the handler says it reads its batch file but answered the wrong check bytes; its batches go inline")
		_ = batches.Close()
	default:
		_ = batches.Close()
	}
	if calls != nil {
		if h.servesCallSocket {
			h.calls = newCallConn(calls, p.cfg.MaxReplyBytes)
		} else {
			_ = calls.Close()
		}
	}
	inst.hostKeys = creds != nil && bytes.Equal(h.peerCert, creds.serverDER)
	if creds != nil && !inst.hostKeys {
		inst.log.Debug().Str("handler", info.Name).Msg("the handler made its own TLS key (an SDK that does not read " + EnvTLSFD + "), which makes its start slower")
	}
	inst.client, inst.h, inst.pid, inst.logs = client, h, pid, logs
	inst.log.Debug().Int("pid", pid).Str("handler", info.Name).Str("version", info.Version).Msg("plugin instance started")
	return info, nil
}

// Info describes the handler, as its first instance answered Describe.
func (p *Pool) Info() Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Restarts is the number of times an instance was restarted after a crash,
// a timeout or an abandoned call, since NewPool.
func (p *Pool) Restarts() int64 { return p.restarts.Load() }

// Alive returns how many of the pool's processes are running now, and how
// many it has. A process that exited (and is being restarted) does not
// count, nor does any after Close.
func (p *Pool) Alive() (up, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inst := range p.all {
		if !p.closed && inst.client != nil && !inst.client.Exited() {
			up++
		}
	}
	return up, len(p.all)
}

// Handle sends b to an idle instance, waiting for one as long as ctx allows,
// and returns its result. It sets b.Deadline to the call's deadline: now plus
// the pool's Timeout, or ctx's deadline if earlier.
//
// A returned error fails the whole batch; nothing in it was handled, or the
// handler's side effects are unknown. It wraps ErrPluginExited (class
// ClassCrash) if the process died, ErrTimeout (ClassTimeout) if the call
// timed out, ErrPoolClosed after Close; otherwise it is the handler's own
// *Error (its class crossed the plugin boundary) or a ClassBadReply *Error.
// An instance that crashed, timed out, or whose call the caller abandoned
// (ctx canceled) is killed and restarted in the background; the others go
// back to the pool.
func (p *Pool) Handle(ctx context.Context, b *Batch) (*Result, error) {
	if b == nil {
		return nil, errors.New("plugins: Handle called with a nil batch")
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	// The records are encoded while waiting for no instance: an instance
	// is held only for the call.
	return p.handle(ctx, b, encodeRecords(b))
}

// HandleEncoded is Handle of a batch whose records come encoded: recs
// replaces b.Records, which it ignores. The caller may reuse recs' parts
// once it returns.
func (p *Pool) HandleEncoded(ctx context.Context, b *Batch, recs EncodedRecords) (*Result, error) {
	if b == nil {
		return nil, errors.New("plugins: HandleEncoded called with a nil batch")
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.handle(ctx, b, encodedRecords(recs))
}

// handle sends b, its records encoded in w, to an idle instance.
func (p *Pool) handle(ctx context.Context, b *Batch, w *wireBatch) (*Result, error) {
	inst, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if dl, ok := callCtx.Deadline(); ok {
		b.Deadline = dl
	}
	w.setHead(b)
	res, err := inst.h.handleWire(callCtx, w)
	if err == nil {
		w.release()
		p.putBack(inst, true)
		return res, nil
	}
	// inst is handed back or to a restart below; note who it was first.
	n, pid := inst.n, inst.pid
	switch {
	case errors.Is(err, ErrPluginExited) || inst.dead():
		p.recycle(inst, "exited during a call", false)
		return nil, fmt.Errorf("plugin %q instance %d (pid %d): %w", p.cfg.Name, n, pid, err)
	case errors.Is(err, ErrTimeout):
		p.recycle(inst, "call timed out", true)
		if ctx.Err() == nil {
			return nil, fmt.Errorf("plugin %q instance %d (pid %d): no reply within %s: %w", p.cfg.Name, n, pid, p.cfg.Timeout, err)
		}
		return nil, fmt.Errorf("plugin %q instance %d (pid %d): no reply before the caller's deadline: %w", p.cfg.Name, n, pid, err)
	case ctx.Err() != nil:
		// The caller gave up; the handler may still be working on the
		// batch. Recycle the process so the next batch does not run
		// beside an abandoned one.
		p.recycle(inst, "call abandoned", true)
		return nil, fmt.Errorf("plugin %q instance %d: %w", p.cfg.Name, n, err)
	default:
		p.putBack(inst, false)
		return nil, fmt.Errorf("plugin %q instance %d: %w", p.cfg.Name, n, err)
	}
}

func (p *Pool) enter() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("plugin %q: %w", p.cfg.Name, ErrPoolClosed)
	}
	p.busy++
	return nil
}

func (p *Pool) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy--
	if p.closed && p.busy == 0 {
		close(p.drained)
	}
}

// acquire takes an idle instance, recycling any whose process died while
// idle.
func (p *Pool) acquire(ctx context.Context) (*instance, error) {
	for {
		select {
		case inst := <-p.idle:
			p.mu.Lock()
			broken := inst.broken
			p.mu.Unlock()
			if broken {
				p.collect(inst) // a stale token of a process being replaced
				continue
			}
			if inst.dead() {
				p.recycle(inst, "exited while idle", false)
				continue
			}
			if err := ctx.Err(); err != nil {
				// Both were ready; do not start a call that is over.
				p.idle <- inst
				return nil, fmt.Errorf("plugin %q: %w", p.cfg.Name, err)
			}
			return inst, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("plugin %q: waiting for an idle instance: %w", p.cfg.Name, ctx.Err())
		case <-p.closing:
			return nil, fmt.Errorf("plugin %q: %w", p.cfg.Name, ErrPoolClosed)
		}
	}
}

// putBack returns a token of inst after a call that did not break the
// process; ok says the call succeeded (which resets the restart backoff).
func (p *Pool) putBack(inst *instance, ok bool) {
	p.mu.Lock()
	if !inst.broken {
		if ok {
			inst.failures = 0
		}
		p.mu.Unlock()
		p.idle <- inst
		return
	}
	p.mu.Unlock()
	p.collect(inst)
}

// recycle marks inst's process for replacement and gives up the caller's
// token of it: once every token is in (the other calls on the process
// ended), the process is killed and, unless the pool is closing, restarted
// in the background; its tokens then go back to the idle set. hard kills
// the process at once (it may be wedged) instead of asking it to exit
// first.
func (p *Pool) recycle(inst *instance, reason string, hard bool) {
	p.mu.Lock()
	if !inst.broken {
		inst.broken, inst.reason, inst.hard = true, reason, hard
		if hard && p.cfg.MaxConcurrency > 1 && inst.pid > 0 {
			// Fail the process's other calls now rather than at their
			// timeout: the process is going.
			if proc, err := os.FindProcess(inst.pid); err == nil {
				_ = proc.Kill()
			}
		}
	}
	p.mu.Unlock()
	p.collect(inst)
}

// collect takes in one token of a broken instance; the last one starts its
// restart (or kills it, if the pool is closed).
func (p *Pool) collect(inst *instance) {
	p.mu.Lock()
	inst.collected++
	if inst.collected < p.cfg.MaxConcurrency {
		p.mu.Unlock()
		return
	}
	inst.collected = 0
	closed := p.closed
	if !closed {
		p.bg.Add(1)
	}
	reason, hard := inst.reason, inst.hard
	p.mu.Unlock()
	if closed {
		kill(inst, hard)
		return
	}
	go p.restart(inst, reason, hard)
}

// kill ends inst's current process.
func kill(inst *instance, hard bool) {
	if hard && inst.pid > 0 && !inst.client.Exited() {
		if proc, err := os.FindProcess(inst.pid); err == nil {
			_ = proc.Kill()
		}
	}
	inst.client.Kill()
	if inst.h != nil {
		_ = inst.h.batches.Close()
		_ = inst.h.calls.Close()
	}
	inst.flushLogs()
}

func restartBackoff(failures int) time.Duration {
	d := restartBackoffMin << min(max(failures-1, 0), 16)
	return min(d, restartBackoffMax)
}

// restart owns inst: it kills the old process, then starts a new one with
// backoff until it succeeds or the pool closes.
func (p *Pool) restart(inst *instance, reason string, hard bool) {
	defer p.bg.Done()
	oldPid := inst.pid
	kill(inst, hard)
	inst.log.Warn().Int("pid", oldPid).Str("reason", reason).Msg("plugin instance lost; restarting")
	for attempt := 1; ; attempt++ {
		inst.failures++
		delay := restartBackoff(inst.failures)
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-p.ctx.Done():
			timer.Stop()
			return
		}
		next := &instance{n: inst.n, log: inst.log}
		info, err := p.launch(p.ctx, next)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			inst.log.Warn().Err(err).Int("attempt", attempt).Msg("plugin instance restart failed")
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			kill(next, false)
			return
		}
		inst.client, inst.h, inst.pid, inst.logs = next.client, next.h, next.pid, next.logs
		inst.broken = false
		if info != p.info {
			inst.log.Warn().Str("was", p.info.Name+"/"+p.info.Version).Str("now", info.Name+"/"+info.Version).Msg("restarted plugin describes itself differently")
			p.info = info
		}
		p.mu.Unlock()
		n := p.restarts.Add(1)
		inst.log.Info().Int("pid", inst.pid).Int("attempt", attempt).Dur("backoff", delay).Int64("restarts", n).Msg("plugin instance restarted")
		for range p.cfg.MaxConcurrency {
			p.idle <- inst
		}
		return
	}
}

// Close shuts the pool down: new calls and calls waiting for an instance
// fail with ErrPoolClosed, calls in flight may finish until ctx is done, then
// every process is asked to exit (and killed if it does not within go-plugin's
// two seconds, or at once if ctx expired first). It returns ctx's error if
// calls were still in flight when ctx ended. Close is safe to call more than
// once and concurrently; later calls wait for the first to finish (or their
// own ctx) and return nil.
func (p *Pool) Close(ctx context.Context) error {
	first := false
	p.closeOnce.Do(func() {
		first = true
		p.closeErr = p.close(ctx)
		close(p.closeDone)
	})
	if first {
		return p.closeErr
	}
	select {
	case <-p.closeDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("plugin %q: close: %w", p.cfg.Name, ctx.Err())
	}
}

func (p *Pool) close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	busy := p.busy
	if busy == 0 {
		close(p.drained)
	}
	p.mu.Unlock()
	close(p.closing)

	var err error
	select {
	case <-p.drained:
	case <-ctx.Done():
		err = fmt.Errorf("plugin %q: close: gave up waiting for calls in flight: %w", p.cfg.Name, ctx.Err())
	}
	p.cancel()

	p.mu.Lock()
	snapshot := make([]instance, len(p.all))
	for i, inst := range p.all {
		snapshot[i] = instance{n: inst.n, client: inst.client, h: inst.h, pid: inst.pid, logs: inst.logs}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for i := range snapshot {
		wg.Go(func() { kill(&snapshot[i], err != nil) })
	}
	wg.Wait()
	p.bg.Wait()
	p.log.Info().Int64("restarts", p.restarts.Load()).Msg("plugin pool closed")
	return err
}

// pids returns the process id of each instance's current process (a test
// hook).
func (p *Pool) pids() []int {
	return eachInstance(p, func(inst *instance) int { return inst.pid })
}

// eachInstance returns f of each instance, in order, under p.mu.
func eachInstance[T any](p *Pool, f func(*instance) T) []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]T, len(p.all))
	for i, inst := range p.all {
		out[i] = f(inst)
	}
	return out
}
