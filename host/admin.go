package host

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weirhq/weir/record"
)

// Status is what /status serves: the host and each of its pipelines. It is a
// snapshot; numbers are read without stopping anything.
type Status struct {
	Host string `json:"host"`
	// Ready is what /readyz answers; Reason says why not.
	Ready     bool             `json:"ready"`
	Reason    string           `json:"reason,omitempty"`
	Time      time.Time        `json:"time"`
	Pipelines []PipelineStatus `json:"pipelines"`
}

// PipelineStatus is one pipeline in Status.
type PipelineStatus struct {
	Name string `json:"name"`
	// State is starting, running, stopped or failed.
	State string `json:"state"`
	// Counters are the pipeline's Stats.
	Counters Snapshot `json:"counters"`
	// Breakers are the handler, sink, DLQ and Redis breakers.
	Breakers []BreakerStatus `json:"breakers"`
	// InflightBytes are bytes delivered and not yet complete;
	// MaxInflightBytes is the budget past which partitions pause.
	InflightBytes    int64 `json:"inflight_bytes"`
	MaxInflightBytes int64 `json:"max_inflight_bytes"`
	// Paused are the partitions paused at the source now (topic/partition).
	Paused []string `json:"paused_partitions"`
	// Lanes are the partitions this host owns now.
	Lanes  []LaneStatus  `json:"lanes"`
	Plugin PluginStatus  `json:"plugin"`
	Source SourceStatus  `json:"source"`
	Lag    LagTotals     `json:"lag"`
	DLQ    int64         `json:"dlq_records"`
	Events RebalanceInfo `json:"rebalances"`
}

// BreakerStatus is one breaker: its name (handler, sink NAME, dlq, redis)
// and state (closed, half-open, open).
type BreakerStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// LaneStatus is one owned partition.
type LaneStatus struct {
	Topic      string `json:"topic"`
	Partition  string `json:"partition"`
	Generation int64  `json:"generation"`
	// Committed is the last position committed for the partition by this
	// owner ("" before the first commit).
	Committed string `json:"committed"`
	Paused    bool   `json:"paused"`
	// Lag is the partition's lag and its split (see PartitionLag), as
	// last measured (admin.lag_interval); OldestSeconds is the age of its
	// oldest unfinished record now.
	Lag           PartitionLag `json:"lag"`
	OldestSeconds float64      `json:"oldest_unfinished_seconds"`
}

// PluginStatus is the pipeline's handler pool.
type PluginStatus struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Instances int    `json:"instances"`
	// Up is the number of handler processes running now.
	Up       int   `json:"up"`
	Restarts int64 `json:"restarts"`
}

// SourceStatus is the pipeline's source as the latest offsets poll found it.
type SourceStatus struct {
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
}

// LagTotals sums a pipeline's lag over the partitions this host owns.
type LagTotals struct {
	Lag       int64 `json:"lag"`
	Drainable int64 `json:"drainable"`
	Blocked   int64 `json:"blocked"`
	// MaxMillisBehind is the largest MillisBehind of the shards (a
	// Kinesis source; 0 otherwise).
	MaxMillisBehind int64 `json:"max_millis_behind,omitempty"`
}

// RebalanceInfo counts partition lifecycle events.
type RebalanceInfo struct {
	Assigned int64 `json:"assigned"`
	Revoked  int64 `json:"revoked"`
	Lost     int64 `json:"lost"`
}

// Status returns a snapshot of the host. It is safe to call at any time
// from any goroutine.
func (h *Host) Status() Status {
	h.mu.Lock()
	pls := slices.Clone(h.pipelines)
	cfg := h.cfg // replaced by a reload
	states := make(map[string]string, len(h.states))
	for k, v := range h.states {
		states[k] = v
	}
	h.mu.Unlock()
	byName := make(map[string]*pipeline, len(pls))
	for _, pl := range pls {
		byName[pl.cfg.Name] = pl
	}

	st := Status{Host: h.opts.HostID, Ready: true, Time: time.Now().UTC()}
	var reasons []string
	for i := range cfg.Pipelines {
		name := cfg.Pipelines[i].Name
		ps := PipelineStatus{Name: name, State: states[name], Breakers: []BreakerStatus{}, Paused: []string{}, Lanes: []LaneStatus{}}
		if ps.State == "" {
			ps.State = StateStarting
		}
		if ps.State != StateRunning {
			reasons = append(reasons, "pipeline "+name+" is "+ps.State)
		}
		if pl := byName[name]; pl != nil {
			pl.fillStatus(&ps)
			for _, b := range ps.Breakers {
				if b.State != "closed" {
					reasons = append(reasons, "pipeline "+name+": breaker "+b.Name+" is "+b.State)
				}
			}
			if ps.State == StateRunning && pl.alive != nil && ps.Plugin.Up == 0 {
				reasons = append(reasons, fmt.Sprintf("pipeline %s: no handler process is up (0 of %d)", name, ps.Plugin.Instances))
			}
			if ps.State == StateRunning && !ps.Source.Connected {
				reasons = append(reasons, "pipeline "+name+": source not connected: "+ps.Source.Error)
			}
		}
		st.Pipelines = append(st.Pipelines, ps)
	}
	if len(reasons) > 0 {
		st.Ready, st.Reason = false, strings.Join(reasons, "; ")
	}
	return st
}

// breakers returns the pipeline's breakers, the handler's first.
func (pl *pipeline) breakers() []*breaker {
	out := []*breaker{pl.handlerBreaker}
	names := make([]string, 0, len(pl.sinkBreakers))
	for n := range pl.sinkBreakers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, pl.sinkBreakers[n])
	}
	if pl.dlqBreaker != nil {
		out = append(out, pl.dlqBreaker)
	}
	if pl.redisBreaker != nil {
		out = append(out, pl.redisBreaker)
	}
	return out
}

func (pl *pipeline) fillStatus(ps *PipelineStatus) {
	ps.Counters = pl.stats.Snapshot()
	ps.Counters.Pipeline = pl.cfg.Name
	if pl.restarts != nil {
		ps.Counters.PluginRestarts = pl.restarts()
	}
	for _, b := range pl.breakers() {
		ps.Breakers = append(ps.Breakers, BreakerStatus{Name: b.name, State: b.state()})
	}
	ps.InflightBytes, ps.MaxInflightBytes = ps.Counters.InflightBytes, pl.cfg.MaxInflightBytes
	ps.DLQ = ps.Counters.DLQ
	info := pl.handlerInfo()
	ps.Plugin = PluginStatus{Name: info.Name, Version: info.Version, Instances: pl.cfg.Handler.Instances, Restarts: ps.Counters.PluginRestarts}
	if pl.alive != nil {
		ps.Plugin.Up, _ = pl.alive()
	}
	ps.Source.Connected = true
	if err := pl.sourceErr(); err != nil {
		ps.Source.Connected, ps.Source.Error = false, err.Error()
	}
	lags := pl.partitionLags()
	now := time.Now()
	ps.Events = RebalanceInfo{Assigned: pl.stats.Assigned.Load(), Revoked: pl.stats.Revoked.Load(), Lost: pl.stats.Lost.Load()}

	pl.mu.Lock()
	type laneInfo struct {
		part   record.Partition
		gen    int64
		paused bool
	}
	lanes := make([]laneInfo, 0, len(pl.lanes))
	for p, l := range pl.lanes {
		lanes = append(lanes, laneInfo{p, l.gen, pl.paused[p]})
	}
	for p := range pl.paused {
		ps.Paused = append(ps.Paused, p.String())
	}
	pl.mu.Unlock()
	sort.Strings(ps.Paused)
	sort.Slice(lanes, func(i, j int) bool { return partLess(lanes[i].part, lanes[j].part) })

	pl.commits.mu.Lock()
	for _, l := range lanes {
		ls := LaneStatus{Topic: l.part.Stream, Partition: l.part.ID, Generation: l.gen, Paused: l.paused}
		ls.Lag = lags[l.part]
		ls.OldestSeconds = ls.Lag.OldestAge(now).Seconds()
		ps.Lag.Lag += ls.Lag.Lag
		ps.Lag.Drainable += ls.Lag.Drainable
		ps.Lag.Blocked += ls.Lag.Blocked
		ps.Lag.MaxMillisBehind = max(ps.Lag.MaxMillisBehind, ls.Lag.MillisBehind)
		if pos, ok := pl.commits.committed[l.part]; ok {
			ls.Committed = pos.String()
		}
		ps.Lanes = append(ps.Lanes, ls)
	}
	pl.commits.mu.Unlock()
}

// partLess orders partitions by stream, then numerically by Kafka id.
func partLess(a, b record.Partition) bool {
	if a.Stream != b.Stream {
		return a.Stream < b.Stream
	}
	if ai, bi := a.KafkaID(), b.KafkaID(); ai >= 0 && bi >= 0 {
		return ai < bi
	}
	return a.ID < b.ID
}

// AdminAddr returns the address the admin server listens on, once Run has
// started it; "" when it is off or not started.
func (h *Host) AdminAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.adminAddr
}

// startAdmin starts the admin server, if it is on, and returns its
// shutdown; nil if it is off or could not listen (that is logged as a warning, not
// fatal: the pipelines run without it).
func (h *Host) startAdmin() (stop func()) {
	addr := h.cfg.Admin.Addr
	if h.opts.AdminAddr != "" {
		addr = h.opts.AdminAddr
	}
	if addr == "" || addr == "off" {
		return nil
	}
	log := h.opts.Logger.With().Str("component", "admin").Logger()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn().Err(err).Str("addr", addr).Msg("admin server (metrics, health, status) not started: cannot listen; set admin.addr to another address or off")
		return nil
	}
	srv := &http.Server{Handler: h.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("admin server stopped")
		}
	}()
	h.mu.Lock()
	h.adminAddr = ln.Addr().String()
	h.mu.Unlock()
	log.Info().Str("addr", ln.Addr().String()).Msg("admin server listening: /metrics /healthz /readyz /status and a status page at /")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		h.mu.Lock()
		h.adminAddr = ""
		h.mu.Unlock()
	}
}

// AdminHandler returns the admin server's handler: /metrics, /healthz,
// /readyz, /status and the status page at /. Each call builds a new
// Prometheus registry of this host's own (never the global one), so several
// hosts in one process do not collide.
func (h *Host) AdminHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(h),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := h.Status()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": st.Ready, "reason": st.Reason})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, h.Status())
	})
	mux.HandleFunc("POST /admin/reload", h.serveReload)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(statusPage)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// statusPage is the live status page: one self-contained HTML file that
// polls /status.
//
//go:embed admin_page.html
var statusPage []byte
