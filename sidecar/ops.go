package sidecar

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/valyala/fasthttp"
)

// opsServer is the optional second listener (metrics.listen) for the
// Prometheus scraper and the kubelet: it serves /metrics, the probes, a
// minimal /health and the API's OpenAPI document, and nothing else, so the
// API can stay on the loopback address.
type opsServer struct {
	srv  *fasthttp.Server
	ln   net.Listener
	errc chan error
}

// startOps listens on metrics.listen, if set; a nil *opsServer is valid and
// does nothing.
func (s *Sidecar) startOps(cfg *config.Config) (*opsServer, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on metrics.listen %q: %w", cfg.Metrics.Listen, err)
	}
	o := &opsServer{ln: ln, errc: make(chan error, 1), srv: &fasthttp.Server{
		Handler:               s.opsHandle,
		Name:                  "chittyid-sidecar",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
		MaxRequestBodySize:    1 << 10,
		CloseOnShutdown:       true,
		SecureErrorLogMessage: true,
		Logger:                slogPrinter{s.log},
	}}
	s.opsAddr.Store(ln.Addr().String())
	go func() { o.errc <- o.srv.Serve(ln) }()
	s.log.Info("operations listener", "addr", ln.Addr().String(), "serves", "/metrics /healthz /readyz /health /openapi.json")
	return o, nil
}

// stop closes the listener and waits for Serve to return.
func (o *opsServer) stop() error {
	if o == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = o.srv.ShutdownWithContext(ctx) // a probe still being answered is cut off at the deadline
	_ = o.ln.Close()
	if err := <-o.errc; err != nil {
		return fmt.Errorf("serving metrics.listen: %w", err)
	}
	return nil
}

// opsHandle serves the operations routes only. /metrics and /health
// answer only a Host the listener accepts (checkOpsHost), as the API does;
// the probes answer anyone, as on the API.
func (s *Sidecar) opsHandle(ctx *fasthttp.RequestCtx) {
	defer s.api.recoverPanic(ctx)
	s.api.setRequestID(ctx)
	if p := string(ctx.Path()); p != "/healthz" && p != "/readyz" {
		if e := checkOpsHost(ctx, &s.cfg.Load().Metrics); e != nil {
			writeError(ctx, e, nil)
			return
		}
	}
	switch string(ctx.Path()) {
	case "/metrics":
		onlyGet(ctx, shapeClient, s.metrics.handler)
	case "/healthz":
		onlyGet(ctx, shapeClient, s.healthz)
	case "/readyz":
		onlyGet(ctx, shapeClient, s.readyz)
	case "/health":
		onlyGet(ctx, shapeClient, s.opsHealth)
	case "/openapi.json":
		onlyGet(ctx, shapeClient, serveOpenAPI)
	default:
		writeError(ctx, newAPIError(codeNotFound, "the operations listener serves /metrics, /healthz, /readyz, /health and /openapi.json only"), nil)
	}
}

// opsHealth is /health on the operations listener, which answers whoever
// reaches the pod: only whether the sidecar is ready and its state, with the
// status code of the full document (200 while ready, 503 otherwise). The
// full document, with the upstream URL, config and cache figures, is on the
// loopback API.
func (s *Sidecar) opsHealth(ctx *fasthttp.RequestCtx) {
	snap := s.life.Snapshot()
	ready, _ := s.readiness(s.cfg.Load(), snap)
	status, word := 200, "ready"
	if !ready {
		status, word = 503, "not ready"
	}
	writeJSON(ctx, status, struct {
		Status string    `json:"status"`
		Ready  bool      `json:"ready"`
		State  fsm.State `json:"state"`
	}{word, ready, snap.State})
}
