package sidecar

import (
	"bytes"
	"fmt"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

var (
	prefixV1    = []byte("/v1")
	prefixAPIV1 = []byte("/api/v1")
	routeValid  = []byte("/validate/")
)

// dispatch serves the request and reports its result. Every route but the
// liveness and readiness probes checks the Host header first; the routes
// that mint or validate then refuse cross-site browser requests, and POST
// routes non-JSON bodies (README.md, Security model).
func (a *api) dispatch(ctx *fasthttp.RequestCtx, cfg *config.Config) result {
	r, id := resolve(ctx.Path())
	res := a.serve(ctx, cfg, r, id)
	res.route = r
	return res
}

func (a *api) serve(ctx *fasthttp.RequestCtx, cfg *config.Config, r route, id []byte) result {
	if r != routeHealthz && r != routeReadyz {
		if e := checkHost(ctx, &cfg.Security); e != nil {
			return writeError(ctx, e, nil)
		}
	}
	switch r {
	case routeValidate:
		if !ctx.IsGet() && !ctx.IsHead() {
			return methodNotAllowed(ctx, "GET")
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			return writeError(ctx, e, nil)
		}
		return a.validate(ctx, cfg, id)
	case routeMint, routeMintBatch, routeValidatePost:
		if !ctx.IsPost() {
			return methodNotAllowed(ctx, "POST")
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			return writeError(ctx, e, nil)
		}
		if e := checkJSON(ctx); e != nil {
			return writeError(ctx, e, nil)
		}
		switch r {
		case routeMint:
			return a.mint(ctx, cfg)
		case routeMintBatch:
			return a.mintBatch(ctx, cfg)
		}
		return a.validateBody(ctx, cfg)
	case routeHealth, routeHealthz, routeReadyz, routeMetrics:
		if h := a.status[r]; h != nil {
			return onlyGet(ctx, h)
		}
	}
	return writeError(ctx, newAPIError(codeNotFound, "no route "+clipQuote(ctx.Path())), nil)
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

// onlyGet serves a GET or HEAD with h, and refuses other methods.
func onlyGet(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) result {
	if !ctx.IsGet() && !ctx.IsHead() {
		return methodNotAllowed(ctx, "GET, HEAD")
	}
	h(ctx)
	return result{}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) result {
	ctx.Response.Header.Set("Allow", allow)
	return writeError(ctx, newAPIError(codeMethodNotAllowed, string(ctx.Method())+" is not allowed here; use "+allow), nil)
}

// clipQuote quotes caller input for a message, at most 64 bytes of it.
func clipQuote(p []byte) string {
	if len(p) > 64 {
		p = p[:64]
	}
	return fmt.Sprintf("%q", p)
}
