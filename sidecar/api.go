package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar/ratelimit"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/valyala/fasthttp"
)

// api answers the local API's requests. It holds only what the handlers
// need, each behind the small interface declared here; the process
// (Sidecar) builds it and owns everything else: listeners, the reload
// watcher, snapshots, the lifecycle's goroutine, shutdown. docs/architecture.md
// shows the validate and mint paths through it.
type api struct {
	cfg      *atomic.Pointer[config.Config] // the running config; a request reads it once
	verdicts *resolve.Resolver              // the cache tiers, and upstream behind them
	link     link
	client   func() upstreamClient // the current client: a reload may swap it
	limits   rateLimits
	metrics  recorder
	// pages serve the routes that report on the process rather than on IDs
	// (/health, /healthz, /readyz, /metrics, and the worker's /api/health),
	// by the shape of answer their route family expects; nil: 404.
	pages [shapeCount][routeCount]fasthttp.RequestHandler

	log     *slog.Logger
	sink    *lineSink // access lines encoded by hand; nil: through log
	version string
	now     func() time.Time
	// injected says now is a test clock, to be used for request times too;
	// otherwise a request's time is the one fasthttp read it at.
	injected bool

	stamps    stamps        // request times formatted for worker answers
	draining  atomic.Bool   // shutdown began: new mints are refused
	busy      inflight      // requests waiting on upstream; shutdown waits for them
	ridPrefix string        // random per process, so generated request IDs are unique
	ridSeq    atomic.Uint64 // generated request IDs: ridPrefix + counter

	// fleetLimit is the fleet mint limit (fleet.go); nil while the fleet
	// tier is off.
	fleetLimit fleetLimit

	// tracer makes the requests' server spans (tracing.go); off (or nil)
	// without tracing.endpoint. flights links the traces that share a
	// validate flight.
	tracer  *tracing.Tracer
	flights tracing.Flights
}

// link is the upstream lifecycle as the handlers see it.
type link interface {
	// State is read lock-free on every request.
	State() fsm.State
	// Snapshot is the lifecycle's detail for /health and /readyz.
	Snapshot() fsm.Snapshot
}

var _ link = (*fsm.Lifecycle)(nil)

// upstreamClient is what the handlers need from the upstream client.
type upstreamClient interface {
	Mint(ctx context.Context, m upstream.MintRequest, key string, info upstream.CallInfo) (upstream.Minted, error)
	MintBatch(ctx context.Context, ms []upstream.MintRequest, key string, info upstream.CallInfo) ([]string, error)
	Validate(ctx context.Context, id string, info upstream.CallInfo) (upstream.Verdict, error)
}

var _ upstreamClient = (*upstream.Client)(nil)

// rateLimits are the local rate limits (docs/rate-limits.md).
type rateLimits interface {
	AllowMint(caller string, n int) (ok bool, retryAfter time.Duration)
	CanMint(caller string, n int) (ok bool, retryAfter time.Duration)
	AllowValidate() (ok bool, retryAfter time.Duration)
}

var _ rateLimits = (*ratelimit.Limiter)(nil)

// recorder counts answered requests, for the metrics.
type recorder interface {
	record(res result, status int, d time.Duration)
}

var _ recorder = (*metrics)(nil)

// result is what a handler tells about the answer it wrote: metrics and
// the access log read it, never the answer itself.
type result struct {
	route  route
	family family
	xc     xcKind // the X-Cache kind of a validate answer
	// code is the error code of an error answer; "" for a success.
	code string
	// reason flags a success that is not plain, for the access log:
	// BAD_FORMAT for an ID the local check refused.
	reason string
	// attempts counts the upstream attempts behind the answer.
	attempts int
	// limited says a local rate limit refused the request.
	limited bool
	// span is the request's server span, if it made one (tracing.go);
	// handle ends it.
	span tracing.Span
}

// reasons maps error codes to the access log's reason flags.
var reasons = map[string]string{
	codeCircuitOpen:  "CB_OPEN",
	codeRateLimited:  "RATE_LIMITED",
	codeFallback:     "FALLBACK",
	codeTimeout:      "TIMEOUT",
	codeShuttingDown: "SHUTTING_DOWN",
}

// flag is the access log's reason: the error code (or its short flag), or
// why a success was not plain (served stale, a bad format, retried).
func (r result) flag() string {
	switch {
	case r.code != "":
		if f, ok := reasons[r.code]; ok {
			return f
		}
		return r.code
	case r.reason != "":
		return r.reason
	case r.xc == xcStale:
		return "STALE_SERVED"
	case r.attempts > 1:
		return "RETRIED"
	}
	return ""
}

// handle is the request handler: every route of docs/api.md.
func (a *api) handle(ctx *fasthttp.RequestCtx) {
	defer a.recoverPanic(ctx)
	a.setRequestID(ctx)
	cfg := a.cfg.Load() // one config snapshot for the whole request
	res := a.dispatch(ctx, cfg)
	d := time.Since(ctx.Time())
	status := ctx.Response.StatusCode()
	a.endServer(ctx, &res, status)
	a.metrics.record(res, status, d)
	a.accessLog(ctx, cfg, res, d)
}

// recoverPanic turns a handler panic into a 500 answer: fasthttp itself does
// not recover, and one bad request must not take the sidecar down.
func (a *api) recoverPanic(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		a.log.Error("handler panic", "requestId", string(ctx.Response.Header.Peek(headerRequestID)),
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		ctx.Response.ResetBody()
		writeError(ctx, newAPIError(codeInternal, "internal error"), nil)
	}
}

// setRequestID takes the caller's X-Request-ID (if short and printable) or
// makes one, and puts it on the response.
func (a *api) setRequestID(ctx *fasthttp.RequestCtx) {
	if id := ctx.Request.Header.PeekCanonical(keyRequestID); len(id) > 0 && len(id) <= 128 && printable(id) {
		ctx.Response.Header.SetCanonical(keyRequestID, id)
		return
	}
	var buf [32]byte
	b := append(buf[:0], a.ridPrefix...)
	b = strconv.AppendUint(b, a.ridSeq.Add(1), 16)
	ctx.Response.Header.SetCanonical(keyRequestID, b)
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// requestTime is the time a request is judged at (cache freshness, Age).
func (a *api) requestTime(ctx *fasthttp.RequestCtx) time.Time {
	if a.injected {
		return a.now()
	}
	return ctx.Time()
}
