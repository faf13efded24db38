package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"
)

// Stats are the simulator's counters, as GET /sim/stats reports them.
type Stats struct {
	// Mint, Batch, Validate and Health count the API requests seen per
	// route, faulted ones included (a hung request counts when it arrives).
	Mint     int64 `json:"mint"`
	Batch    int64 `json:"batch"`
	Validate int64 `json:"validate"`
	Health   int64 `json:"health"`
	// Minted counts the IDs issued (fallback placeholders are not IDs).
	Minted int64 `json:"minted"`
	// Abandoned counts requests dropped unprocessed because their client
	// hung up while they were delayed (slow, hang or Latency), as a server
	// that cancels work on disconnect does.
	Abandoned int64 `json:"abandoned"`
}

// OpenConns is how many API connections are open now.
func (s *Sim) OpenConns() int { return s.apiConns.count() }

// Stats returns the counters since Start or the last Reset.
func (s *Sim) Stats() Stats {
	return Stats{
		Mint:     s.stats.mint.Load(),
		Batch:    s.stats.batch.Load(),
		Validate: s.stats.validate.Load(),
		Health:   s.stats.health.Load(),
		Minted:   s.stats.minted.Load(),

		Abandoned: s.stats.abandoned.Load(),
	}
}

// Minted returns the remembered minted IDs (the last Config.MaxMinted),
// oldest first.
func (s *Sim) Minted() []string { return s.minted.list() }

// Requests returns the last 1000 API requests, oldest first.
func (s *Sim) Requests() []Request { return s.requests.list() }

// SetToken changes the bearer token API requests need; "" turns auth off.
func (s *Sim) SetToken(tok string) { s.token.Store(&tok) }

// Reset zeroes the counters, clears the fault (releasing hung requests and
// reopening a refused listener) and forgets the minted IDs, the
// Idempotency-Keys and the recorded requests. It keeps the token, and the
// ID counter keeps running, so IDs minted after a Reset never repeat earlier
// ones. Reset after Close only clears the memories.
func (s *Sim) Reset() { _ = s.reset() }

// reset is Reset, reporting a failure to reopen a refused listener (the
// fault is cleared anyway; SetFault with ModeOK retries the reopen).
func (s *Sim) reset() error {
	s.mu.Lock()
	var err error
	if !s.closed {
		err = s.setFaultLocked(okFault())
	}
	s.mu.Unlock()
	s.stats.mint.Store(0)
	s.stats.batch.Store(0)
	s.stats.validate.Store(0)
	s.stats.health.Store(0)
	s.stats.minted.Store(0)
	s.conns.reset()
	s.minted.reset()
	s.keys.reset()
	s.requests.reset()
	return err
}

// serveControl is the control server's handler.
func (s *Sim) serveControl(ctx *fasthttp.RequestCtx) {
	defer func() {
		if p := recover(); p != nil { // fasthttp does not recover panics
			controlError(ctx, fasthttp.StatusInternalServerError, fmt.Sprintf("sim: internal error: %v", p))
		}
	}()
	switch path := string(ctx.Path()); path {
	case "/sim/stats":
		if onlyMethod(ctx, fasthttp.MethodGet) {
			writeJSON(ctx, fasthttp.StatusOK, s.Stats())
		}
	case "/sim/conns":
		if onlyMethod(ctx, fasthttp.MethodGet) {
			writeJSON(ctx, fasthttp.StatusOK, s.Conns())
		}
	case "/sim/minted":
		if onlyMethod(ctx, fasthttp.MethodGet) {
			writeJSON(ctx, fasthttp.StatusOK, s.Minted())
		}
	case "/sim/requests":
		if onlyMethod(ctx, fasthttp.MethodGet) {
			writeJSON(ctx, fasthttp.StatusOK, s.Requests())
		}
	case "/sim/reset":
		if onlyMethod(ctx, fasthttp.MethodPost) {
			controlResult(ctx, s.reset(), nil)
		}
	case "/sim/token":
		if onlyMethod(ctx, fasthttp.MethodPost) {
			s.serveSetToken(ctx)
		}
	case "/sim/faults":
		switch {
		case ctx.IsGet() || ctx.IsHead():
			writeJSON(ctx, fasthttp.StatusOK, s.Fault())
		case ctx.IsPost():
			s.serveSetFault(ctx)
		default:
			methodNotAllowed(ctx, "GET, HEAD, POST")
		}
	default:
		controlError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no control route %s %s", ctx.Method(), path))
	}
}

func (s *Sim) serveSetFault(ctx *fasthttp.RequestCtx) {
	var f Fault
	if err := decodeStrict(ctx.PostBody(), &f); err != nil {
		controlError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("sim: invalid fault: %v", err))
		return
	}
	err := s.SetFault(f)
	if err != nil {
		controlResult(ctx, err, nil)
		return
	}
	controlResult(ctx, nil, s.Fault())
}

func (s *Sim) serveSetToken(ctx *fasthttp.RequestCtx) {
	var body struct {
		Token *string `json:"token"`
	}
	if err := decodeStrict(ctx.PostBody(), &body); err != nil || body.Token == nil {
		controlError(ctx, fasthttp.StatusBadRequest, `sim: want {"token": string} ("" turns auth off)`)
		return
	}
	s.SetToken(*body.Token)
	controlResult(ctx, nil, nil)
}

// decodeStrict decodes one JSON value, rejecting unknown fields (a typo in
// a drill's fault should fail loudly, not be ignored).
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// controlResult answers a control call: 200 with v (or {"status":"ok"}), or
// the error with 400 for an invalid fault, 503 after Close and 500 otherwise.
func controlResult(ctx *fasthttp.RequestCtx, err error, v any) {
	switch {
	case err == nil && v != nil:
		writeJSON(ctx, fasthttp.StatusOK, v)
	case err == nil:
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "ok"})
	case errors.Is(err, ErrInvalidFault):
		controlError(ctx, fasthttp.StatusBadRequest, err.Error())
	case errors.Is(err, ErrClosed):
		controlError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
	default:
		controlError(ctx, fasthttp.StatusInternalServerError, err.Error())
	}
}

func controlError(ctx *fasthttp.RequestCtx, status int, msg string) {
	writeJSON(ctx, status, map[string]string{"error": msg})
}

// onlyMethod reports whether the request uses method (GET also allows HEAD),
// answering 405 when it does not.
func onlyMethod(ctx *fasthttp.RequestCtx, method string) bool {
	if string(ctx.Method()) == method || method == fasthttp.MethodGet && ctx.IsHead() {
		return true
	}
	allow := method
	if method == fasthttp.MethodGet {
		allow = "GET, HEAD"
	}
	methodNotAllowed(ctx, allow)
	return false
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	controlError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s (allowed: %s)", ctx.Method(), ctx.Path(), allow))
}

// controlErrorHandler answers control requests fasthttp could not parse.
func controlErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		controlError(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	controlError(ctx, fasthttp.StatusBadRequest, "malformed HTTP request")
}
