package sidecar

import (
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

const ns = "chittyid_sidecar"

// statuses are the status codes the API answers with; anything else counts
// as "other".
var statuses = [...]int{200, 400, 401, 403, 404, 405, 408, 413, 415, 429, 431, 500, 502, 503, 504}

// statusLabels are the code label's values, by statusIndex.
var statusLabels = func() (l [len(statuses) + 1]string) {
	for i, s := range statuses {
		l[i] = strconv.Itoa(s)
	}
	l[len(statuses)] = "other"
	return l
}()

func statusIndex(code int) int {
	for i, s := range statuses {
		if s == code {
			return i
		}
	}
	return len(statuses)
}

// metrics holds the sidecar's Prometheus collectors. Everything the
// hot path touches is resolved once (no label lookup per request) and
// lock-free; figures other components already count are read at scrape
// time instead of being counted twice.
//
// The series budget (docs/observability.md): a label value is served from its
// first use on, never as a zero before it (each first use creates its
// series), except where a shipped alert or the dashboard needs the zero
// (the breaker, lifecycle and fleet states, the health poll, reload and
// snapshot write outcomes, TLS handshake outcomes); the families of a
// feature that is off (the fleet tier, snapshots, an https upstream) are
// absent.
type metrics struct {
	requestsVec *prometheus.CounterVec
	requests    [routeCount][familyCount][len(statuses) + 1]firstUse[prometheus.Counter]
	durationVec *prometheus.HistogramVec
	duration    [routeCount]firstUse[prometheus.Observer] // timed routes only
	validateVec *prometheus.CounterVec
	validate    [xcKinds]firstUse[prometheus.Counter] // by X-Cache kind; xcNone unused
	limitedVec  *prometheus.CounterVec
	rateLimited [routeCount]firstUse[prometheus.Counter]
	attempts    *prometheus.CounterVec
	attemptDur  *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	handshakes  *prometheus.CounterVec
	resumed     prometheus.Counter
	handler     fasthttp.RequestHandler
}

// firstUse is a series of a vec, created at its first use and kept: later
// uses cost one atomic load and allocate nothing.
type firstUse[T any] struct{ p atomic.Pointer[T] }

// get returns the series, creating it with create at its first use (two
// first uses at once create it twice: a vec returns the same series).
func (f *firstUse[T]) get(create func() T) T {
	if p := f.p.Load(); p != nil {
		return *p
	}
	v := create()
	f.p.Store(&v)
	return v
}

// requestBuckets are request_duration_seconds's: a cached validate takes
// tens of microseconds, an upstream call milliseconds to seconds; 500ms is
// the latency alert's threshold.
var requestBuckets = []float64{.000025, .00005, .0001, .00025, .001, .005, .025, .1, .25, .5, 1, 5}

// goRuntimeMetrics are the runtime/metrics served besides client_golang's
// base Go metrics (goroutines, threads, GC pauses, go_info): heap and
// memory use against GOMEMLIMIT, GC settings and the allocation rate.
var goRuntimeMetrics = regexp.MustCompile(`^/(gc/heap/(live|goal|allocs):bytes|gc/gogc:percent|gc/gomemlimit:bytes|memory/classes/total:bytes|sched/gomaxprocs:threads)$`)

// newMetrics registers the sidecar's metrics on reg, with the process's
// and the Go runtime's.
func newMetrics(s *Sidecar, reg *prometheus.Registry) (*metrics, error) {
	if err := registerRuntime(reg); err != nil {
		return nil, err
	}
	m := &metrics{}
	m.requestsVec = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
		Help: "Requests answered, by route, the family of routes it came by (v1, api_v1, root, worker) and HTTP status code."}, []string{"route", "family", "code"})
	m.durationVec = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
		Help:    "Time from reading a request to handing its answer to the server, by route (the routes that mint or validate).",
		Buckets: requestBuckets},
		[]string{"route"})
	m.validateVec = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "validate_answers_total",
		Help: "Validate answers by X-Cache kind (HIT, MISS, STALE, LOCAL)."}, []string{"cache"})
	m.limitedVec = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rate_limited_total",
		Help: "Requests refused by a local rate limit, by route."}, []string{"route"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_attempts_total",
		Help: "Requests sent upstream, by operation and outcome."}, []string{"op", "outcome"})
	m.attemptDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_attempt_duration_seconds",
		Help: "Duration of upstream attempts, by operation.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12)}, []string{"op"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_retries_total",
		Help: "Failed upstream attempts that were tried again, by operation."}, []string{"op"})
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_tls_handshakes_total",
		Help: "TLS handshakes with upstream, by outcome (ok, or why it failed)."}, []string{"outcome"})
	for _, o := range upstream.HandshakeOutcomes() {
		m.handshakes.WithLabelValues(o) // every outcome is served at 0 while upstream is https: alerts count failures from the first
	}
	m.resumed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "upstream_tls_resumed_total",
		Help: "TLS handshakes with upstream that resumed an earlier session (no certificate exchange)."})
	certExpiry := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "upstream_tls_client_cert_expiry_seconds",
		Help: "Seconds until the client certificate (upstream.tls.certFile) expires, negative once it has; absent without one."}, []string{"subject"})
	https := func() bool { c := s.client.Load(); return c != nil && c.TLS().Enabled }
	cols := []prometheus.Collector{m.requestsVec, m.durationVec, m.validateVec, m.limitedVec, m.attempts, m.attemptDur, m.retries,
		onlyWhen{m.handshakes, https}, onlyWhen{m.resumed, https}, &certExpiryCollector{vec: certExpiry, client: s.client.Load}}
	cols = append(cols, s.scrapeCollectors()...)
	if s.snaps.enabled() {
		cols = append(cols, s.snapshotCollectors()...)
	}
	for _, c := range cols {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// OpenMetrics when the scraper asks for it (Accept): the format that
	// carries the histograms' exemplars, the trace IDs of sampled requests.
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	return m, nil
}

// registerRuntime registers client_golang's process collector and its Go
// collector with goRuntimeMetrics, each unless reg (an embedding
// program's, Options.Registry) serves its series already.
func registerRuntime(reg *prometheus.Registry) error {
	fams, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("reading the registry: %w", err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	for _, c := range []struct {
		serves string
		c      prometheus.Collector
	}{
		{"process_start_time_seconds", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
		{"go_goroutines", collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled(),
			collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: goRuntimeMetrics}))},
	} {
		if have[c.serves] {
			continue
		}
		if err := reg.Register(c.c); err != nil {
			return fmt.Errorf("registering the runtime's metrics: %w", err)
		}
	}
	return nil
}

// onlyWhen serves a collector's series only while on says so: the
// families of a feature that a reload can switch on and off.
type onlyWhen struct {
	prometheus.Collector
	on func() bool
}

func (o onlyWhen) Collect(ch chan<- prometheus.Metric) {
	if o.on() {
		o.Collector.Collect(ch)
	}
}

// scrapeCollectors read figures kept elsewhere (cache, breaker, lifecycle,
// config watcher) when Prometheus scrapes.
func (s *Sidecar) scrapeCollectors() []prometheus.Collector {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, f)
	}
	gauge := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help, ConstLabels: labels}, f)
	}
	cs := func(f func(cache.Stats) int64) func() float64 {
		return func() float64 { return float64(f(s.cache.Stats())) }
	}
	cols := []prometheus.Collector{
		counter("cache_hits_total", "Validate lookups answered fresh from the cache.", cs(func(c cache.Stats) int64 { return c.Hits })),
		counter("cache_misses_total", "Validate lookups that found no fresh entry.", cs(func(c cache.Stats) int64 { return c.Misses })),
		counter("cache_stale_served_total", "Expired entries served stale while upstream failed.", cs(func(c cache.Stats) int64 { return c.StaleServed })),
		counter("cache_evictions_total", "Entries evicted because the cache was full.", cs(func(c cache.Stats) int64 { return c.Evictions })),
		counter("cache_coalesced_waiters_total", "Validate misses that waited on another caller's upstream call.", cs(func(c cache.Stats) int64 { return c.Coalesced })),
		gauge("cache_entries", "Entries in the cache.", nil, cs(func(c cache.Stats) int64 { return c.Entries })),
		gauge("cache_bytes", "Bytes the cache has allocated.", nil, cs(func(c cache.Stats) int64 { return c.Bytes })),
		gauge("mints_in_flight", "Upstream mints under way.", nil, func() float64 { return float64(s.client.Load().InFlight()) }),
		counter("breaker_trips_total", "Times the circuit breaker opened.", func() float64 { return float64(s.breaker.Trips()) }),
		counter("lifecycle_transitions_total", "Lifecycle state transitions.", func() float64 { return float64(s.life.Snapshot().TransitionsTotal) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "health_polls_total", Help: "Health polls by outcome.",
			ConstLabels: prometheus.Labels{"outcome": "ok"}}, func() float64 { return float64(s.life.Snapshot().Polls.OK) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "health_polls_total", Help: "Health polls by outcome.",
			ConstLabels: prometheus.Labels{"outcome": "failed"}}, func() float64 { return float64(s.life.Snapshot().Polls.Failed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total", Help: "Config reloads by outcome.",
			ConstLabels: prometheus.Labels{"outcome": "applied"}}, func() float64 { return float64(s.configStatus().Applied) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total", Help: "Config reloads by outcome.",
			ConstLabels: prometheus.Labels{"outcome": "rejected"}}, func() float64 { return float64(s.configStatus().Rejected) }),
		gauge("config_generation", "Generation of the running config (1 at start).", nil, func() float64 { return float64(s.configStatus().Generation) }),
		gauge("build_info", "Always 1; labels carry the version.", prometheus.Labels{"version": s.version, "goversion": runtime.Version()}, func() float64 { return 1 }),
	}
	// Tracing's families, while tracing is on (a reload may turn it on or
	// off) or has counted anything.
	traced := func() bool { st := s.tracer.Stats(); return s.tracer.On() || st != (tracing.Stats{}) }
	dropped := func(reason string, f func(tracing.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "trace_spans_dropped_total",
			Help:        "Spans dropped instead of exported, by reason: queue_full (the export queue was full), export_failed (the collector did not take them).",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(f(s.tracer.Stats())) })
	}
	cols = append(cols,
		onlyWhen{counter("trace_spans_exported_total", "Spans the trace collector accepted (tracing.endpoint).", func() float64 { return float64(s.tracer.Stats().Exported) }), traced},
		onlyWhen{dropped("queue_full", func(st tracing.Stats) uint64 { return st.DroppedQueueFull }), traced},
		onlyWhen{dropped("export_failed", func(st tracing.Stats) uint64 { return st.DroppedExportFailed }), traced})
	for _, st := range []upstream.BreakerState{upstream.BreakerClosed, upstream.BreakerOpen, upstream.BreakerHalfOpen} {
		cols = append(cols, gauge("breaker_state", "1 for the breaker's current state, 0 for the others.", prometheus.Labels{"state": string(st)},
			func() float64 { return boolFloat(s.breaker.State() == st) }))
	}
	for _, st := range []fsm.State{fsm.Connecting, fsm.Connected, fsm.Reconnecting, fsm.Failed, fsm.Disconnected} {
		cols = append(cols, gauge("lifecycle_state", "1 for the upstream link's current state, 0 for the others.", prometheus.Labels{"state": string(st)},
			func() float64 { return boolFloat(s.life.State() == st) }))
	}
	return cols
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// record counts one answered request from its result and status.
func (m *metrics) record(res result, status int, d time.Duration) {
	r, f, code := res.route, res.family, statusIndex(status)
	m.requests[r][f][code].get(func() prometheus.Counter {
		return m.requestsVec.WithLabelValues(routeNames[r], familyNames[f], statusLabels[code])
	}).Inc()
	if r.timed() {
		observe(m.duration[r].get(func() prometheus.Observer { return m.durationVec.WithLabelValues(routeNames[r]) }), d, res.span.TraceID())
	}
	if xc := res.xc; xc != xcNone {
		m.validate[xc].get(func() prometheus.Counter { return m.validateVec.WithLabelValues(xcNames[xc]) }).Inc()
	}
	if res.limited {
		m.rateLimited[r].get(func() prometheus.Counter { return m.limitedVec.WithLabelValues(routeNames[r]) }).Inc()
	}
}

// observe adds d to a latency histogram, with the trace ID of a sampled
// request as the bucket's exemplar ("" for none), so that a dashboard's
// slow bucket leads to a trace.
func observe(h prometheus.Observer, d time.Duration, traceID string) {
	if traceID != "" {
		if eo, ok := h.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": traceID})
			return
		}
	}
	h.Observe(d.Seconds())
}

// Attempt implements upstream.Observer.
func (m *metrics) Attempt(op, outcome string, d time.Duration) {
	m.AttemptTraced(op, outcome, d, "")
}

// AttemptTraced implements upstream.TraceObserver.
func (m *metrics) AttemptTraced(op, outcome string, d time.Duration, traceID string) {
	m.attempts.WithLabelValues(op, outcome).Inc()
	observe(m.attemptDur.WithLabelValues(op), d, traceID)
}

// Retry implements upstream.Observer.
func (m *metrics) Retry(op string) { m.retries.WithLabelValues(op).Inc() }

// Handshake implements upstream.HandshakeObserver.
func (m *metrics) Handshake(outcome string, resumed bool) {
	m.handshakes.WithLabelValues(outcome).Inc()
	if resumed {
		m.resumed.Inc()
	}
}

var (
	_ upstream.Observer          = (*metrics)(nil)
	_ upstream.HandshakeObserver = (*metrics)(nil)
	_ upstream.TraceObserver     = (*metrics)(nil)
)

// certExpiryCollector serves the client certificate's remaining life,
// computed at scrape time from the current client (it changes on reload).
type certExpiryCollector struct {
	client func() *upstream.Client
	// mu serialises scrapes, which reset and refill vec.
	mu  sync.Mutex
	vec *prometheus.GaugeVec
}

func (c *certExpiryCollector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c *certExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vec.Reset()
	if cl := c.client(); cl != nil {
		if cert := cl.TLS().ClientCert; cert != nil {
			c.vec.WithLabelValues(cert.Subject.String()).Set(time.Until(cert.NotAfter).Seconds())
		}
	}
	c.vec.Collect(ch)
}
