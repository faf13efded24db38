package sidecar

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

var (
	prefixV1    = []byte("/v1")
	prefixAPIV1 = []byte("/api/v1")
	routeValid  = []byte("/validate/")
)

// handle is the sidecar's request handler: every route of README.md, Local API.
func (s *Sidecar) handle(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	s.setRequestID(ctx)
	cfg := s.cfg.Load() // one config snapshot for the whole request
	r, xc := s.dispatch(ctx, cfg)
	d := time.Since(ctx.Time())
	s.metrics.done(ctx, r, xc, d)
	s.accessLog(ctx, cfg, r, xc, d)
}

// dispatch serves the request and reports which route it was and the
// answer's X-Cache kind. Every route but the liveness and readiness probes
// checks the Host header first; the routes that mint or validate then
// refuse cross-site browser requests, and POST routes non-JSON bodies.
func (s *Sidecar) dispatch(ctx *fasthttp.RequestCtx, cfg *config.Config) (route, xcKind) {
	r, id := resolve(ctx.Path())
	if r != routeHealthz && r != routeReadyz {
		if e := checkHost(ctx, &cfg.Security); e != nil {
			writeError(ctx, e, nil)
			return r, xcNone
		}
	}
	switch r {
	case routeValidate:
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET")
			return r, xcNone
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			writeError(ctx, e, nil)
			return r, xcNone
		}
		return r, s.validate(ctx, cfg, id)
	case routeMint, routeMintBatch, routeValidatePost:
		if !s.onlyPost(ctx) {
			return r, xcNone
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			writeError(ctx, e, nil)
			return r, xcNone
		}
		if e := checkJSON(ctx); e != nil {
			writeError(ctx, e, nil)
			return r, xcNone
		}
		switch r {
		case routeMint:
			s.mint(ctx, cfg)
		case routeMintBatch:
			s.mintBatch(ctx, cfg)
		default:
			return r, s.validateBody(ctx, cfg)
		}
		return r, xcNone
	case routeHealth:
		s.onlyGet(ctx, s.health)
	case routeHealthz:
		s.onlyGet(ctx, s.healthz)
	case routeReadyz:
		s.onlyGet(ctx, s.readyz)
	case routeMetrics:
		s.onlyGet(ctx, s.metrics.handler)
	default:
		writeError(ctx, newAPIError(codeNotFound, "no route "+clipQuote(ctx.Path())), nil)
	}
	return r, xcNone
}

// resolve names the route of path and, for GET /v1/validate/{id}, returns
// the ID (still in the request's buffer).
func resolve(path []byte) (route, []byte) {
	rest, api := cutAPIPrefix(path)
	if !api {
		switch string(path) {
		case "/health":
			return routeHealth, nil
		case "/healthz":
			return routeHealthz, nil
		case "/readyz":
			return routeReadyz, nil
		case "/metrics":
			return routeMetrics, nil
		}
		return routeOther, nil
	}
	if bytes.HasPrefix(rest, routeValid) {
		return routeValidate, rest[len(routeValid):]
	}
	switch string(rest) {
	case "/mint":
		return routeMint, nil
	case "/mint/batch":
		return routeMintBatch, nil
	case "/validate":
		return routeValidatePost, nil
	case "/health":
		return routeHealth, nil
	}
	return routeOther, nil
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

// clipQuote quotes caller input for a message, at most 64 bytes of it.
func clipQuote(p []byte) string {
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
