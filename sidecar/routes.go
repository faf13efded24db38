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

// handle is the sidecar's request handler: every route of design §2.
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
// answer's X-Cache kind.
func (s *Sidecar) dispatch(ctx *fasthttp.RequestCtx, cfg *config.Config) (route, xcKind) {
	path := ctx.Path()
	rest, api := cutAPIPrefix(path)
	if !api {
		switch string(path) {
		case "/health":
			s.onlyGet(ctx, s.health)
			return routeHealth, xcNone
		case "/healthz":
			s.onlyGet(ctx, s.healthz)
			return routeHealthz, xcNone
		case "/readyz":
			s.onlyGet(ctx, s.readyz)
			return routeReadyz, xcNone
		case "/metrics":
			s.onlyGet(ctx, s.metrics.handler)
			return routeMetrics, xcNone
		}
		writeError(ctx, newAPIError(codeNotFound, "no route "+clipPath(path)), nil)
		return routeOther, xcNone
	}
	if bytes.HasPrefix(rest, routeValid) {
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET")
			return routeValidate, xcNone
		}
		return routeValidate, s.validate(ctx, cfg, rest[len(routeValid):])
	}
	switch string(rest) {
	case "/mint":
		if s.onlyPost(ctx) {
			s.mint(ctx, cfg)
		}
		return routeMint, xcNone
	case "/mint/batch":
		if s.onlyPost(ctx) {
			s.mintBatch(ctx, cfg)
		}
		return routeMintBatch, xcNone
	case "/validate":
		if s.onlyPost(ctx) {
			return routeValidatePost, s.validateBody(ctx, cfg)
		}
		return routeValidatePost, xcNone
	case "/health":
		s.onlyGet(ctx, s.health)
		return routeHealth, xcNone
	}
	writeError(ctx, newAPIError(codeNotFound, "no route "+clipPath(path)), nil)
	return routeOther, xcNone
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
