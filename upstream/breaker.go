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
	cb          *circuit.CircuitBreaker
	openTimeout time.Duration
	probes      chan struct{} // half-open trial slots
	openedAt    atomic.Int64  // UnixNano of the last transition to open
	trips       atomic.Int64
	changes     chan BreakerState
	now         func() time.Time
}

// NewBreaker builds a closed breaker from cfg (defaults must be filled in).
func NewBreaker(cfg BreakerConfig) *Breaker {
	b := &Breaker{
		openTimeout: cfg.OpenTimeout,
		probes:      make(chan struct{}, max(cfg.HalfOpenProbes, 1)),
		changes:     make(chan BreakerState, 16),
		now:         time.Now,
	}
	b.cb = circuit.New(
		circuit.WithTripFunc(circuit.NewTripFuncConsecutiveFailures(int64(max(cfg.Failures, 1)))),
		circuit.WithCounterResetInterval(-1),
		circuit.WithOpenTimeout(cfg.OpenTimeout),
		circuit.WithHalfOpenMaxSuccesses(1),
		circuit.WithFailOnContextDeadline(true),
		circuit.WithOnStateChangeHookFn(b.onStateChange),
	)
	return b
}

// onStateChange runs while the library holds its lock: it must not call
// back into b.cb or block.
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
func (b *Breaker) State() BreakerState { return BreakerState(b.cb.State()) }

// Failures returns the count of consecutive failures seen while closed.
func (b *Breaker) Failures() int64 { return b.cb.Counters().ConsecutiveFailures }

// Trips returns how many times the breaker has opened.
func (b *Breaker) Trips() int64 { return b.trips.Load() }

// HalfOpen moves an open breaker to half-open at once, so the next request is
// the trial (used when a health poll succeeds while the breaker is open).
func (b *Breaker) HalfOpen() {
	if b.cb.State() == circuit.StateOpen {
		b.cb.SetState(circuit.StateHalfOpen)
	}
}

// RetryIn returns how long until an open breaker lets a trial through (at
// least one second, for Retry-After).
func (b *Breaker) RetryIn() time.Duration {
	left := b.openTimeout - b.now().Sub(time.Unix(0, b.openedAt.Load()))
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
	if b.cb.State() == circuit.StateHalfOpen {
		select {
		case b.probes <- struct{}{}:
			defer func() { <-b.probes }()
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
	if err == circuit.ErrOpen {
		return ErrCircuitOpen
	}
	return err
}
