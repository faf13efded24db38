package sidecar

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/valyala/fasthttp"
)

// The request side of tracing (docs/observability.md, "Tracing"). A
// request that goes upstream gets a server span, begun when the request
// was read and ended once it is answered (handle), in the app's trace when
// its request carried a traceparent; the upstream client hangs the
// attempts, backoffs and slot waits off it, and a validate miss adds its
// wait for the flight, the flight and the fleet tier call. Any other
// request gets one only when its traceparent is sampled, so a cached
// validate costs one atomic load with tracing off, and a header check
// with it on.

// startServer starts the server span of a request that is about to go
// upstream, as a child of parent (a context of the request's own
// deadline) in the trace info carries; with tracing off it returns parent
// and the zero Span.
func (a *api) startServer(ctx *fasthttp.RequestCtx, parent context.Context, trace tracing.Remote) (context.Context, tracing.Span) {
	return a.tracer.StartServer(parent, trace, "request", ctx.Time())
}

// endServer describes a request's server span with what was answered
// (HTTP server conventions: method, route, path, status) and ends it.
// A request that made no span gets one here, begun when it was read, when
// tracing is on and its traceparent is sampled: the app asked for it. (A
// span made before a reload turned tracing off is still ended.)
func (a *api) endServer(ctx *fasthttp.RequestCtx, res *result, status int) {
	if res.span.None() {
		if !a.tracer.On() {
			return
		}
		tp := ctx.Request.Header.Peek("traceparent")
		if !tracing.SampledHeader(tp) {
			return
		}
		_, res.span = a.startServer(ctx, context.Background(), tracing.ParseRemote(tp, ctx.Request.Header.Peek("tracestate")))
	}
	s := res.span
	if s.Recording() {
		method := string(ctx.Method())
		tmpl := routeTemplate(ctx.Path(), res.route, res.family)
		s.SetName(method + " " + tmpl)
		attrs := append(make([]tracing.Attr, 0, 10),
			tracing.String("http.request.method", method),
			tracing.String("http.route", tmpl),
			tracing.String("url.path", string(ctx.Path())),
			tracing.String("url.scheme", "http"),
			tracing.Int("http.response.status_code", status),
			tracing.String("chittyid.route.family", familyNames[res.family]))
		if rid := ctx.Response.Header.PeekBytes(keyRequestID); len(rid) > 0 {
			attrs = append(attrs, tracing.String("chittyid.request_id", string(rid)))
		}
		if res.xc != xcNone {
			attrs = append(attrs, tracing.String("chittyid.cache", xcNames[res.xc]))
		}
		if res.code != "" {
			attrs = append(attrs, tracing.String("chittyid.error_code", res.code))
		}
		s.SetAttrs(attrs...)
		if status >= 500 {
			s.Fail(strconv.Itoa(status))
		}
	}
	s.End()
}

// routeTemplate is the route of a request as http.route names it: the
// path its family's prefix and route give, the ID as {id}.
func routeTemplate(path []byte, r route, fam family) string {
	prefix := ""
	switch fam {
	case familyV1:
		prefix = "/v1"
	case familyAPIV1:
		prefix = "/api/v1"
	case familyWorker:
		return string(path) // fixed paths of their own
	}
	switch r {
	case routeValidate:
		return prefix + "/validate/{id}"
	case routeValidatePost:
		return prefix + "/validate"
	case routeMint:
		return prefix + "/mint"
	case routeMintBatch:
		return prefix + "/mint/batch"
	case routeOther:
		return prefix + "/*"
	}
	return string(path)
}

// exportErrors logs failed span exports: the first, then at most one a
// minute with the count of spans dropped since (the drop counter has them
// all), so a collector that is down does not flood the log.
type exportErrors struct {
	log *slog.Logger
	// mu guards last and dropped.
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (e *exportErrors) report(err error, spans int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropped += spans
	if now := time.Now(); now.Sub(e.last) >= time.Minute {
		e.log.Warn("trace export failed: spans dropped", "err", err.Error(), "spans", e.dropped)
		e.last, e.dropped = now, 0
	}
}
