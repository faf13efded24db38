package sidecar

import (
	"bytes"
	"fmt"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

// route identifies a route in metrics and logs.
type route uint8

const (
	routeOther route = iota
	routeValidate
	routeValidatePost
	routeMint
	routeMintGet // a mint from the query (GET /api/get-chittyid, GET /generate)
	routeMintBatch
	routeHealth
	routeHealthz
	routeReadyz
	routeMetrics
	routeSpec
	routeCount
)

var routeNames = [routeCount]string{"other", "validate", "validate_post", "mint", "mint_get", "mint_batch", "health", "healthz", "readyz", "metrics", "spec"}

func (r route) String() string { return routeNames[r] }

// timed says whether the route's handling time goes into
// request_duration_seconds: the routes that mint or validate. The probes,
// /health, /metrics and the spec answer from memory; they are counted in
// requests_total only.
func (r route) timed() bool {
	switch r {
	case routeValidate, routeValidatePost, routeMint, routeMintGet, routeMintBatch:
		return true
	}
	return false
}

// family is how a request reached its route: under /v1, under /api/v1, at
// the root (the 1.0.0 routes for apps whose base URL is the service's
// root), or by the worker's own routes (/api/…, /generate). It is a label
// in the metrics and a field of the access log.
type family uint8

const (
	familyV1 family = iota
	familyAPIV1
	familyRoot
	familyWorker
	familyCount
)

var familyNames = [familyCount]string{"v1", "api_v1", "root", "worker"}

// shape is the style of an answer: the 1.0.0 client's, or on the worker's
// routes the worker's, where every answer says "success" and carries a
// timestamp, and errors are {"success":false,"error":CODE,"message",…}.
type shape uint8

const (
	shapeClient shape = iota
	shapeWorker
	shapeCount
)

// shape is the answer style of the family's routes.
func (f family) shape() shape {
	if f == familyWorker {
		return shapeWorker
	}
	return shapeClient
}

var (
	prefixV1    = []byte("/v1")
	prefixAPIV1 = []byte("/api/v1")
	routeValid  = []byte("/validate/")
)

// dispatch serves the request and reports its result. Every route but the
// liveness and readiness probes checks the Host header first; the routes
// that mint or validate then refuse cross-site browser requests, and POST
// routes non-JSON bodies (docs/security.md).
func (a *api) dispatch(ctx *fasthttp.RequestCtx, cfg *config.Config) result {
	r, fam, id := routeOf(ctx.Path())
	res := a.serve(ctx, cfg, r, fam.shape(), id)
	res.route, res.family = r, fam
	return res
}

func (a *api) serve(ctx *fasthttp.RequestCtx, cfg *config.Config, r route, sh shape, id []byte) result {
	if r != routeHealthz && r != routeReadyz {
		if e := checkHost(ctx, &cfg.Security); e != nil {
			return sh.fail(ctx, e, nil)
		}
	}
	switch r {
	case routeValidate:
		if !ctx.IsGet() && !ctx.IsHead() {
			return methodNotAllowed(ctx, sh, "GET")
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			return sh.fail(ctx, e, nil)
		}
		return a.validate(ctx, cfg, sh, id)
	case routeMintGet:
		if !ctx.IsGet() { // not HEAD: a HEAD must not mint
			return methodNotAllowed(ctx, sh, "GET")
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			return sh.fail(ctx, e, nil)
		}
		return a.mintQuery(ctx, cfg, sh)
	case routeMint, routeMintBatch, routeValidatePost:
		if !ctx.IsPost() {
			return methodNotAllowed(ctx, sh, "POST")
		}
		if e := checkBrowser(ctx, &cfg.Security); e != nil {
			return sh.fail(ctx, e, nil)
		}
		if e := checkJSON(ctx); e != nil {
			return sh.fail(ctx, e, nil)
		}
		switch r {
		case routeMint:
			return a.mint(ctx, cfg, sh)
		case routeMintBatch:
			return a.mintBatch(ctx, cfg)
		}
		return a.validateBody(ctx, cfg, sh)
	case routeSpec:
		return onlyGet(ctx, sh, func(ctx *fasthttp.RequestCtx) { writeSpec(ctx, cfg.Format) })
	case routeHealth, routeHealthz, routeReadyz, routeMetrics:
		if h := a.pages[sh][r]; h != nil {
			return onlyGet(ctx, sh, h)
		}
	}
	return sh.fail(ctx, newAPIError(codeNotFound, "no route "+clipQuote(ctx.Path())), nil)
}

// routeOf names the route of path and the family it came by, and for
// GET …/validate/{id} returns the ID (still in the request's buffer). The
// client 1.0.0 routes are served under /v1, /api/v1 and at the root; the
// worker's own routes (docs/api.md, "Which client, which base URL") beside
// them.
func routeOf(path []byte) (route, family, []byte) {
	rest, fam := cutAPIPrefix(path)
	if fam == familyRoot {
		switch string(path) {
		case "/healthz":
			return routeHealthz, familyRoot, nil
		case "/readyz":
			return routeReadyz, familyRoot, nil
		case "/metrics":
			return routeMetrics, familyRoot, nil
		case "/api/get-chittyid", "/generate":
			return routeMintGet, familyWorker, nil
		case "/api/validate":
			return routeValidatePost, familyWorker, nil
		case "/api/health":
			return routeHealth, familyWorker, nil
		case "/api/spec":
			return routeSpec, familyWorker, nil
		}
	}
	if bytes.HasPrefix(rest, routeValid) {
		return routeValidate, fam, rest[len(routeValid):]
	}
	switch string(rest) {
	case "/mint":
		return routeMint, fam, nil
	case "/mint/batch":
		return routeMintBatch, fam, nil
	case "/validate":
		return routeValidatePost, fam, nil
	case "/health":
		return routeHealth, fam, nil
	}
	return routeOther, fam, nil
}

// cutAPIPrefix strips /v1 or /api/v1 and says which it was; any other path
// is at the root, returned whole.
func cutAPIPrefix(path []byte) ([]byte, family) {
	for _, p := range [...]struct {
		prefix []byte
		fam    family
	}{{prefixV1, familyV1}, {prefixAPIV1, familyAPIV1}} {
		if bytes.HasPrefix(path, p.prefix) && len(path) > len(p.prefix) && path[len(p.prefix)] == '/' {
			return path[len(p.prefix):], p.fam
		}
	}
	return path, familyRoot
}

// onlyGet serves a GET or HEAD with h, and refuses other methods.
func onlyGet(ctx *fasthttp.RequestCtx, sh shape, h fasthttp.RequestHandler) result {
	if !ctx.IsGet() && !ctx.IsHead() {
		return methodNotAllowed(ctx, sh, "GET, HEAD")
	}
	h(ctx)
	return result{}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, sh shape, allow string) result {
	ctx.Response.Header.Set("Allow", allow)
	return sh.fail(ctx, newAPIError(codeMethodNotAllowed, string(ctx.Method())+" is not allowed here; use "+allow), nil)
}

// clipQuote quotes caller input for a message, at most 64 bytes of it.
func clipQuote(p []byte) string {
	if len(p) > 64 {
		p = p[:64]
	}
	return fmt.Sprintf("%q", p)
}
