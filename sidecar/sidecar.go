// Package sidecar is the local HTTP server apps call instead of the ChittyID
// service: it answers validates from the cache, passes mints upstream through
// the breaker, and serves the probes. It wires config, cache, upstream and
// the lifecycle together; main only constructs it and calls Run.
package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar/conn"
	"github.com/chittyos/chittyid-sidecar/sidecar/ratelimit"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

const (
	contentJSON     = "application/json"
	headerRequestID = "X-Request-ID"
)

var contentJSONBytes = []byte(contentJSON)

// Options are the parts of a Sidecar that are not in the config file.
type Options struct {
	Logger  *slog.Logger // nil: discard
	Version string       // reported in /health, mint answers and User-Agent
	// LogLevel, if set, is the level var behind Logger; reloads set it to
	// log.level.
	LogLevel *slog.LevelVar
	// Watcher, if set, is the watcher that loaded the config: Run reloads
	// through it on every change of the file and on each value from Reload.
	Watcher *config.Watcher
	// Reload delivers reload requests (SIGHUP). Nil: polling only.
	Reload <-chan os.Signal
	// LogOutput, if set, is the stream Logger writes to: access lines are
	// then encoded and batched by the sidecar itself (much cheaper than
	// slog at request rate) when log.format is json.
	LogOutput io.Writer
	// Registry receives the sidecar's metrics, served on /metrics, and
	// client_golang's process and Go collectors unless it serves their
	// series already. Nil: a new registry of its own.
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now. Tests inject one to move TTLs.
	Now func() time.Time
	// Timeouts are the API listener's; zero fields take the defaults.
	Timeouts Timeouts
	// LookupEnv reads the egress proxy variables (HTTPS_PROXY, HTTP_PROXY,
	// NO_PROXY) when upstream.proxy is "", each time the upstream client
	// is built. Nil: os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// TraceRecorder, if set, also keeps the sampled spans (tests).
	TraceRecorder *tracing.Recorder
}

// Sidecar is the running sidecar: the process around the request
// handlers (api). It owns the listeners, the lifecycle and its poller, the
// reload watcher, the snapshots, the log sink, the connections' clock and
// the order of a shutdown. Build it with New, run it with Run.
type Sidecar struct {
	cfg     atomic.Pointer[config.Config]
	api     *api
	conns   *conn.Deadlines // the API connections' deadlines (connState); Run ticks their clock
	cache   *cache.Cache
	fleet   *fleet.Tier // the fleet tier (fleettier.go); off without fleet.redis.addrs
	breaker *upstream.Breaker
	client  atomic.Pointer[upstream.Client]
	life    *fsm.Lifecycle // Run drives it; handlers read it through link
	watcher *config.Watcher
	reload  <-chan os.Signal
	level   *slog.LevelVar
	metrics *metrics
	sink    *lineSink // access lines, when Options.LogOutput is set
	limits  *ratelimit.Limiter
	snaps   *snapshots            // snapshot.path: restored in New, written by Run
	late    *upstream.LateAnswers // mints awaited after their callers gave up, for every client
	tracer  *tracing.Tracer       // spans (tracing.*); Run exports them
	opsAddr atomic.Value          // string: the operations listener's address
	log     *slog.Logger
	version string
	now     func() time.Time
	started time.Time

	// How upstream is reached (transport.go).
	sessions *upstream.Sessions          // TLS sessions, kept across client rebuilds
	env      func(string) (string, bool) // reads the proxy variables (Options.LookupEnv)
	trouble  atomic.Pointer[string]      // the last TLS or proxy failure logged
}

// New builds a sidecar from a loaded, validated config. It allocates the
// cache and, with snapshot.path set, restores the snapshot into it (a bad
// or missing file is logged and leaves the cache empty); Run serves.
func New(cfg *config.Config, opts Options) (*Sidecar, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	injected := opts.Now != nil
	if !injected {
		opts.Now = time.Now
	}
	c, err := cache.New(cfg.Cache, cfg.Validation.Policy(), cache.WithClock(opts.Now))
	if err != nil {
		return nil, fmt.Errorf("building the cache: %w", err)
	}
	b := upstream.NewBreaker(cfg.Upstream.Breaker, opts.Now)
	s := &Sidecar{
		cache:    c,
		breaker:  b,
		log:      opts.Logger,
		version:  opts.Version,
		now:      opts.Now,
		started:  opts.Now(),
		conns:    conn.NewDeadlines(opts.Timeouts),
		watcher:  opts.Watcher,
		reload:   opts.Reload,
		level:    opts.LogLevel,
		snaps:    newSnapshots(cfg.Snapshot.Path),
		sessions: upstream.NewSessions(),
		env:      opts.LookupEnv,
	}
	s.late = upstream.NewLateAnswers(s.lateMint)
	exportErrs := &exportErrors{log: opts.Logger}
	s.tracer = tracing.New(cfg.Tracing, tracing.Options{Version: opts.Version, OnExportError: exportErrs.report, Recorder: opts.TraceRecorder})
	if opts.LogOutput != nil {
		s.sink = newLineSink(opts.LogOutput)
	}
	s.cfg.Store(cfg)
	var limiterClock func() time.Time
	if injected {
		limiterClock = opts.Now
	}
	s.limits = ratelimit.New(cfg.RateLimit, limiterClock)
	s.life = fsm.New(cfg.Health, s.probe, fsm.Options{Logger: opts.Logger, BreakerOpen: s.breakerOpen, Now: opts.Now})
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if s.metrics, err = newMetrics(s, opts.Registry); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	cl, err := upstream.New(cfg.Upstream, cfg.Format, b, s.upstreamOptions())
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("building the upstream client: %w", err)
	}
	s.client.Store(cl)
	if err := s.startFleet(cfg, opts.Registry); err != nil {
		cl.Close()
		_ = c.Close()
		return nil, err
	}
	s.api = s.newAPI(injected)
	if s.snaps.enabled() {
		s.restoreSnapshot(cfg) // before Run serves, so before readiness
	}
	return s, nil
}

func (s *Sidecar) upstreamOptions() upstream.Options {
	return upstream.Options{Version: s.version, Observer: s.metrics, Late: s.late,
		Sessions: s.sessions, LookupEnv: s.env, Tracer: s.tracer}
}

// probe is one health poll of the current upstream client. A TLS or
// proxy failure is logged when it first appears or changes (the poll's
// error is also in /health), so an operator reads what to fix.
func (s *Sidecar) probe(ctx context.Context) error {
	err := s.client.Load().Health(ctx)
	s.transportTrouble(err)
	return err
}

// Run serves on ln (or, if ln is nil, on the configured listen address)
// until ctx ends, then shuts down gracefully: readiness goes false, new
// mints are refused, requests in flight get up to shutdown.drainTimeout to
// finish. With snapshot.path set it writes the snapshot every
// snapshot.interval and once more after the drain. It returns nil after a
// clean stop.
func (s *Sidecar) Run(ctx context.Context, ln net.Listener) error {
	cfg := s.cfg.Load()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			_ = s.Close()
			return fmt.Errorf("listening on %q: %w", cfg.Listen, err)
		}
	}
	ops, err := s.startOps(cfg)
	if err != nil {
		_ = ln.Close()
		_ = s.Close()
		return err
	}
	srv := s.server(cfg)
	errc := make(chan error, 1)
	// The lifecycle, the breaker watcher and the connections' clock live
	// until the server is down.
	lctx, stopLife := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(3)
	// Set the clock before the first connection: a Run long after New would
	// otherwise give it deadlines already past.
	s.conns.SetClock(time.Now())
	go func() { defer bg.Done(); s.conns.Run(lctx) }()
	go func() { errc <- srv.Serve(conn.Listener{Listener: ln}) }() // deadlines move lazily: see conn.Lazy
	go func() { defer bg.Done(); _ = s.life.Run(lctx) }()          // ErrRunning only if Run is called twice
	go func() { defer bg.Done(); s.watchBreaker(lctx) }()
	if s.sink != nil {
		bg.Add(1)
		go func() { defer bg.Done(); s.sink.Run(lctx) }()
	}
	if s.watcher != nil {
		bg.Add(1)
		go func() { defer bg.Done(); _ = s.watcher.Run(lctx, s.applyConfig, s.reload) }()
	}
	if s.snaps.enabled() {
		bg.Add(1)
		go func() { defer bg.Done(); s.runSnapshots(lctx) }()
	}
	// The span exporter outlives the server: the last requests' spans go
	// out after the drain, within one export timeout.
	tctx, stopTracer := context.WithCancel(context.Background())
	traced := make(chan struct{})
	go func() { defer close(traced); s.tracer.Run(tctx) }()
	defer func() { stopTracer(); <-traced }()
	s.log.Info("sidecar listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream.RedactedURL(),
		"dialect", cfg.Upstream.Dialect, "format", cfg.Format.String(), "version", s.version)
	s.logTransport(cfg)
	s.logWarnings(cfg)
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
		serveErr = s.shutdown(srv, s.cfg.Load().Shutdown.DrainTimeout)
		// fasthttp's Shutdown is a no-op if Serve has not registered the
		// listener yet (a stop right after start); closing it ourselves makes
		// Serve return either way.
		_ = ln.Close()
		if err := <-errc; err != nil && serveErr == nil {
			serveErr = err
		}
	}
	if err := ops.stop(); err != nil && serveErr == nil {
		serveErr = err
	}
	stopLife()
	bg.Wait()
	if s.snaps.enabled() {
		// After the drain, with the periodic writer stopped: the cache holds
		// everything it will ever hold. A failure is logged and counted; it
		// does not make the stop unclean.
		s.writeSnapshot(context.Background(), writeShutdown)
	}
	if err := s.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

// watchBreaker tells the lifecycle when the breaker opens or closes, so
// the state follows at once rather than at the next poll: CONNECTED becomes
// RECONNECTING when it opens, RECONNECTING becomes CONNECTED when a trial
// closes it.
func (s *Sidecar) watchBreaker(ctx context.Context) {
	for {
		select {
		case st := <-s.breaker.Changes():
			switch st {
			case upstream.BreakerOpen:
				s.life.BreakerOpened()
			case upstream.BreakerClosed:
				s.life.BreakerClosed()
			}
		case <-ctx.Done():
			return
		}
	}
}

// breakerOpen tells the lifecycle's poller whether the breaker's open
// period is under way; asking moves a breaker whose period is over to
// half-open.
func (s *Sidecar) breakerOpen() bool { return s.breaker.State() == upstream.BreakerOpen }

// Close releases what New allocated (the cache, idle upstream connections,
// the fleet tier's connections and prober), after the late mint answers
// still awaited. A Sidecar that ran is closed when Run returns; one that
// never ran must be closed. It is safe to call more than once.
func (s *Sidecar) Close() error {
	s.late.Wait() // bounded: each waits at most its mint deadline plus upstream.lateAnswerWindow
	s.client.Load().Close()
	err := s.cache.Close()
	_ = s.fleet.Close() // after the cache, whose flights use the tier; never fails
	if err != nil {
		return fmt.Errorf("closing the cache: %w", err)
	}
	return nil
}

// shutdown is the graceful stop (docs/lifecycle.md, "Shutdown"): readiness false, new mints
// refused with SHUTTING_DOWN and the lifecycle DISCONNECTED at once; requests
// waiting on upstream get up to drain to finish while the listener still
// answers (validates from the cache, mints with SHUTTING_DOWN); then the
// listener closes and the server stops within what is left of drain.
func (s *Sidecar) shutdown(srv *fasthttp.Server, drain time.Duration) error {
	s.api.draining.Store(true)
	s.life.Shutdown()
	s.log.Info("shutting down", "drainTimeout", drain.String(), "inFlight", s.api.busy.count())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := s.api.busy.wait(sctx); err != nil {
		s.log.Warn("drain timeout: requests still waiting on upstream", "inFlight", s.api.busy.count())
	}
	if err := srv.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down the server: %w", err)
	}
	return nil
}

// server builds the fasthttp server with limits fit for a localhost sidecar.
func (s *Sidecar) server(cfg *config.Config) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               s.api.handle,
		ErrorHandler:          s.transportError,
		Name:                  "chittyid-sidecar",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true, // its clock goroutine never stops; local callers need no Date
		// No ReadTimeout, WriteTimeout or IdleTimeout: connState enforces
		// them (see conn.Deadlines).
		ConnState:          s.connState,
		MaxRequestBodySize: cfg.Limits.MaxBodyBytes,
		ReadBufferSize:     16 << 10, // caps the request header size
		CloseOnShutdown:    true,
		// fasthttp's own error lines would otherwise quote request bytes,
		// an Authorization header among them.
		SecureErrorLogMessage: true,
		Logger:                slogPrinter{s.log},
	}
}

// connState is the API server's connection-state hook: it sets the
// deadlines of the phase a connection enters.
func (s *Sidecar) connState(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		s.conns.Opened(c)
	case fasthttp.StateActive:
		s.conns.Active(c, s.cfg.Load().Upstream.MintTimeout)
	case fasthttp.StateIdle:
		if lc, ok := c.(*conn.Lazy); ok {
			lc.Settle() // the answer has been written
		}
		s.conns.Idle(c)
	}
}

// Timeouts are the API listener's timeouts (conn.Timeouts); zero fields
// take the defaults (10s, 90s, 10s).
type Timeouts = conn.Timeouts

// transportError answers requests fasthttp could not parse.
func (s *Sidecar) transportError(ctx *fasthttp.RequestCtx, err error) {
	s.api.setRequestID(ctx)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		limit := s.cfg.Load().Limits.MaxBodyBytes
		writeError(ctx, newAPIError(codePayloadTooLarge, "request body is over limits.maxBodyBytes of "+strconv.Itoa(limit)+" bytes"), nil)
		return
	}
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		writeError(ctx, newAPIError(codeHeadersTooLarge, "request headers are over the 16 KiB limit"), nil)
	case errors.As(err, &netErr) && netErr.Timeout():
		writeError(ctx, newAPIError(codeRequestTimeout, "the request was not received in time"), nil)
	default:
		writeError(ctx, newAPIError(codeBadRequest, "malformed HTTP request"), nil)
	}
}

// slogPrinter adapts slog to fasthttp's Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}

// newAPI builds the request handlers over the process's parts.
func (s *Sidecar) newAPI(injected bool) *api {
	var p [4]byte
	_, _ = rand.Read(p[:])
	shared, limit := s.fleetParts()
	a := &api{
		cfg:        &s.cfg,
		verdicts:   resolve.New(s.cache, s.life, resolve.Options{Fleet: shared, Now: s.now}),
		fleetLimit: limit,
		link:       s.life,
		client:     func() upstreamClient { return s.client.Load() },
		limits:     s.limits,
		metrics:    s.metrics,
		log:        s.log,
		sink:       s.sink,
		version:    s.version,
		now:        s.now,
		injected:   injected,
		ridPrefix:  hex.EncodeToString(p[:]) + "-",
		tracer:     s.tracer,
	}
	a.pages[shapeClient] = [routeCount]fasthttp.RequestHandler{
		routeHealth: s.health, routeHealthz: s.healthz, routeReadyz: s.readyz, routeMetrics: s.metrics.handler,
	}
	a.pages[shapeWorker] = [routeCount]fasthttp.RequestHandler{routeHealth: s.workerHealth}
	return a
}
