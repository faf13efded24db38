package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/sidecar/conn"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// route is an API route, as counted in Stats and named in faults.
type route uint8

const (
	routeNone route = iota
	routeMint
	routeBatch
	routeValidate
	routeHealth
)

func (r route) String() string {
	switch r {
	case routeMint:
		return "mint"
	case routeBatch:
		return "batch"
	case routeValidate:
		return "validate"
	case routeHealth:
		return "health"
	}
	return ""
}

func routeByName(name string) route {
	for r := routeMint; r <= routeHealth; r++ {
		if r.String() == name {
			return r
		}
	}
	return routeNone
}

// endpoint is a route of one dialect.
type endpoint struct {
	route route
	post  bool // POST only; otherwise GET and HEAD
	open  bool // served without a token
	serve func(s *Sim, ctx *fasthttp.RequestCtx, f applied)
}

const validatePrefix = "/v1/validate/"

// lookup finds the endpoint of path in the configured dialect.
func (s *Sim) lookup(path string) (endpoint, bool) {
	if s.cfg.Dialect == upstream.DialectWorker {
		switch path {
		case "/health":
			return endpoint{route: routeHealth, open: true, serve: (*Sim).serveHealth}, true
		case "/v1/mint":
			// open: the worker leaves the token to its mint backend (serveWorkerMint).
			return endpoint{route: routeMint, post: true, open: true, serve: (*Sim).serveWorkerMint}, true
		case "/api/validate":
			return endpoint{route: routeValidate, post: true, serve: (*Sim).serveWorkerValidate}, true
		}
		return endpoint{}, false
	}
	switch {
	case path == "/v1/mint":
		return endpoint{route: routeMint, post: true, serve: (*Sim).serveMint}, true
	case path == "/v1/mint/batch":
		return endpoint{route: routeBatch, post: true, serve: (*Sim).serveBatch}, true
	case path == "/v1/health":
		return endpoint{route: routeHealth, open: true, serve: (*Sim).serveHealth}, true
	case len(path) > len(validatePrefix) && strings.HasPrefix(path, validatePrefix):
		return endpoint{route: routeValidate, serve: (*Sim).serveValidate}, true
	}
	return endpoint{}, false
}

// serveAPI is the API server's handler: it records the request, counts it,
// adds the configured latency, applies the fault in force, checks the token
// and serves the route.
func (s *Sim) serveAPI(ctx *fasthttp.RequestCtx) {
	rec := s.newRecord(ctx)
	defer func() {
		if p := recover(); p != nil {
			// The worker answers unhandled errors with 503 and a JSON body.
			s.writeError(ctx, fasthttp.StatusServiceUnavailable, "INTERNAL", fmt.Sprintf("internal error: %v", p))
		}
		if s.closing() {
			ctx.SetConnectionClose()
		}
		if !rec.closed {
			rec.Status = ctx.Response.StatusCode()
		}
		s.requests.add(rec.Request)
	}()
	ep, ok := s.lookup(string(ctx.Path()))
	rec.Route = ep.route.String()
	if !ok {
		s.writeError(ctx, fasthttp.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no route %s %s", ctx.Method(), ctx.Path()))
		return
	}
	if !ep.allows(ctx) {
		ctx.Response.Header.Set("Allow", ep.allow())
		s.writeError(ctx, fasthttp.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED",
			fmt.Sprintf("%s is not allowed on %s (allowed: %s)", ctx.Method(), ctx.Path(), ep.allow()))
		return
	}
	s.count(ep.route)
	s.sleep(s.cfg.Latency)
	f := s.takeFault(ep.route)
	if s.applyFault(ctx, ep.route, f) {
		rec.closed = f.Mode == ModeRefuse
		return
	}
	if (s.cfg.Latency > 0 || f.Mode == ModeSlow || f.Mode == ModeHang) && conn.Peer(ctx.Conn()) != conn.PeerThere {
		// The client gave up while the request was delayed: like a server
		// that cancels work on disconnect, do nothing (a mint mints nothing).
		s.stats.abandoned.Add(1)
		ctx.SetConnectionClose()
		rec.closed = true
		return
	}
	if !ep.open && !rec.Authorized {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="chittyid-sim"`)
		s.writeError(ctx, fasthttp.StatusUnauthorized, "UNAUTHORIZED", "missing or invalid bearer token")
		return
	}
	ep.serve(s, ctx, f)
}

func (ep endpoint) allows(ctx *fasthttp.RequestCtx) bool {
	if ep.post {
		return ctx.IsPost()
	}
	return ctx.IsGet() || ctx.IsHead()
}

func (ep endpoint) allow() string {
	if ep.post {
		return "POST"
	}
	return "GET, HEAD"
}

// record is a Request being recorded.
type record struct {
	Request
	closed bool // the connection was closed instead of answered
}

// newRecord copies what Request reports out of ctx.
func (s *Sim) newRecord(ctx *fasthttp.RequestCtx) record {
	h := &ctx.Request.Header
	return record{Request: Request{
		Method:         string(ctx.Method()),
		Path:           string(ctx.Request.URI().PathOriginal()),
		IdempotencyKey: string(h.Peek("Idempotency-Key")),
		RequestID:      string(h.Peek("X-Request-ID")),
		TraceParent:    string(h.Peek("traceparent")),
		TraceState:     string(h.Peek("tracestate")),
		Authorized:     s.authorized(ctx),
		Time:           time.Now(),
	}}
}

// authorized reports whether the request carries the bearer token, or no
// token is configured.
func (s *Sim) authorized(ctx *fasthttp.RequestCtx) bool {
	tok := *s.token.Load()
	if tok == "" {
		return true
	}
	h := ctx.Request.Header.Peek("Authorization")
	const scheme = "Bearer "
	return len(h) > len(scheme) && strings.EqualFold(string(h[:len(scheme)]), scheme) &&
		string(h[len(scheme):]) == tok
}

func (s *Sim) count(r route) {
	defer s.counted.notify()
	switch r {
	case routeMint:
		s.stats.mint.Add(1)
	case routeBatch:
		s.stats.batch.Add(1)
	case routeValidate:
		s.stats.validate.Add(1)
	case routeHealth:
		s.stats.health.Add(1)
	}
}

// apiError is the client-v1 error body.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// workerError is the worker's error body.
type workerError struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
}

// writeError answers an error in the dialect's shape.
func (s *Sim) writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	if s.cfg.Dialect == upstream.DialectWorker {
		writeJSON(ctx, status, workerError{Error: msg})
		return
	}
	writeJSON(ctx, status, apiError{Error: code, Message: msg})
}

// writeJSON answers v as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = fasthttp.StatusServiceUnavailable, []byte(`{"error":"INTERNAL","message":"encoding the answer failed"}`)
	}
	writeBody(ctx, status, b)
}

func writeBody(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// apiErrorHandler answers requests fasthttp could not parse.
func (s *Sim) apiErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "request body too large")
		return
	}
	s.writeError(ctx, fasthttp.StatusBadRequest, "BAD_REQUEST", "malformed HTTP request")
}
