package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths the server answers.
const (
	// PathMutate takes reviews of pods opted in by AnnotationInject.
	PathMutate = "/mutate"
	// PathMutateNamespace takes reviews of pods of namespaces labelled
	// LabelInject: injected unless the pod opts out.
	PathMutateNamespace = "/mutate/namespace"
)

// ServerConfig is how the webhook server runs.
type ServerConfig struct {
	// CertFile and KeyFile are the serving certificate and its key (PEM),
	// re-read every CertReloadInterval.
	CertFile, KeyFile string
	// CertReloadInterval is how often the files are checked for a change.
	// Default: 10s.
	CertReloadInterval time.Duration
	// ShutdownTimeout bounds the wait for reviews in flight at shutdown.
	// Default: 10s.
	ShutdownTimeout time.Duration
}

// Server serves the webhook over TLS: the two review paths, /healthz,
// /readyz and /metrics.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	certs *certReloader
	mux   *http.ServeMux
	// ready is true while Serve serves and false once it stops.
	ready atomic.Bool
}

// NewServer loads the certificate (an error if it does not load) and
// registers the metrics on reg.
func NewServer(in *Injector, cfg ServerConfig, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if cfg.CertReloadInterval <= 0 {
		cfg.CertReloadInterval = 10 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	certs, err := newCertReloader(cfg.CertFile, cfg.KeyFile, m, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, certs: certs, mux: http.NewServeMux()}
	s.mux.Handle(PathMutate, &reviewHandler{in: in, mode: ByAnnotation, metrics: m, log: log})
	s.mux.Handle(PathMutateNamespace, &reviewHandler{in: in, mode: ByNamespace, metrics: m, log: log})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return s, nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not serving", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Handler returns the server's routes without TLS, for tests and
// benchmarks of the handlers alone.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves TLS on ln until ctx is done, then stops taking reviews
// (readyz fails), waits up to ShutdownTimeout for those in flight and
// returns. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler: s.mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.certs.getCertificate,
		},
		// The API server gives a webhook 10s at most (timeoutSeconds).
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	reloadCtx, stopReload := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.certs.run(reloadCtx, s.cfg.CertReloadInterval) })
	defer wg.Wait()
	defer stopReload()

	served := make(chan error, 1)
	s.ready.Store(true)
	wg.Go(func() { served <- srv.ServeTLS(ln, "", "") })
	s.log.Info("serving the webhook", "addr", ln.Addr().String())
	select {
	case err := <-served:
		s.ready.Store(false)
		return fmt.Errorf("serving the webhook: %w", err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stopping the webhook server: %w", err)
	}
	return nil
}
