package sidecar

import (
	"fmt"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// healthz is liveness: 200 while the process serves requests, whatever
// upstream does.
func (s *Sidecar) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentJSON)
	ctx.SetBodyString(`{"status":"ok"}`)
}

// readiness applies readiness.policy (docs/lifecycle.md, "Probes and readiness") to the lifecycle state and
// says why, for /readyz and /health. After shutdown began it is false
// whatever the policy.
func (s *Sidecar) readiness(cfg *config.Config, snap fsm.Snapshot) (bool, string) {
	if s.api.draining.Load() {
		return false, "shutting down"
	}
	switch cfg.Readiness.Policy {
	case config.ReadinessAlways:
		return true, "policy always: ready while the listener is up"
	case config.ReadinessConnected:
		if snap.State == fsm.Connected {
			return true, "upstream CONNECTED"
		}
		return false, "upstream " + string(snap.State) + ": policy connected needs CONNECTED"
	}
	return s.degradedReadiness(cfg, snap)
}

// degradedReadiness is readiness.policy degraded: ready while upstream is
// CONNECTED, while it is RECONNECTING after having been CONNECTED since
// start (the cache is warm), and, for a sidecar that has not reached
// upstream since start, while it is RECONNECTING or FAILED if it restored
// entries from its snapshot that can still be served: at least
// one is younger than validate.staleIfError (or ttl, if longer).
//
// Connected once, a FAILED sidecar is not ready, snapshot or not; so a
// sidecar that restored a snapshot and then reached upstream follows the
// ordinary rule from then on.
func (s *Sidecar) degradedReadiness(cfg *config.Config, snap fsm.Snapshot) (bool, string) {
	switch {
	case snap.State == fsm.Connected:
		return true, "upstream CONNECTED"
	case snap.State == fsm.Reconnecting && snap.EverConnected:
		return true, "upstream RECONNECTING after having been CONNECTED: the cache answers validates"
	case snap.State == fsm.Failed && snap.EverConnected:
		return false, "upstream FAILED: reconnect attempts exhausted"
	case snap.State != fsm.Reconnecting && snap.State != fsm.Failed:
		return false, "upstream " + string(snap.State)
	}
	state := string(snap.State)
	n, newest := s.snaps.restored()
	if n == 0 {
		return false, "upstream " + state + " and never reached since start; no snapshot entries restored"
	}
	v := cfg.Validation
	until := newest.Add(max(v.TTL, v.StaleIfError))
	if !s.now().Before(until) {
		return false, fmt.Sprintf("upstream %s and never reached since start; the %d entries restored from the snapshot are all older than validate.staleIfError", state, n)
	}
	return true, fmt.Sprintf("upstream %s and never reached since start, but %d entries restored from the snapshot answer validates (the newest until %s)",
		state, n, until.UTC().Format(time.RFC3339))
}

// readyz is readiness.
func (s *Sidecar) readyz(ctx *fasthttp.RequestCtx) {
	cfg := s.cfg.Load()
	snap := s.life.Snapshot()
	ready, reason := s.readiness(cfg, snap)
	status := 200
	if !ready {
		status = 503
	}
	writeJSON(ctx, status, struct {
		Ready  bool                   `json:"ready"`
		State  fsm.State              `json:"state"`
		Policy config.ReadinessPolicy `json:"policy"`
		Reason string                 `json:"reason"`
	}{ready, snap.State, cfg.Readiness.Policy, reason})
}

// health answers /health and /v1/health: the document, 200 while ready and
// 503 otherwise. It never contains the token.
func (s *Sidecar) health(ctx *fasthttp.RequestCtx) {
	cfg := s.cfg.Load()
	snap := s.life.Snapshot()
	ready, reason := s.readiness(cfg, snap)
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
		Upstream:    upstreamHealth(cfg, client),
		Readiness:   healthReadiness{Policy: cfg.Readiness.Policy, Ready: ready, Reason: reason},
		Config:      s.configStatus(),
		Snapshot:    s.snapshotHealth(cfg),
		Fleet:       s.fleetHealth(cfg),
		Transitions: snap.Transitions,
		Format:      cfg.Format.String(),
		Mode:        string(cfg.Validation.Mode),
	}
	for _, e := range chittyid.Entities() {
		doc.Entity = append(doc.Entity, e.String())
	}
	status := 200
	if !ready {
		status, doc.Status = 503, "not ready"
	}
	writeJSON(ctx, status, doc)
}

// configStatus is the reload state; without a watcher (dev mode, serve
// without a file) the config is generation 1 and never reloads.
func (s *Sidecar) configStatus() config.Status {
	if s.watcher != nil {
		return s.watcher.Status()
	}
	return config.Status{Generation: 1, LoadedAt: s.started, RestartRequired: []string{}}
}
