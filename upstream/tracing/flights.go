package tracing

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Flights links the traces of the callers that share one upstream call:
// a validate flight runs once for every caller that misses the same ID at
// the same time, detached from all of them, and carries the trace context
// of the caller that started it (its leader) upstream. The others' wait
// spans link to the leader's flight span instead, so each caller's trace
// leads to the call that answered it. The zero Flights is ready to use.
type Flights struct {
	m sync.Map // flight key -> *trace.SpanContext of the flight's span
}

// Lead records the span ctx carries (the flight's own) as the flight for
// key until the returned function is called, when the flight ends.
func (f *Flights) Lead(ctx context.Context, key string) (end func()) {
	s := From(ctx)
	if !s.Recording() {
		return func() {}
	}
	sc := s.s.SpanContext()
	p := &sc
	f.m.Store(key, p)
	return func() { f.m.CompareAndDelete(key, p) }
}

// StartWait starts the span of a caller's wait for key's flight, as Start
// does; when a flight for key is under way, the span links to it (the
// caller is one of its waiters; chittyid.flight.coalesced is set).
func (f *Flights) StartWait(ctx context.Context, name, key string) (context.Context, Span) {
	parent := From(ctx)
	if !parent.Recording() {
		return Start(ctx, name, KindInternal)
	}
	var links []trace.Link
	if v, ok := f.m.Load(key); ok {
		links = append(links, trace.Link{SpanContext: *v.(*trace.SpanContext),
			Attributes: []attribute.KeyValue{attribute.String("chittyid.link", "shared upstream flight")}})
	}
	ctx, s := start(ctx, parent, name, KindInternal, trace.WithLinks(links...))
	s.SetBool("chittyid.flight.coalesced", len(links) > 0)
	return ctx, s
}
