// Package fsm is the lifecycle of the sidecar's link to upstream: a state
// machine (CONNECTING, CONNECTED, RECONNECTING, FAILED, DISCONNECTED) driven
// by a health poller and by passive signals from the circuit breaker.
//
// It has two halves. Next is the pure core: given the config, the current
// Status and one Observation (a poll result, the breaker opening or
// closing, shutdown) it returns the next Status and a reason, with no
// clock, randomness or library involved, so every rule is testable as a
// table. NextPoll says how long to wait before the next poll in a Status. Lifecycle is the owner: its
// Run method is the only goroutine that polls, applies observations through
// Next and fires the resulting events on github.com/looplab/fsm, which holds
// the state and runs the enter_state callback that publishes it to an atomic
// (State, for request handlers), records the transition (Snapshot, for
// /health) and logs it with its reason.
//
// While the circuit breaker is open the state stays RECONNECTING whatever
// the polls say: a good poll means upstream is reachable, not that minting
// works, and the breaker's open period is never cut short (see docs/lifecycle.md,
// "The upstream lifecycle").
//
// looplab is wrapped here and nowhere else, around its traps: every Event
// gets a context that cannot be cancelled, because a cancelled one wedges
// the machine for good; only one goroutine calls Event, because concurrent
// calls race; a self-transition's NoTransitionError is not a failure;
// callbacks read e.Dst, not f.Current().
package fsm
