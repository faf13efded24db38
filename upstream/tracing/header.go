package tracing

import (
	"context"
)

// Header returns the trace context to send upstream with a call made in
// ctx: the span ctx carries, as a child of the app's trace (the span's
// own ID as the parent ID), when it is sampled or the app's request
// carried a trace context; else, without a span (tracing off), the app's
// own, fallback, unchanged. A request without a trace context gets none
// invented unless tracing is on and samples it. traceparent is appended
// to dst; ok is false when there is nothing to send.
func Header(ctx context.Context, fallback Remote, dst []byte) (traceparent []byte, tracestate string, ok bool) {
	s := From(ctx)
	if s.s == nil {
		if !fallback.valid {
			return dst, "", false
		}
		return appendTraceParent(dst, fallback.traceID, fallback.spanID, fallback.flags), fallback.state, true
	}
	sc := s.s.SpanContext()
	if !sc.IsValid() || (!sc.IsSampled() && !s.forward) {
		return dst, "", false
	}
	return appendTraceParent(dst, sc.TraceID(), sc.SpanID(), byte(sc.TraceFlags())), sc.TraceState().String(), true
}
