package tracing

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// processor is the span processor: a bounded queue that a span's End
// never waits on (a full queue drops the span and counts it), and one
// goroutine (run) that exports batches over OTLP/HTTP. It replaces the
// SDK's batch processor, which drops without telling, and retries an
// export for up to a minute while the queue backs up. Here a failed
// export is counted and its spans dropped; the next batch tries again.
type processor struct {
	queue   chan sdktrace.ReadOnlySpan
	onError func(err error, spans int)

	// want is the exporter settings Apply asked for; run adopts them
	// before its next export.
	mu   sync.Mutex
	want exportSettings
	gen  atomic.Uint64 // bumped on every change of want
	wake chan struct{} // run wakes up to adopt a change or flush early

	exported, queueFull, failed atomic.Uint64
}

// exportSettings are what the exporter is built from.
type exportSettings struct {
	url     string
	headers map[string]string
	timeout time.Duration
	gzip    bool
	batch   int
	delay   time.Duration
}

func (a exportSettings) equal(b exportSettings) bool {
	return a.url == b.url && maps.Equal(a.headers, b.headers) && a.timeout == b.timeout && a.gzip == b.gzip
}

func newProcessor(queueSize int, onError func(error, int)) *processor {
	if onError == nil {
		onError = func(error, int) {}
	}
	return &processor{queue: make(chan sdktrace.ReadOnlySpan, max(queueSize, 1)), onError: onError, wake: make(chan struct{}, 1)}
}

func (p *processor) configure(cfg Config) {
	h := make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		h[k] = v.Reveal()
	}
	s := exportSettings{url: cfg.Export.URL, headers: h, timeout: cfg.Export.Timeout, gzip: cfg.Export.Gzip,
		batch: max(cfg.Export.BatchSize, 1), delay: cfg.Export.Delay}
	p.mu.Lock()
	p.want = s
	p.mu.Unlock()
	p.gen.Add(1)
	p.poke()
}

func (p *processor) settings() exportSettings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.want
}

func (p *processor) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *processor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span for export, or drops it if the queue is
// full: it never blocks the request that ended it.
func (p *processor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case p.queue <- s:
	default:
		p.queueFull.Add(1)
	}
}

// Shutdown and ForceFlush are the SDK's; run owns the export loop and its
// end, so they have nothing to do.
func (p *processor) Shutdown(context.Context) error   { return nil }
func (p *processor) ForceFlush(context.Context) error { return nil }

func (p *processor) stats() Stats {
	return Stats{Exported: p.exported.Load(), DroppedQueueFull: p.queueFull.Load(), DroppedExportFailed: p.failed.Load()}
}

// run is the export loop: a batch goes when it is full or its oldest
// span has waited delay; at ctx's end what is queued goes once more,
// within one export timeout.
func (p *processor) run(ctx context.Context) {
	var exp *otlpExporter
	gen := uint64(0)
	var cfg exportSettings
	adopt := func() {
		if g := p.gen.Load(); g != gen {
			gen = g
			next := p.settings()
			if exp == nil || !next.equal(cfg) {
				exp.shutdown()
				exp = newExporter(next)
			}
			cfg = next
		}
	}
	defer func() { exp.shutdown() }()
	adopt()
	batch := make([]sdktrace.ReadOnlySpan, 0, cfg.batch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		select {
		case s := <-p.queue:
			batch = append(batch, s)
			if len(batch) < cfg.batch {
				if !armed {
					timer.Reset(cfg.delay)
					armed = true
				}
				continue
			}
		case <-timer.C:
		case <-p.wake:
			adopt()
			if len(batch) < cfg.batch {
				continue
			}
		case <-ctx.Done():
			p.final(exp, cfg, batch)
			return
		}
		if armed {
			timer.Stop()
			armed = false
		}
		adopt()
		batch = p.export(context.Background(), exp, cfg, batch)
	}
}

// final exports the batch and what is queued at the end of run, within
// one export timeout in all.
func (p *processor) final(exp *otlpExporter, cfg exportSettings, batch []sdktrace.ReadOnlySpan) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	for {
		for len(batch) < cap(batch) {
			select {
			case s := <-p.queue:
				batch = append(batch, s)
				continue
			default:
			}
			break
		}
		if len(batch) == 0 {
			return
		}
		batch = p.export(ctx, exp, cfg, batch)
	}
}

// export sends batch and counts the outcome; it returns batch emptied.
func (p *processor) export(ctx context.Context, exp *otlpExporter, cfg exportSettings, batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	n := uint64(len(batch))
	var err error
	if exp == nil {
		err = errors.New("tracing is off")
	} else {
		ectx, cancel := context.WithTimeout(ctx, cfg.timeout)
		err = exp.e.ExportSpans(ectx, batch)
		cancel()
	}
	if err != nil {
		p.failed.Add(n)
		p.onError(err, len(batch))
	} else {
		p.exported.Add(n)
	}
	clear(batch)
	return batch[:0]
}

// otlpExporter is an OTLP/HTTP exporter; nil while there is no URL.
type otlpExporter struct{ e sdktrace.SpanExporter }

func newExporter(s exportSettings) *otlpExporter {
	if s.url == "" {
		return nil
	}
	comp := otlptracehttp.NoCompression
	if s.gzip {
		comp = otlptracehttp.GzipCompression
	}
	// New only builds the client: no connection is made until an export.
	e, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(s.url),
		otlptracehttp.WithHeaders(s.headers),
		otlptracehttp.WithTimeout(s.timeout),
		otlptracehttp.WithCompression(comp),
		// A failed export is counted and dropped; the next batch tries
		// again. Retrying here would back the queue up behind it.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
	)
	if err != nil {
		return nil
	}
	return &otlpExporter{e: e}
}

func (x *otlpExporter) shutdown() {
	if x == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = x.e.Shutdown(ctx)
}
