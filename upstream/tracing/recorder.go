package tracing

import (
	"context"
	"fmt"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Recorder keeps the sampled spans that end, in memory, for tests that
// check what a request traced without a collector: pass it as
// Options.Recorder. (The tests against a real collector, Jaeger, check
// the export itself.) It is a span processor of its own rather than the
// SDK's tracetest package, which would link a test package into the
// binary.
type Recorder struct{ r *recording }

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{r: &recording{}} }

// recording is the Recorder's span processor.
type recording struct {
	mu    sync.Mutex
	ended []sdktrace.ReadOnlySpan
}

func (r *recording) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (r *recording) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	r.ended = append(r.ended, s)
	r.mu.Unlock()
}

func (r *recording) Shutdown(context.Context) error   { return nil }
func (r *recording) ForceFlush(context.Context) error { return nil }

// SpanRecord is an ended span, its IDs in hex.
type SpanRecord struct {
	Name, Kind                string
	TraceID, SpanID, ParentID string
	// Attrs are the attributes, their values formatted with %v.
	Attrs map[string]string
	// Links are the span IDs the span links to.
	Links []string
	// Status is "Error" for a failed span, else "Unset" or "Ok".
	Status string
	// Events are the names of the span's events.
	Events []string
}

// Ended returns the spans ended so far, in the order they ended.
func (r *Recorder) Ended() []SpanRecord {
	r.r.mu.Lock()
	ended := r.r.ended[:len(r.r.ended):len(r.r.ended)]
	r.r.mu.Unlock()
	var out []SpanRecord
	for _, s := range ended {
		out = append(out, record(s))
	}
	return out
}

func record(s sdktrace.ReadOnlySpan) SpanRecord {
	rec := SpanRecord{
		Name: s.Name(), Kind: s.SpanKind().String(),
		TraceID: s.SpanContext().TraceID().String(), SpanID: s.SpanContext().SpanID().String(),
		Attrs: map[string]string{}, Status: s.Status().Code.String(),
	}
	if p := s.Parent(); p.IsValid() {
		rec.ParentID = p.SpanID().String()
	}
	for _, a := range s.Attributes() {
		rec.Attrs[string(a.Key)] = fmt.Sprint(a.Value.AsInterface())
	}
	for _, l := range s.Links() {
		rec.Links = append(rec.Links, l.SpanContext.SpanID().String())
	}
	for _, e := range s.Events() {
		rec.Events = append(rec.Events, e.Name)
	}
	return rec
}
