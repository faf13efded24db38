package sidecar

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

var (
	prefixV1    = []byte("/v1")
	prefixAPIV1 = []byte("/api/v1")
	routeValid  = []byte("/validate/")
)

// handle is the sidecar's request handler: every route of design §2.
func (s *Sidecar) handle(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	s.setRequestID(ctx)
	cfg := s.cfg.Load() // one snapshot for the whole request
	path := ctx.Path()
	rest, api := cutAPIPrefix(path)
	if !api {
		switch string(path) {
		case "/health":
			s.onlyGet(ctx, s.health)
		case "/healthz":
			s.onlyGet(ctx, s.healthz)
		case "/readyz":
			s.onlyGet(ctx, s.readyz)
		default:
			writeError(ctx, newAPIError(codeNotFound, "no route "+clipPath(path)), nil)
		}
		return
	}
	if bytes.HasPrefix(rest, routeValid) {
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET")
			return
		}
		s.validate(ctx, cfg, string(rest[len(routeValid):]))
		return
	}
	switch string(rest) {
	case "/mint":
		if s.onlyPost(ctx) {
			s.mint(ctx, cfg)
		}
	case "/mint/batch":
		if s.onlyPost(ctx) {
			s.mintBatch(ctx, cfg)
		}
	case "/validate":
		if s.onlyPost(ctx) {
			s.validateBody(ctx, cfg)
		}
	case "/health":
		s.onlyGet(ctx, s.health)
	default:
		writeError(ctx, newAPIError(codeNotFound, "no route "+clipPath(path)), nil)
	}
}

// cutAPIPrefix strips /v1 or /api/v1 (every /v1 route is served under both).
func cutAPIPrefix(path []byte) ([]byte, bool) {
	for _, p := range [...][]byte{prefixV1, prefixAPIV1} {
		if bytes.HasPrefix(path, p) && len(path) > len(p) && path[len(p)] == '/' {
			return path[len(p):], true
		}
	}
	return nil, false
}

func (s *Sidecar) onlyPost(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsPost() {
		return true
	}
	methodNotAllowed(ctx, "POST")
	return false
}

func (s *Sidecar) onlyGet(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) {
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	h(ctx)
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeError(ctx, newAPIError(codeMethodNotAllowed, string(ctx.Method())+" is not allowed here; use "+allow), nil)
}

func clipPath(p []byte) string {
	if len(p) > 64 {
		p = p[:64]
	}
	return fmt.Sprintf("%q", p)
}

// recoverPanic turns a handler panic into a 500 answer: fasthttp itself does
// not recover, and one bad request must not take the sidecar down.
func (s *Sidecar) recoverPanic(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		s.log.Error("handler panic", "requestId", string(ctx.Response.Header.Peek(headerRequestID)),
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		ctx.Response.ResetBody()
		writeError(ctx, newAPIError(codeInternal, "internal error"), nil)
	}
}

// healthz is liveness: 200 while the process serves requests.
func (s *Sidecar) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentJSON)
	ctx.SetBodyString(`{"status":"ok"}`)
}

// ready reports readiness. Until the lifecycle drives it: ready unless
// shutting down.
func (s *Sidecar) ready() bool { return !s.draining.Load() }

// readyz is readiness.
func (s *Sidecar) readyz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentJSON)
	if !s.ready() {
		ctx.SetStatusCode(503)
		ctx.SetBodyString(`{"ready":false,"state":"` + s.link.State() + `"}`)
		return
	}
	ctx.SetBodyString(`{"ready":true,"state":"` + s.link.State() + `"}`)
}

// healthDoc is the /health status document (design §5, contract §5).
type healthDoc struct {
	Service    string         `json:"service"`
	Status     string         `json:"status"`
	Version    string         `json:"version"`
	Uptime     string         `json:"uptime"`
	Connection healthConn     `json:"connection"`
	Resilience healthResil    `json:"resilience"`
	Upstream   healthUpstream `json:"upstream"`
	Format     string         `json:"format"`
	Entity     []string       `json:"entityTypes"`
	Mode       string         `json:"mode"`
}

type healthConn struct {
	Initialized bool   `json:"initialized"`
	State       string `json:"state"`
	IsHealthy   bool   `json:"isHealthy"`
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
	HitRate     string `json:"hitRate"`
}

type healthUpstream struct {
	URL     string           `json:"url"`
	Dialect upstream.Dialect `json:"dialect"`
	Token   bool             `json:"tokenConfigured"`
}

// health answers /health and /v1/health: the document, 200 while ready.
func (s *Sidecar) health(ctx *fasthttp.RequestCtx) {
	cfg := s.cfg.Load()
	st := s.cache.Stats()
	rate := 0.0
	if n := st.Hits + st.Misses; n > 0 {
		rate = 100 * float64(st.Hits) / float64(n)
	}
	ready := s.ready()
	doc := healthDoc{
		Service: "chittyid-sidecar",
		Status:  map[bool]string{true: "ready", false: "not ready"}[ready],
		Version: s.version,
		Uptime:  s.now().Sub(s.started).Round(time.Second).String(),
		Connection: healthConn{
			Initialized: true,
			State:       s.link.State(),
			IsHealthy:   !s.link.FailFast(),
		},
		Resilience: healthResil{
			Enabled:        true,
			CircuitBreaker: healthBreaker{State: s.breaker.State(), Failures: s.breaker.Failures(), Trips: s.breaker.Trips()},
			Cache: healthCache{
				Hits: st.Hits, Misses: st.Misses, StaleServed: st.StaleServed, Evictions: st.Evictions,
				Coalesced: st.Coalesced, Size: st.Entries, Bytes: st.Bytes, MaxSizeMB: cfg.Cache.MaxSizeMB,
				HitRate: fmt.Sprintf("%.2f%%", rate),
			},
		},
		Upstream: healthUpstream{URL: redactURL(cfg.Upstream.URL), Dialect: cfg.Upstream.Dialect, Token: s.client.Load().HasToken()},
		Format:   cfg.Format.String(),
		Mode:     string(cfg.Validation.Mode),
	}
	for _, e := range upstream.Entities() {
		doc.Entity = append(doc.Entity, e.String())
	}
	status := 200
	if !ready {
		status = 503
	}
	writeJSON(ctx, status, doc)
}
