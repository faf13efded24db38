package fsm

import (
	"fmt"
	"time"
)

// State is the state of the upstream link.
type State string

// The states of the upstream link (docs/lifecycle.md).
const (
	// Connecting is the state at start, until the first poll.
	Connecting State = "CONNECTING"
	// Connected means the last poll was good.
	Connected State = "CONNECTED"
	// Reconnecting means upstream was lost; polls back off exponentially.
	Reconnecting State = "RECONNECTING"
	// Failed means MaxReconnectAttempts reconnect polls failed; mints fail
	// fast and polls continue every Reconnect.MaxDelay.
	Failed State = "FAILED"
	// Disconnected is the terminal state after shutdown.
	Disconnected State = "DISCONNECTED"
)

// Observation is one input to the state machine.
type Observation uint8

// Observations. The zero value is not an observation; Next ignores it.
const (
	// PollOK is a good health poll while the circuit breaker is not open
	// (closed, or half-open: its open period is over).
	PollOK Observation = iota + 1
	// PollFailed is a failed or timed-out health poll.
	PollFailed
	// BreakerOpened is the passive signal that the circuit breaker opened.
	BreakerOpened
	// Shutdown is the sidecar shutting down.
	Shutdown
	// PollOKBreakerOpen is a good health poll while the circuit breaker is
	// open: upstream is reachable, but minting is known to fail until the
	// breaker's open period is over (a worker's /health answers 200 while
	// its mint backend fails).
	PollOKBreakerOpen
	// BreakerClosed is the passive signal that the circuit breaker closed: a
	// trial request succeeded.
	BreakerClosed
)

// String returns the observation in words, e.g. "poll ok".
func (o Observation) String() string {
	switch o {
	case PollOK:
		return "poll ok"
	case PollFailed:
		return "poll failed"
	case BreakerOpened:
		return "breaker opened"
	case Shutdown:
		return "shutdown"
	case PollOKBreakerOpen:
		return "poll ok, breaker open"
	case BreakerClosed:
		return "breaker closed"
	}
	return fmt.Sprintf("observation(%d)", uint8(o))
}

// Status is what the state machine knows: the state plus the counters the
// rules need. The zero Status is not valid; start from Status{State: Connecting}.
type Status struct {
	// State is the current state.
	State State
	// Failures counts consecutive failed polls while CONNECTED; it is 0 in
	// every other state.
	Failures int
	// Attempts counts failed polls since leaving CONNECTED (or CONNECTING):
	// the reconnect attempts made in RECONNECTING and then in FAILED. It is 0
	// on entering RECONNECTING and in CONNECTED.
	Attempts int
	// EverConnected says the link has been CONNECTED at least once.
	EverConnected bool
}

// Next applies one observation to s and returns the new status and the
// reason in words ("poll ok", "3 failed polls in a row", "breaker opened",
// "breaker open", "breaker closed", "5 reconnect attempts failed",
// "shutdown"). It is deterministic: no clock, no randomness. cfg's
// thresholds below 1 count as 1.
//
// The breaker's open period is never cut short by polls: while it is open
// the state is RECONNECTING whatever the polls say (PollOKBreakerOpen), and
// a good poll moves it to CONNECTED only once the breaker is half-open or
// closed (PollOK). The breaker closing moves RECONNECTING to CONNECTED at
// once (a trial request succeeded); FAILED waits for a good poll.
func Next(cfg Config, s Status, o Observation) (next Status, reason string) {
	if s.State == Disconnected {
		return s, "already disconnected"
	}
	switch o {
	case PollOK:
		return Status{State: Connected, EverConnected: true}, "poll ok"
	case PollFailed:
		return nextFailed(cfg, s)
	case PollOKBreakerOpen:
		// Reachable: the reconnect attempts start over, so polls stay at
		// the base delay and the state follows soon after the period ends.
		return Status{State: Reconnecting, EverConnected: s.EverConnected}, "breaker open"
	case BreakerOpened:
		if s.State == Connected {
			return Status{State: Reconnecting, EverConnected: s.EverConnected}, "breaker opened"
		}
		return s, "breaker opened"
	case BreakerClosed:
		if s.State == Reconnecting {
			return Status{State: Connected, EverConnected: true}, "breaker closed"
		}
		return s, "breaker closed"
	case Shutdown:
		s.State = Disconnected
		return s, "shutdown"
	}
	return s, "unknown " + o.String()
}

// nextFailed is Next for a failed poll.
func nextFailed(cfg Config, s Status) (Status, string) {
	switch s.State {
	case Connecting:
		return Status{State: Reconnecting, EverConnected: s.EverConnected}, "first poll failed"
	case Connected:
		s.Failures++
		reason := plural(s.Failures, "failed poll", "failed polls") + " in a row"
		if s.Failures < max(cfg.FailuresToReconnect, 1) {
			return s, reason
		}
		return Status{State: Reconnecting, EverConnected: s.EverConnected}, reason
	case Reconnecting:
		s.Attempts++
		if s.Attempts < max(cfg.MaxReconnectAttempts, 1) {
			return s, fmt.Sprintf("reconnect attempt %d failed", s.Attempts)
		}
		s.State = Failed
		return s, plural(s.Attempts, "reconnect attempt", "reconnect attempts") + " failed"
	}
	s.Attempts++ // Failed
	return s, fmt.Sprintf("reconnect attempt %d failed", s.Attempts)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// NextPoll returns the un-jittered delay before the next poll in s:
// Interval in CONNECTED and CONNECTING; in RECONNECTING BaseDelay before the
// first reconnect attempt, doubling after each failed one (BaseDelay·2^Attempts)
// and capped at MaxDelay; MaxDelay in FAILED; 0 in DISCONNECTED, which does
// not poll.
func NextPoll(cfg Config, s Status) time.Duration {
	switch s.State {
	case Reconnecting:
		return backoff(cfg.Reconnect.BaseDelay, cfg.Reconnect.MaxDelay, s.Attempts)
	case Failed:
		return cfg.Reconnect.MaxDelay
	case Disconnected:
		return 0
	}
	return cfg.Interval
}

// backoff returns base·2^n capped at limit, without overflowing.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < limit; i++ {
		if d > limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}
