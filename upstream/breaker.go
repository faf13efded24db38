package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	circuit "github.com/mercari/go-circuitbreaker"
)

// BreakerState is the breaker's state as shown in /health: "closed",
// "open" or "half-open".
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

// libraryOpenTimeout is the open timeout the library is given: longer than
// any process lives, so that its timer never ends an open period. The
// Breaker ends it itself (see advance).
const libraryOpenTimeout = 100 * 365 * 24 * time.Hour

// Breaker is the circuit breaker in front of upstream calls. It opens after
// Failures consecutive failed attempts and stays open OpenTimeout; nothing
// else shortens that period (a good health poll says upstream is reachable,
// not that minting works). Then it is half-open: it lets at most
// HalfOpenProbes trials through at once; one success closes it, one failure
// opens it again for twice the last open period, at most MaxOpen.
// The next trip after a close is OpenTimeout again. It is built once and
// kept across client rebuilds and config reloads, so its state survives them.
//
// It wraps mercari/go-circuitbreaker, configured around that library's
// traps: no counter-reset ticker (so failures far apart still count and no
// goroutine is started), a timed-out attempt counted as a failure, a hook
// that only stores and never blocks (it runs under the library's lock), our
// own gate on half-open trials (the library lets any number through), and
// our own open period: the library's open timer is set beyond reach, and an
// open breaker whose period is over is moved to half-open when next asked
// (State or a request), so the period can grow without the library's
// backoff type and no health poll can cut it short.
type Breaker struct {
	cb       *circuit.CircuitBreaker
	settings atomic.Pointer[breakerSettings]
	now      func() time.Time
	changes  chan BreakerState

	// Written by onStateChange, which runs under the library's lock; read
	// from anywhere.
	state     atomic.Pointer[BreakerState]
	openUntil atomic.Int64 // UnixNano when the open period ends
	period    atomic.Int64 // the last open period, for the doubling
	trips     atomic.Int64

	// mu serialises the move from open to half-open (advance), so that two
	// requests seeing the period over move it once, and none moves a breaker
	// that a failed trial has just opened again.
	mu sync.Mutex
}

// breakerSettings are replaced whole by Reconfigure.
type breakerSettings struct {
	cfg    BreakerConfig
	probes chan struct{} // half-open trial slots
}

// NewBreaker builds a closed breaker from cfg (defaults must be filled in).
// now is its clock for open periods; nil means time.Now.
func NewBreaker(cfg BreakerConfig, now func() time.Time) *Breaker {
	if now == nil {
		now = time.Now
	}
	b := &Breaker{changes: make(chan BreakerState, 16), now: now}
	b.settings.Store(newBreakerSettings(cfg))
	closed := BreakerClosed
	b.state.Store(&closed)
	b.cb = circuit.New(
		circuit.WithTripFunc(b.trip),
		circuit.WithCounterResetInterval(-1),
		circuit.WithOpenTimeout(libraryOpenTimeout),
		circuit.WithHalfOpenMaxSuccesses(1),
		circuit.WithFailOnContextDeadline(true),
		circuit.WithOnStateChangeHookFn(b.onStateChange),
	)
	return b
}

func newBreakerSettings(cfg BreakerConfig) *breakerSettings {
	return &breakerSettings{cfg: cfg, probes: make(chan struct{}, max(cfg.HalfOpenProbes, 1))}
}

// Reconfigure applies new settings (a config reload) to the running
// breaker, in whatever state it is: the failure threshold applies from the
// next failure (the count so far is kept), the open periods from the next
// trip or failed trial, halfOpenProbes from the next trial. An open period
// under way keeps its end, except that a lower maxOpenTimeout cuts it to at
// most that much from now. The trip count and the Changes channel are kept.
// Unchanged settings change nothing.
func (b *Breaker) Reconfigure(cfg BreakerConfig) {
	if b.settings.Load().cfg == cfg {
		return
	}
	b.settings.Store(newBreakerSettings(cfg))
	// A failed trial racing with this stores an end from the new settings
	// (the store above came first) or one this loop then cuts.
	limit := b.now().Add(cfg.MaxOpen()).UnixNano()
	for {
		until := b.openUntil.Load()
		if until <= limit || b.openUntil.CompareAndSwap(until, limit) {
			return
		}
	}
}

// trip is the library's trip function: the threshold is read from the
// current settings, so a reload needs no new library breaker.
func (b *Breaker) trip(c *circuit.Counters) bool {
	return c.ConsecutiveFailures >= int64(max(b.settings.Load().cfg.Failures, 1))
}

// onStateChange runs while the library holds its lock: it must not call
// back into the breaker or block.
func (b *Breaker) onStateChange(from, to circuit.State) {
	if to == circuit.StateOpen {
		cfg := b.settings.Load().cfg
		period := cfg.OpenTimeout
		if from == circuit.StateHalfOpen { // a failed trial
			period = max(min(2*time.Duration(b.period.Load()), cfg.MaxOpen()), cfg.OpenTimeout)
		}
		b.period.Store(int64(period))
		b.openUntil.Store(b.now().Add(period).UnixNano())
		b.trips.Add(1)
	}
	st := BreakerState(to)
	b.state.Store(&st)
	select {
	case b.changes <- st:
	default: // nobody listening fast enough; State() still tells the truth
	}
}

// Changes delivers state changes, for the lifecycle poller. Changes are
// dropped when nobody reads them. The move from open to half-open is sent
// when it happens, which is when the breaker is next asked after its open
// period ended (State, or a request).
func (b *Breaker) Changes() <-chan BreakerState { return b.changes }

// State returns the current state. An open breaker whose open period is
// over becomes half-open here.
func (b *Breaker) State() BreakerState { return b.advance() }

// Failures returns the count of consecutive failures seen while closed.
func (b *Breaker) Failures() int64 { return b.cb.Counters().ConsecutiveFailures }

// Trips returns how many times the breaker has opened, failed trials
// included.
func (b *Breaker) Trips() int64 { return b.trips.Load() }

// RetryIn returns how long until an open breaker lets a trial through, in
// whole seconds rounded up and at least one second: the Retry-After that
// comes true.
func (b *Breaker) RetryIn() time.Duration {
	left := time.Duration(b.openUntil.Load() - b.now().UnixNano())
	return max((left+time.Second-1)/time.Second*time.Second, time.Second)
}

// advance moves an open breaker whose open period is over to half-open,
// and returns the state.
func (b *Breaker) advance() BreakerState {
	if st := *b.state.Load(); st != BreakerOpen || b.now().UnixNano() < b.openUntil.Load() {
		return st
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Only advance moves the library out of open, and only under mu: what
	// is seen here holds until SetState.
	if b.cb.State() == circuit.StateOpen && b.now().UnixNano() >= b.openUntil.Load() {
		b.cb.SetState(circuit.StateHalfOpen) // runs onStateChange
	}
	return *b.state.Load()
}

// outcome tells the breaker how to count an attempt.
type outcome uint8

const (
	countSuccess outcome = iota
	countFailure
	countIgnore // a refusal, such as a 4xx (429 included): upstream is up (answerCount)
)

// do runs one attempt through the breaker. attempt reports how the breaker
// should count its result. If the breaker is open, or half-open with every
// trial slot taken, do returns ErrCircuitOpen without calling attempt.
func (b *Breaker) do(ctx context.Context, attempt func() (outcome, error)) error {
	switch b.advance() {
	case BreakerOpen:
		return ErrCircuitOpen
	case BreakerHalfOpen:
		probes := b.settings.Load().probes
		select {
		case probes <- struct{}{}:
			defer func() { <-probes }()
		default:
			return ErrCircuitOpen
		}
	}
	_, err := b.cb.Do(ctx, func() (any, error) {
		o, err := attempt()
		switch {
		case o == countIgnore:
			return nil, circuit.Ignore(err) // unwrapped: the library checks by type assertion
		case o == countSuccess:
			return nil, circuit.MarkAsSuccess(err)
		}
		return nil, err
	})
	if errors.Is(err, circuit.ErrOpen) {
		return ErrCircuitOpen
	}
	return err
}
