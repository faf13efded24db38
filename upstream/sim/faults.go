package sim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// Fault modes, the values of Fault.Mode.
const (
	// ModeOK clears any fault (and releases hung requests).
	ModeOK = "ok"
	// ModeStatus answers Fault.Status with a JSON error body, and a
	// Retry-After header when Fault.RetryAfter > 0. In the worker dialect,
	// on the mint route, it is the worker's mint backend that answers the
	// status, and the worker turns it into an HTTP 200 fallback, as the
	// real one does: 429 gives code 0007, 400 gives 0008, any other 4xx or
	// 5xx gives 0003, and 1xx-3xx give 0099; Retry-After is dropped.
	ModeStatus = "status"
	// ModeSlow waits Fault.Latency, then answers normally.
	ModeSlow = "slow"
	// ModeHang holds the request until the fault is replaced (by any
	// SetFault, ok included), Reset or Close; then answers it normally, so a
	// released mint really mints.
	ModeHang = "hang"
	// ModeRefuse closes the API listener and its connections: connections
	// are refused until the fault is replaced or Reset, and then the
	// listener is opened again on the same address. It takes no routes and
	// no count.
	ModeRefuse = "refuse"
	// ModeFallback answers mints with the worker's HTTP 200 fallback
	// placeholder (03-0-ERR-<code>-…, "fallback":true, "errorCode") instead
	// of minting; the code is Fault.ErrorCode, 0001 by default.
	ModeFallback = "fallback"
	// ModeBadFormat mints IDs in the other format.
	ModeBadFormat = "badformat"
	// ModeGarbage answers 200 with a body that is not JSON.
	ModeGarbage = "garbage"
)

// Errors of SetFault and the other control calls.
var (
	// ErrInvalidFault means a Fault was rejected; the wrapping error says why.
	// The control API answers it with 400.
	ErrInvalidFault = errors.New("sim: invalid fault")
	// ErrClosed means the simulator has been closed.
	ErrClosed = errors.New("sim: closed")
)

// Fault is what the simulator does wrong, set by SetFault or POST /sim/faults.
type Fault struct {
	// Mode is one of the Mode constants. Required.
	Mode string `json:"mode"`
	// Routes limits the fault to these routes: "mint" (mint and batch),
	// "batch", "validate", "health". Empty means all routes, except for
	// status and fallback in the worker dialect, where it means mint only:
	// those model the worker's mint backend failing, which leaves its
	// /health and validate (neither uses the backend) answering normally.
	// Naming health or validate there makes the worker itself answer the
	// status, as a failing edge in front of it would.
	Routes []string `json:"routes"`
	// Status is the status code of ModeStatus, 200-599.
	Status int `json:"status"`
	// RetryAfter, in seconds, adds a Retry-After header to ModeStatus
	// answers when > 0.
	RetryAfter int `json:"retryAfter"`
	// Latency is the delay of ModeSlow as a Go duration ("200ms").
	Latency string `json:"latency"`
	// Count > 0 applies the fault to that many requests of its routes, then
	// clears it; 0 means until replaced. Fault reports the count left.
	Count int `json:"count"`
	// ErrorCode is the fallback code of ModeFallback: four digits from
	// 0000 to 0099 (0001 unavailable, 0002 timeout, 0003 rejected, 0007 rate
	// limited, 0008 invalid request, 0099 internal). Empty means 0001.
	ErrorCode string `json:"errorCode,omitempty"`
}

// routeMask is a set of routes.
type routeMask uint8

func (r route) mask() routeMask { return 1 << r }

const allRoutes = routeMask(1<<routeMint | 1<<routeBatch | 1<<routeValidate | 1<<routeHealth)

// activeFault is a validated Fault.
type activeFault struct {
	Fault
	routes  routeMask
	latency time.Duration
}

func (f *activeFault) active() bool { return f.Mode != ModeOK }

// problems collects what is wrong with a Fault.
type problems []string

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Sprintf(format, a...)) }

// parseFault validates f, reporting every problem.
func parseFault(f Fault) (activeFault, error) {
	var p problems
	af := activeFault{Fault: f}
	af.Routes = append([]string(nil), f.Routes...)
	switch f.Mode {
	case ModeOK, ModeStatus, ModeSlow, ModeHang, ModeRefuse, ModeFallback, ModeBadFormat, ModeGarbage:
	case "":
		p.add("mode is required")
	default:
		p.add("unknown mode %q (want ok, status, slow, hang, refuse, fallback, badformat or garbage)", f.Mode)
	}
	af.routes = parseRoutes(f.Routes, &p)
	if f.Count < 0 {
		p.add("count must be >= 0, got %d", f.Count)
	}
	if f.RetryAfter < 0 {
		p.add("retryAfter must be >= 0, got %d", f.RetryAfter)
	}
	if f.Latency != "" {
		d, err := time.ParseDuration(f.Latency)
		if err != nil || d < 0 {
			p.add("latency must be a non-negative duration such as \"200ms\", got %q", f.Latency)
		}
		af.latency = d
	}
	checkModeNeeds(af, &p)
	if len(p) > 0 {
		return activeFault{}, fmt.Errorf("%w: %s", ErrInvalidFault, strings.Join(p, "; "))
	}
	return af, nil
}

// parseRoutes reads route names; none means all routes.
func parseRoutes(names []string, p *problems) routeMask {
	var m routeMask
	for _, name := range names {
		switch name {
		case "mint":
			m |= routeMint.mask() | routeBatch.mask()
		case "batch", "validate", "health":
			m |= routeByName(name).mask()
		default:
			p.add("unknown route %q (want mint, batch, validate or health)", name)
		}
	}
	if m == 0 {
		return allRoutes
	}
	return m
}

// checkModeNeeds checks the fields a mode requires or forbids.
func checkModeNeeds(af activeFault, p *problems) {
	if af.ErrorCode != "" && af.Mode != ModeFallback {
		p.add("errorCode is for mode fallback only")
	}
	switch af.Mode {
	case ModeStatus:
		if af.Status < 200 || af.Status > 599 {
			p.add("status must be 200-599, got %d", af.Status)
		}
	case ModeSlow:
		if af.latency <= 0 {
			p.add("slow needs a latency > 0")
		}
	case ModeFallback:
		if af.ErrorCode != "" && !isErrorCode(af.ErrorCode) {
			p.add("errorCode must be four digits from 0000 to 0099, got %q", af.ErrorCode)
		}
	case ModeRefuse:
		if af.Count != 0 {
			p.add("refuse takes no count: it holds until cleared")
		}
		if len(af.Routes) != 0 {
			p.add("refuse takes no routes: it closes the whole API listener")
		}
	}
}

// applied is what one request got from the fault state.
type applied struct {
	activeFault
	release <-chan struct{}
}

// takeFault returns the fault that applies to one request of route r,
// counting it against the fault's count.
func (s *Sim) takeFault(r route) applied {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	if !f.active() || f.routes&r.mask() == 0 {
		return applied{activeFault: activeFault{Fault: Fault{Mode: ModeOK}}}
	}
	if f.Count > 0 {
		s.fault.Count--
		if s.fault.Count == 0 {
			// Cleared by count: hung requests stay hung until an explicit
			// clear, or a hang with a count would release at once.
			s.fault = okFault()
		}
	}
	return applied{activeFault: f, release: s.release}
}

func okFault() activeFault {
	return activeFault{Fault: Fault{Mode: ModeOK}, routes: allRoutes}
}

// applyFault carries out a fault before the route's own work on route r.
// It reports whether the request has been answered.
func (s *Sim) applyFault(ctx *fasthttp.RequestCtx, r route, f applied) bool {
	switch f.Mode {
	case ModeStatus:
		if s.cfg.Dialect == upstream.DialectWorker && r == routeMint {
			return false // the mint backend's status: serveWorkerMint answers a fallback
		}
		if f.RetryAfter > 0 {
			ctx.Response.Header.Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		s.writeError(ctx, f.Status, statusCode(f.Status), fmt.Sprintf("simulated fault: status %d", f.Status))
		return true
	case ModeSlow:
		s.sleep(f.latency)
	case ModeHang:
		s.hang(f.release)
	case ModeRefuse:
		// The request slipped in while the listener was being closed.
		ctx.SetConnectionClose()
		_ = ctx.Conn().Close()
		return true
	case ModeGarbage:
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.SetBodyString("<html><body>502 Bad Gateway (simulated garbage)</body></html>")
		return true
	}
	return false
}

// statusCode names a status for the JSON error body of a status fault.
func statusCode(status int) string {
	switch status {
	case fasthttp.StatusUnauthorized, fasthttp.StatusForbidden:
		return "UNAUTHORIZED"
	case fasthttp.StatusTooManyRequests:
		return "RATE_LIMITED"
	case fasthttp.StatusServiceUnavailable:
		return "SERVICE_UNAVAILABLE"
	case fasthttp.StatusGatewayTimeout:
		return "GATEWAY_TIMEOUT"
	}
	return strings.ToUpper(strings.ReplaceAll(fasthttp.StatusMessage(status), " ", "_"))
}

// sleep waits d, or less if the simulator closes.
func (s *Sim) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

// hang holds the request until release is closed or the simulator closes.
func (s *Sim) hang(release <-chan struct{}) {
	s.addHung(1)
	defer s.addHung(-1)
	select {
	case <-release:
	case <-s.done:
	}
}

func (s *Sim) addHung(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hung += n
	close(s.hungChanged)
	s.hungChanged = make(chan struct{})
}

// WaitHung blocks until at least n requests are held by a hang fault, ctx
// is done or the simulator is closed. Requests are also counted in Stats as
// soon as they arrive, before they hang.
func (s *Sim) WaitHung(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		hung, changed := s.hung, s.hungChanged
		s.mu.Unlock()
		if hung >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("sim: waiting for %d hung requests (%d so far): %w", n, hung, ctx.Err())
		case <-s.done:
			return ErrClosed
		}
	}
}

// Fault returns the fault in force, with Count the number of requests it
// still applies to; Mode is ModeOK when there is none.
func (s *Sim) Fault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault.Fault
	f.Routes = append([]string(nil), f.Routes...)
	return f
}

// SetFault replaces the fault in force with f (ModeOK clears it), releasing
// any request held by a hang fault. Switching to ModeRefuse closes the API
// listener and its connections before returning; switching away from it
// listens again on the same address before returning. An invalid f is an
// error wrapping ErrInvalidFault and changes nothing.
func (s *Sim) SetFault(f Fault) error {
	af, err := parseFault(f)
	if err != nil {
		return err
	}
	if af.Mode == ModeOK {
		af = okFault()
	}
	if s.cfg.Dialect == upstream.DialectWorker && len(af.Routes) == 0 && (af.Mode == ModeStatus || af.Mode == ModeFallback) {
		af.routes = routeMint.mask() // the mint backend: the worker's health and validate do not use it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setFaultLocked(af)
}

func (s *Sim) setFaultLocked(af activeFault) error {
	if s.closed {
		return ErrClosed
	}
	close(s.release)
	s.release = make(chan struct{})
	s.fault = af
	if af.Mode == ModeRefuse {
		s.stopAPILocked()
		return nil
	}
	return s.startAPILocked()
}
