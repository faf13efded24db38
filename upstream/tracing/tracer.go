// Package tracing is the sidecar's OpenTelemetry tracing: W3C trace
// context read from apps' requests and forwarded upstream, and, when a
// collector is configured, spans exported over OTLP/HTTP through a bounded
// queue that drops and counts rather than blocks. It is the only package
// that imports the OpenTelemetry SDK; its types do not leave it.
//
// Spans hang off a context: StartServer (a request that goes upstream),
// StartRoot (a health poll) and Start (a child of the span in the context;
// nothing without one). With tracing off every call returns at once and
// allocates nothing.
package tracing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracer makes spans while tracing is on (a collector configured) and
// exports them (Run). Build one per process with New; Apply turns it on,
// off or changes it on reload. A nil *Tracer is off. Safe for concurrent
// use.
type Tracer struct {
	on       atomic.Bool
	tracer   trace.Tracer
	sampler  *sampler
	proc     *processor
	provider *sdktrace.TracerProvider
}

// Options are the parts of a Tracer that are not in the config.
type Options struct {
	// Version is the resource's service.version.
	Version string
	// OnExportError, if set, hears of every failed export (for the log).
	// Its error never holds the headers' values, even where it quotes a
	// collector's answer that echoed them.
	OnExportError func(err error, spans int)
	// Recorder, if set, also keeps every sampled span that ends (tests).
	Recorder *Recorder
}

// New builds a tracer for cfg (with ApplyEnv applied and validated). The
// queue size and the resource (service name and attributes) are read now
// only; everything else may change with Apply. Spans are exported only
// while Run runs.
func New(cfg Config, opts Options) *Tracer {
	attrs := []attribute.KeyValue{
		attribute.String("service.name", cfg.Export.ServiceName),
		attribute.String("service.version", opts.Version),
	}
	for k, v := range cfg.Export.Resource {
		if k != "service.name" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	t := &Tracer{sampler: &sampler{}, proc: newProcessor(cfg.Export.QueueSize, opts.OnExportError)}
	popts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(t.sampler),
		sdktrace.WithSpanProcessor(t.proc),
		sdktrace.WithResource(resource.NewWithAttributes("", attrs...)),
	}
	if opts.Recorder != nil {
		popts = append(popts, sdktrace.WithSpanProcessor(opts.Recorder.r))
	}
	t.provider = sdktrace.NewTracerProvider(popts...)
	t.tracer = t.provider.Tracer(instrumentation)
	t.Apply(cfg)
	return t
}

// Apply makes cfg the tracer's settings: the sampler at once, the
// exporter from the next export. With no endpoint, no span is made from
// now on.
func (t *Tracer) Apply(cfg Config) {
	t.sampler.set(cfg.SampleRatio, cfg.Export.ParentBased)
	t.proc.configure(cfg)
	t.on.Store(cfg.On())
}

// On reports whether spans are made: one atomic load, false for nil.
func (t *Tracer) On() bool { return t != nil && t.on.Load() }

// Run exports the spans that end until ctx ends, then exports what is
// queued within one export timeout and returns. Run it once, as the
// process's goroutine; a nil Tracer returns at once.
func (t *Tracer) Run(ctx context.Context) {
	if t == nil {
		return
	}
	t.proc.run(ctx)
}

// Stats are the tracer's counters since start.
type Stats struct {
	// Exported counts spans the collector accepted.
	Exported uint64
	// DroppedQueueFull counts spans dropped because the export queue was
	// full (the collector slow or down).
	DroppedQueueFull uint64
	// DroppedExportFailed counts spans of exports that failed.
	DroppedExportFailed uint64
}

// Stats returns the counters; zero for nil.
func (t *Tracer) Stats() Stats {
	if t == nil {
		return Stats{}
	}
	return t.proc.stats()
}

// sampler is parent-based ratio sampling whose ratio a reload may change.
type sampler struct {
	cur atomic.Pointer[sdktrace.Sampler]
	// mu serialises set, which builds a sampler only when the ratio or
	// the kind changed.
	mu          sync.Mutex
	ratio       float64
	parentBased bool
}

func (s *sampler) set(ratio float64, parentBased bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.Load() != nil && ratio == s.ratio && parentBased == s.parentBased {
		return
	}
	smp := sdktrace.TraceIDRatioBased(ratio)
	if parentBased {
		smp = sdktrace.ParentBased(smp)
	}
	s.ratio, s.parentBased = ratio, parentBased
	s.cur.Store(&smp)
}

func (s *sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	return (*s.cur.Load()).ShouldSample(p)
}

func (s *sampler) Description() string { return (*s.cur.Load()).Description() }

// Span is a span, or nothing (the zero Span): every method of the zero
// Span does nothing. It is a value: pass it, don't point at it.
type Span struct {
	s trace.Span
	// forward says the trace context goes upstream even when the span is
	// not sampled: it came from the app's request.
	forward bool
}

type spanKey struct{}

// With returns ctx carrying s, the parent of the spans Start makes and
// the trace context Header sends upstream. The zero Span leaves ctx as it
// is.
func With(ctx context.Context, s Span) context.Context {
	if s.s == nil {
		return ctx
	}
	return context.WithValue(ctx, spanKey{}, s)
}

// Traced reports whether ctx carries a span: Start would make one.
func Traced(ctx context.Context) bool { return From(ctx).s != nil }

// From returns the span ctx carries, or the zero Span.
func From(ctx context.Context) Span {
	s, _ := ctx.Value(spanKey{}).(Span)
	return s
}

// Kinds of span, as OpenTelemetry names them.
type Kind uint8

const (
	KindInternal Kind = iota
	KindServer
	KindClient
)

func (k Kind) otel() trace.SpanKind {
	switch k {
	case KindServer:
		return trace.SpanKindServer
	case KindClient:
		return trace.SpanKindClient
	}
	return trace.SpanKindInternal
}

// StartServer starts the span of a request the sidecar answers, begun at
// start, as a child of the app's trace context r (a new trace when r is
// the zero Remote, sampled by ratio). It returns ctx carrying it; with
// tracing off, ctx and the zero Span.
func (t *Tracer) StartServer(ctx context.Context, r Remote, name string, start time.Time) (context.Context, Span) {
	if !t.On() {
		return ctx, Span{}
	}
	pctx := ctx
	if r.valid {
		pctx = trace.ContextWithRemoteSpanContext(ctx, r.spanContext())
	}
	_, s := t.tracer.Start(pctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	sp := Span{s: s, forward: r.valid}
	return With(ctx, sp), sp
}

// StartRoot starts a span of a new trace of its own, such as a health
// poll's, whatever ctx carries. With tracing off, ctx and the zero Span.
func (t *Tracer) StartRoot(ctx context.Context, name string, kind Kind) (context.Context, Span) {
	if !t.On() {
		return ctx, Span{}
	}
	_, s := t.tracer.Start(ctx, name, trace.WithNewRoot(), trace.WithSpanKind(kind.otel()))
	sp := Span{s: s}
	return With(ctx, sp), sp
}

// Start starts a child of the span ctx carries, and returns ctx carrying
// the child. Without a span in ctx (tracing off, or a request that made
// none) it makes nothing: ctx and the zero Span.
func Start(ctx context.Context, name string, kind Kind) (context.Context, Span) {
	parent := From(ctx)
	if parent.s == nil {
		return ctx, Span{}
	}
	return start(ctx, parent, name, kind)
}

func start(ctx context.Context, parent Span, name string, kind Kind, opts ...trace.SpanStartOption) (context.Context, Span) {
	tr := parent.s.TracerProvider().Tracer(instrumentation)
	opts = append(opts, trace.WithSpanKind(kind.otel()))
	_, s := tr.Start(trace.ContextWithSpan(ctx, parent.s), name, opts...)
	sp := Span{s: s, forward: parent.forward}
	return With(ctx, sp), sp
}

// instrumentation names the spans' instrumentation scope.
const instrumentation = "github.com/chittyos/chittyid-sidecar"

// None reports whether s is the zero Span: no span was made.
func (s Span) None() bool { return s.s == nil }

// Recording reports whether s records what is set on it (it is sampled).
// Callers skip work that only feeds a span when it does not.
func (s Span) Recording() bool { return s.s != nil && s.s.IsRecording() }

// TraceID returns the trace ID of a sampled span in hex, for exemplars;
// "" otherwise.
func (s Span) TraceID() string {
	if s.s == nil || !s.s.SpanContext().IsSampled() {
		return ""
	}
	return s.s.SpanContext().TraceID().String()
}

// SetName renames a recording span.
func (s Span) SetName(name string) {
	if s.Recording() {
		s.s.SetName(name)
	}
}

// End ends the span now.
func (s Span) End() {
	if s.s != nil {
		s.s.End()
	}
}

// Attr is an attribute to set on a span (SetAttrs).
type Attr struct {
	key  string
	s    string
	i    int64
	kind uint8 // attrString, attrInt, attrBool
}

const (
	attrString uint8 = iota
	attrInt
	attrBool
)

// String, Int and Bool make attributes.
func String(k, v string) Attr  { return Attr{key: k, s: v} }
func Int(k string, v int) Attr { return Attr{key: k, i: int64(v), kind: attrInt} }
func Bool(k string, v bool) Attr {
	a := Attr{key: k, kind: attrBool}
	if v {
		a.i = 1
	}
	return a
}

// SetAttrs sets attributes on a recording span at once (cheaper than one
// by one).
func (s Span) SetAttrs(attrs ...Attr) {
	if !s.Recording() {
		return
	}
	kv := make([]attribute.KeyValue, len(attrs))
	for i, a := range attrs {
		switch a.kind {
		case attrInt:
			kv[i] = attribute.Int64(a.key, a.i)
		case attrBool:
			kv[i] = attribute.Bool(a.key, a.i != 0)
		default:
			kv[i] = attribute.String(a.key, a.s)
		}
	}
	s.s.SetAttributes(kv...)
}

// SetString sets an attribute on a recording span.
func (s Span) SetString(key, v string) {
	if s.Recording() {
		s.s.SetAttributes(attribute.String(key, v))
	}
}

// SetInt sets an attribute on a recording span.
func (s Span) SetInt(key string, v int) {
	if s.Recording() {
		s.s.SetAttributes(attribute.Int(key, v))
	}
}

// SetBool sets an attribute on a recording span.
func (s Span) SetBool(key string, v bool) {
	if s.Recording() {
		s.s.SetAttributes(attribute.Bool(key, v))
	}
}

// Fail marks the span failed with errorType, the kind of failure as the
// semantic conventions' error.type has it (such as "timeout" or "503").
// "" leaves the span as it is. The kind only, never an error's text: the
// span stays free of anything upstream said, which could echo a credential.
func (s Span) Fail(errorType string) {
	if errorType != "" && s.Recording() {
		s.s.SetAttributes(attribute.String("error.type", errorType))
		s.s.SetStatus(codes.Error, errorType)
	}
}

// Event adds a named event with one string attribute.
func (s Span) Event(name, key, v string) {
	if s.Recording() {
		s.s.AddEvent(name, trace.WithAttributes(attribute.String(key, v)))
	}
}
