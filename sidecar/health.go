package sidecar

import (
	"fmt"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// healthz is liveness: 200 while the process serves requests, whatever
// upstream does.
func (s *Sidecar) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentJSON)
	ctx.SetBodyString(`{"status":"ok"}`)
}

// ready applies readiness.policy (design §5) to the lifecycle state. After
// shutdown began it is false whatever the policy.
func (s *Sidecar) ready(cfg *config.Config, snap fsm.Snapshot) bool {
	if s.draining.Load() {
		return false
	}
	switch cfg.Readiness.Policy {
	case config.ReadinessAlways:
		return true
	case config.ReadinessConnected:
		return snap.State == fsm.Connected
	}
	return snap.State == fsm.Connected || (snap.State == fsm.Reconnecting && snap.EverConnected)
}

// readyz is readiness.
func (s *Sidecar) readyz(ctx *fasthttp.RequestCtx) {
	cfg := s.cfg.Load()
	snap := s.link.Snapshot()
	ready := s.ready(cfg, snap)
	status := 200
	if !ready {
		status = 503
	}
	writeJSON(ctx, status, struct {
		Ready  bool                   `json:"ready"`
		State  fsm.State              `json:"state"`
		Policy config.ReadinessPolicy `json:"policy"`
	}{ready, snap.State, cfg.Readiness.Policy})
}

// healthDoc is the /health status document (design §5): the fields of the JS
// layer's getServiceHealth() where the meaning carries over, and more.
type healthDoc struct {
	Service     string           `json:"service"`
	Status      string           `json:"status"`
	Ready       bool             `json:"ready"`
	Version     string           `json:"version"`
	Uptime      string           `json:"uptime"`
	UptimeSecs  int64            `json:"uptimeSeconds"`
	Connection  healthConn       `json:"connection"`
	Resilience  healthResil      `json:"resilience"`
	Upstream    healthUpstream   `json:"upstream"`
	Readiness   healthReadiness  `json:"readiness"`
	Config      config.Status    `json:"config"`
	Transitions []fsm.Transition `json:"transitions"`
	Format      string           `json:"format"`
	Entity      []string         `json:"entityTypes"`
	Mode        string           `json:"mode"`
}

type healthConn struct {
	Initialized       bool       `json:"initialized"`
	State             fsm.State  `json:"state"`
	StateSince        time.Time  `json:"stateSince"`
	IsHealthy         bool       `json:"isHealthy"`
	LastHealthCheck   *time.Time `json:"lastHealthCheck"`
	ReconnectAttempts int        `json:"reconnectAttempts"`
	FailedPolls       int        `json:"consecutiveFailedPolls"`
	EverConnected     bool       `json:"everConnected"`
	Stats             healthPoll `json:"stats"`
}

type healthPoll struct {
	PollsOK     int64    `json:"pollsOk"`
	PollsFailed int64    `json:"pollsFailed"`
	LastPoll    fsm.Poll `json:"lastPoll"`
}

type healthResil struct {
	Enabled        bool          `json:"enabled"`
	CircuitBreaker healthBreaker `json:"circuitBreaker"`
	Cache          healthCache   `json:"cache"`
}

type healthBreaker struct {
	State    upstream.BreakerState `json:"state"`
	Failures int64                 `json:"failures"`
	Trips    int64                 `json:"trips"`
}

type healthCache struct {
	Hits        int64  `json:"hits"`
	Misses      int64  `json:"misses"`
	StaleServed int64  `json:"staleServed"`
	Evictions   int64  `json:"evictions"`
	Coalesced   int64  `json:"coalesced"`
	Size        int64  `json:"size"`
	Bytes       int64  `json:"bytes"`
	MaxSizeMB   int    `json:"maxSizeMB"`
	TTLMs       int64  `json:"ttlMs"`
	HitRate     string `json:"hitRate"`
}

type healthUpstream struct {
	URL       string           `json:"url"`
	Dialect   upstream.Dialect `json:"dialect"`
	Token     bool             `json:"tokenConfigured"`
	InFlight  int              `json:"mintsInFlight"`
	PollEvery string           `json:"pollInterval"`
}

type healthReadiness struct {
	Policy config.ReadinessPolicy `json:"policy"`
	Ready  bool                   `json:"ready"`
}

// health answers /health and /v1/health: the document, 200 while ready and
// 503 otherwise. It never contains the token.
func (s *Sidecar) health(ctx *fasthttp.RequestCtx) {
	cfg := s.cfg.Load()
	snap := s.link.Snapshot()
	ready := s.ready(cfg, snap)
	client := s.client.Load()
	now := s.now()
	doc := healthDoc{
		Service:     "chittyid-sidecar",
		Status:      "ready",
		Ready:       ready,
		Version:     s.version,
		Uptime:      now.Sub(s.started).Round(time.Second).String(),
		UptimeSecs:  int64(now.Sub(s.started) / time.Second),
		Connection:  connection(snap),
		Resilience:  s.resilience(cfg),
		Upstream:    healthUpstream{URL: redactURL(cfg.Upstream.URL), Dialect: cfg.Upstream.Dialect, Token: client.HasToken(), InFlight: client.InFlight(), PollEvery: cfg.Health.Interval.String()},
		Readiness:   healthReadiness{Policy: cfg.Readiness.Policy, Ready: ready},
		Config:      s.configStatus(),
		Transitions: snap.Transitions,
		Format:      cfg.Format.String(),
		Mode:        string(cfg.Validation.Mode),
	}
	for _, e := range upstream.Entities() {
		doc.Entity = append(doc.Entity, e.String())
	}
	status := 200
	if !ready {
		status, doc.Status = 503, "not ready"
	}
	writeJSON(ctx, status, doc)
}

func connection(snap fsm.Snapshot) healthConn {
	c := healthConn{
		Initialized:       snap.Polls.OK+snap.Polls.Failed > 0,
		State:             snap.State,
		StateSince:        snap.StateSince,
		IsHealthy:         snap.State == fsm.Connected,
		ReconnectAttempts: snap.Attempts,
		FailedPolls:       snap.Failures,
		EverConnected:     snap.EverConnected,
		Stats:             healthPoll{PollsOK: snap.Polls.OK, PollsFailed: snap.Polls.Failed, LastPoll: snap.LastPoll},
	}
	if !snap.LastPoll.Time.IsZero() {
		t := snap.LastPoll.Time
		c.LastHealthCheck = &t
	}
	return c
}

func (s *Sidecar) resilience(cfg *config.Config) healthResil {
	st := s.cache.Stats()
	rate := 0.0
	if n := st.Hits + st.Misses; n > 0 {
		rate = 100 * float64(st.Hits) / float64(n)
	}
	return healthResil{
		Enabled:        true,
		CircuitBreaker: healthBreaker{State: s.breaker.State(), Failures: s.breaker.Failures(), Trips: s.breaker.Trips()},
		Cache: healthCache{
			Hits: st.Hits, Misses: st.Misses, StaleServed: st.StaleServed, Evictions: st.Evictions,
			Coalesced: st.Coalesced, Size: st.Entries, Bytes: st.Bytes, MaxSizeMB: cfg.Cache.MaxSizeMB,
			TTLMs: cfg.Validation.TTL.Milliseconds(), HitRate: fmt.Sprintf("%.2f%%", rate),
		},
	}
}

// configStatus is the reload state; without a watcher (dev mode, serve
// without a file) the config is generation 1 and never reloads.
func (s *Sidecar) configStatus() config.Status {
	if s.watcher != nil {
		return s.watcher.Status()
	}
	return config.Status{Generation: 1, LoadedAt: s.started, RestartRequired: []string{}}
}
