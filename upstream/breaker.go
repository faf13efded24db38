package upstream

import (
	"context"
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

// Breaker is the circuit breaker in front of upstream calls. It opens after
// Failures consecutive failed attempts, stays open OpenTimeout, then lets at
// most HalfOpenProbes trials through at once: one success closes it, one
// failure opens it again. It is built once and kept across client rebuilds
// and config reloads, so its state survives them.
//
// It wraps mercari/go-circuitbreaker, configured around that library's traps
// (see libraries.md §3): no counter-reset ticker (so failures far apart still
// count and no goroutine is started), a constant open timeout, a timed-out
// attempt counted as a failure, and our own gate on half-open trials.
type Breaker struct {
	cb       atomic.Pointer[circuit.CircuitBreaker] // replaced by Reconfigure
	settings atomic.Pointer[breakerSettings]
	openedAt atomic.Int64 // UnixNano of the last transition to open
	trips    atomic.Int64
	changes  chan BreakerState
	now      func() time.Time
}

// breakerSettings are replaced whole by Reconfigure.
type breakerSettings struct {
	cfg    BreakerConfig
	probes chan struct{} // half-open trial slots
}

// NewBreaker builds a closed breaker from cfg (defaults must be filled in).
func NewBreaker(cfg BreakerConfig) *Breaker {
	b := &Breaker{changes: make(chan BreakerState, 16), now: time.Now}
	b.install(cfg, circuit.StateClosed)
	return b
}

// Reconfigure applies new thresholds (a config reload). The library fixes
// them at construction, so a new breaker replaces the old one in the same
// state: closed stays closed (its count of consecutive failures restarts),
// half-open stays half-open, and open stays open for the new openTimeout
// from now. The trip count and the Changes channel are kept. Unchanged
// settings change nothing. Call it from one goroutine at a time.
func (b *Breaker) Reconfigure(cfg BreakerConfig) {
	if b.settings.Load().cfg == cfg {
		return
	}
	b.install(cfg, b.cb.Load().State())
}

func (b *Breaker) install(cfg BreakerConfig, state circuit.State) {
	var cb *circuit.CircuitBreaker
	cb = circuit.New(
		circuit.WithTripFunc(circuit.NewTripFuncConsecutiveFailures(int64(max(cfg.Failures, 1)))),
		circuit.WithCounterResetInterval(-1),
		circuit.WithOpenTimeout(cfg.OpenTimeout),
		circuit.WithHalfOpenMaxSuccesses(1),
		circuit.WithFailOnContextDeadline(true),
		circuit.WithOnStateChangeHookFn(func(from, to circuit.State) {
			if b.cb.Load() == cb { // not a retired breaker's timer, nor the carry-over below
				b.onStateChange(from, to)
			}
		}),
	)
	if state != circuit.StateClosed {
		cb.SetState(state)
		if state == circuit.StateOpen {
			b.openedAt.Store(b.now().UnixNano())
		}
	}
	b.settings.Store(&breakerSettings{cfg: cfg, probes: make(chan struct{}, max(cfg.HalfOpenProbes, 1))})
	b.cb.Store(cb)
}

// onStateChange runs while the library holds its lock: it must not call
// back into the breaker or block.
func (b *Breaker) onStateChange(_, to circuit.State) {
	if to == circuit.StateOpen {
		b.openedAt.Store(b.now().UnixNano())
		b.trips.Add(1)
	}
	select {
	case b.changes <- BreakerState(to):
	default: // nobody listening fast enough; State() still tells the truth
	}
}

// Changes delivers state changes, for the lifecycle poller. Changes are
// dropped when nobody reads them.
func (b *Breaker) Changes() <-chan BreakerState { return b.changes }

// State returns the current state.
func (b *Breaker) State() BreakerState { return BreakerState(b.cb.Load().State()) }

// Failures returns the count of consecutive failures seen while closed.
func (b *Breaker) Failures() int64 { return b.cb.Load().Counters().ConsecutiveFailures }

// Trips returns how many times the breaker has opened.
func (b *Breaker) Trips() int64 { return b.trips.Load() }

// HalfOpen moves an open breaker to half-open at once, so the next request is
// the trial (used when a health poll succeeds while the breaker is open).
func (b *Breaker) HalfOpen() {
	if cb := b.cb.Load(); cb.State() == circuit.StateOpen {
		cb.SetState(circuit.StateHalfOpen)
	}
}

// RetryIn returns how long until an open breaker lets a trial through (at
// least one second, for Retry-After).
func (b *Breaker) RetryIn() time.Duration {
	left := b.settings.Load().cfg.OpenTimeout - b.now().Sub(time.Unix(0, b.openedAt.Load()))
	return max(left.Round(time.Second), time.Second)
}

// outcome tells the breaker how to count an attempt.
type outcome uint8

const (
	countSuccess outcome = iota
	countFailure
	countIgnore // e.g. a 4xx other than 429: the caller's fault, not upstream's
)

// do runs one attempt through the breaker. attempt reports how the breaker
// should count its result. If the breaker is open, or half-open with every
// trial slot taken, do returns ErrCircuitOpen without calling attempt.
func (b *Breaker) do(ctx context.Context, attempt func() (outcome, error)) error {
	cb, probes := b.cb.Load(), b.settings.Load().probes
	if cb.State() == circuit.StateHalfOpen {
		select {
		case probes <- struct{}{}:
			defer func() { <-probes }()
		default:
			return ErrCircuitOpen
		}
	}
	_, err := cb.Do(ctx, func() (any, error) {
		o, err := attempt()
		switch {
		case o == countIgnore:
			return nil, circuit.Ignore(err) // unwrapped: the library checks by type assertion
		case o == countSuccess:
			return nil, circuit.MarkAsSuccess(err)
		}
		return nil, err
	})
	if err == circuit.ErrOpen {
		return ErrCircuitOpen
	}
	return err
}
