package tracing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/config/file"
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
	tls     TLSFiles
	batch   int
	delay   time.Duration
}

func (a exportSettings) equal(b exportSettings) bool {
	return a.url == b.url && maps.Equal(a.headers, b.headers) && a.timeout == b.timeout && a.gzip == b.gzip && a.tls == b.tls
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
	s := exportSettings{url: cfg.Export.URL, headers: h, timeout: cfg.Export.Timeout, gzip: cfg.Export.Gzip, tls: cfg.Export.TLS,
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
				var err error
				if exp, err = newExporter(next); err != nil {
					p.onError(err, 0)
				}
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
		p.onError(redactHeaders(err, cfg.headers), len(batch))
	} else {
		p.exported.Add(n)
	}
	clear(batch)
	return batch[:0]
}

// redactHeaders returns err with the values of the headers an export sent
// redacted (field.RedactErr): its text quotes the collector's answer, and
// a collector, hostile or broken, can echo them.
func redactHeaders(err error, headers map[string]string) error {
	for _, v := range headers {
		err = field.RedactErr(err, v)
	}
	return err
}

// otlpExporter is an OTLP/HTTP exporter and the HTTP transport it owns
// (its idle connections are closed with it); nil while there is no URL.
type otlpExporter struct {
	e  sdktrace.SpanExporter
	tr *http.Transport
}

func newExporter(s exportSettings) (*otlpExporter, error) {
	if s.url == "" {
		return nil, nil
	}
	comp := otlptracehttp.NoCompression
	if s.gzip {
		comp = otlptracehttp.GzipCompression
	}
	tr := http.DefaultTransport.(*http.Transport).Clone() // proxy from the environment, as net/http's
	tr.MaxIdleConnsPerHost = 2
	tlsCfg, err := s.tls.config()
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tlsCfg
	// New only builds the client: no connection is made until an export.
	e, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(s.url),
		otlptracehttp.WithHeaders(s.headers),
		otlptracehttp.WithHTTPClient(&http.Client{Transport: tr, Timeout: s.timeout}),
		otlptracehttp.WithTimeout(s.timeout),
		otlptracehttp.WithCompression(comp),
		// A failed export is counted and dropped; the next batch tries
		// again. Retrying here would back the queue up behind it.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
	)
	if err != nil {
		return nil, fmt.Errorf("building the OTLP exporter: %w", err)
	}
	return &otlpExporter{e: e, tr: tr}, nil
}

func (x *otlpExporter) shutdown() {
	if x == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = x.e.Shutdown(ctx)
	x.tr.CloseIdleConnections()
}

// TLSFiles are the files an https collector is trusted and authenticated
// with (OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE, _CLIENT_CERTIFICATE,
// _CLIENT_KEY), read when the exporter is built, as the sidecar reads
// every TLS file: a regular file only, without blocking on a FIFO, of at
// most file.MaxPEMBytes.
type TLSFiles struct {
	CA, Cert, Key string
}

// config returns the TLS config of f; nil for none (system roots).
func (f TLSFiles) config() (*tls.Config, error) {
	if f == (TLSFiles{}) {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, _, err := file.Read(f.CA, file.MaxPEMBytes)
		if err != nil {
			return nil, fmt.Errorf("reading the collector's CA (%s): %w", EnvCertificate, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the collector's CA file (%s) holds no PEM certificate", EnvCertificate)
		}
	}
	if f.Cert != "" || f.Key != "" {
		certPEM, _, err := file.Read(f.Cert, file.MaxPEMBytes)
		if err != nil {
			return nil, fmt.Errorf("reading the client certificate for the collector (%s): %w", EnvClientCertificate, err)
		}
		keyPEM, _, err := file.Read(f.Key, file.MaxPEMBytes)
		if err != nil {
			return nil, fmt.Errorf("reading the client key for the collector (%s): %w", EnvClientKey, err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate for the collector (%s, %s): %w", EnvClientCertificate, EnvClientKey, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
