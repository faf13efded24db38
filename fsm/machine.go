package fsm

import (
	"context"
	"errors"

	looplab "github.com/looplab/fsm"
)

// looplab event names.
const (
	evOK        = "ok"        // a good poll: any live state → CONNECTED
	evFail      = "fail"      // the first poll failed: CONNECTING → RECONNECTING
	evReconnect = "reconnect" // failed polls or the breaker: CONNECTED → RECONNECTING; a good poll while the breaker is open: FAILED → RECONNECTING
	evGiveUp    = "give_up"   // reconnect attempts used up: RECONNECTING → FAILED
	evShutdown  = "shutdown"  // any live state → DISCONNECTED
)

// events is looplab's transition table. It allows exactly the transitions
// Next can decide (eventFor names them), plus ok's self-transition.
func events() looplab.Events {
	live := []string{string(Connecting), string(Connected), string(Reconnecting), string(Failed)}
	return looplab.Events{
		{Name: evOK, Src: live, Dst: string(Connected)},
		{Name: evFail, Src: []string{string(Connecting)}, Dst: string(Reconnecting)},
		{Name: evReconnect, Src: []string{string(Connected), string(Failed)}, Dst: string(Reconnecting)},
		{Name: evGiveUp, Src: []string{string(Reconnecting)}, Dst: string(Failed)},
		{Name: evShutdown, Src: live, Dst: string(Disconnected)},
	}
}

// eventFor names the looplab event that moves from to to, as decided by
// Next. ok is false when no event is needed (the state does not change).
func eventFor(from, to State) (string, bool) {
	switch {
	case from == Disconnected:
		return "", false
	case to == Connected:
		return evOK, true // a self-transition when already CONNECTED
	case to == Disconnected:
		return evShutdown, true
	case from == Connecting && to == Reconnecting:
		return evFail, true
	case (from == Connected || from == Failed) && to == Reconnecting:
		return evReconnect, true
	case from == Reconnecting && to == Failed:
		return evGiveUp, true
	}
	return "", false
}

// change is the argument of an event: the status Next decided and why.
type change struct {
	next   Status
	reason string
}

// observe applies o through Next and fires the event for the result. It
// reports whether the state changed. Only the driving goroutine calls it.
func (l *Lifecycle) observe(ctx context.Context, o Observation) bool {
	l.mu.Lock()
	prev := l.status
	next, reason := Next(l.config(), prev, o)
	if next.State == prev.State {
		l.status = next // counters only; enterState will not run
	}
	l.mu.Unlock()
	ev, ok := eventFor(prev.State, next.State)
	if !ok {
		return false
	}
	l.fire(ctx, ev, change{next: next, reason: reason})
	return l.State() != prev.State
}

// fire runs one looplab event. The context is detached from ctx's
// cancellation: an Event given a cancelled or expired context leaves
// looplab in transition for good (see the looplab/fsm section of the
// repo's docs/libraries.md), and Run fires the shutdown event precisely
// when its ctx has ended.
func (l *Lifecycle) fire(ctx context.Context, ev string, c change) {
	err := l.f.Event(context.WithoutCancel(ctx), ev, c)
	var same looplab.NoTransitionError
	if err == nil || errors.As(err, &same) { // ok while CONNECTED: not a failure
		return
	}
	// Unreachable while eventFor and events agree; the state stays put.
	l.log.Error("fsm: event failed", "event", ev, "state", l.State(), "err", err)
}

// enterState is looplab's enter_state callback, run on every real
// transition in the goroutine that fired the event, after looplab released
// its locks. It publishes e.Dst (not f.Current(), which a nested event could
// already have moved on), records the transition, wakes Wait, then logs.
func (l *Lifecycle) enterState(_ context.Context, e *looplab.Event) {
	var c change
	if len(e.Args) > 0 {
		c, _ = e.Args[0].(change)
	}
	t := Transition{From: State(e.Src), To: State(e.Dst), Reason: c.reason, Time: l.now()}
	l.mu.Lock()
	l.status = c.next
	l.status.State = t.To
	l.stateSince = t.Time
	l.transitions.push(t)
	l.state.Store(t.To)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	l.log.Info("upstream link state changed", "from", t.From, "to", t.To, "reason", t.Reason)
}
