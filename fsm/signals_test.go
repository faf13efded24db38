package fsm

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestLifecycleBreakerOpenedMovesStateBeforeNextPoll: a breaker trip moves
// CONNECTED to RECONNECTING at once, whatever failuresToReconnect says, and
// the next good poll calls the half-open hook before it reports CONNECTED.
func TestLifecycleBreakerOpenedMovesStateBeforeNextPoll(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := newFakeProbe(true)
		var breakerOpen atomic.Bool
		var hookCalls atomic.Int32
		var stateInHook atomic.Value
		var l *Lifecycle
		opts := testOptions()
		opts.OnGoodPollWhileOpen = func() {
			hookCalls.Add(1)
			stateInHook.Store(l.State())
			breakerOpen.Store(false) // half-open: the next real request is the trial
		}
		l = New(drillConfig, p.probe, opts)
		stop := startRun(l)
		waitState(t, l, Connected)

		breakerOpen.Store(true)
		l.BreakerOpened()
		waitState(t, l, Reconnecting)
		if got := time.Since(start); got != 0 {
			t.Errorf("RECONNECTING at %s, want at once", got)
		}
		if got := p.drained(start); len(got) != 1 {
			t.Errorf("probe calls %v, want only the first", got)
		}
		waitState(t, l, Connected) // the reconnect poll after BaseDelay
		if got := time.Since(start); got != time.Second {
			t.Errorf("CONNECTED again at %s, want 1s", got)
		}
		if hookCalls.Load() != 1 || breakerOpen.Load() || stateInHook.Load() != Reconnecting {
			t.Errorf("hook calls %d, breaker open %v, state in hook %v; want 1, false, RECONNECTING",
				hookCalls.Load(), breakerOpen.Load(), stateInHook.Load())
		}
		if got := p.drained(start); !equal(got, []time.Duration{time.Second}) {
			t.Errorf("probe calls since the first at %v, want [1s]", got)
		}
		if got := <-p.calls; got.Sub(start) != 31*time.Second { // another good poll, no second hook call
			t.Errorf("next poll at %s, want 31s", got.Sub(start))
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if hookCalls.Load() != 1 {
			t.Errorf("hook called %d times, want once per breaker opening", hookCalls.Load())
		}
		tr := l.Snapshot().Transitions
		if len(tr) < 2 || tr[1].Reason != "breaker opened" {
			t.Errorf("transitions %+v, want the second for %q", tr, "breaker opened")
		}
	})
}

func TestLifecycleShutdownStopsPolling(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProbe(true)
		l := New(drillConfig, p.probe, testOptions())
		stop := startRun(l)
		waitState(t, l, Connected)
		<-p.calls
		l.Shutdown()
		l.Shutdown() // idempotent
		waitState(t, l, Disconnected)
		select {
		case c := <-p.calls:
			t.Errorf("poll at %s after Shutdown", c)
		case <-time.After(10 * time.Minute):
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		tr := l.Snapshot().Transitions
		if len(tr) != 2 || tr[1].To != Disconnected || tr[1].Reason != "shutdown" {
			t.Errorf("transitions %+v, want CONNECTED then one shutdown", tr)
		}
	})
}

// TestCheckOnceAppliesSignalsBeforePolling drives rounds by hand: a pending
// BreakerOpened is applied before the poll, and after Shutdown a round
// does not poll.
func TestCheckOnceAppliesSignalsBeforePolling(t *testing.T) {
	t.Parallel()
	p := newFakeProbe(true)
	var hookCalls atomic.Int32
	opts := testOptions()
	opts.OnGoodPollWhileOpen = func() { hookCalls.Add(1) }
	l := New(drillConfig, p.probe, opts)
	ctx := t.Context()

	l.CheckOnce(ctx)
	if got := l.State(); got != Connected || hookCalls.Load() != 0 {
		t.Fatalf("after a good poll: %s, hook calls %d; want CONNECTED, 0", got, hookCalls.Load())
	}
	p.ok.Store(false)
	l.BreakerOpened()
	l.BreakerOpened() // coalesced
	l.CheckOnce(ctx)
	if s := l.Snapshot(); s.State != Reconnecting || s.Attempts != 1 || s.Transitions[1].Reason != "breaker opened" {
		t.Fatalf("after breaker + failed poll: %+v; want RECONNECTING by the breaker, then attempt 1 failed", s)
	}
	p.ok.Store(true)
	l.CheckOnce(ctx)
	if got := l.State(); got != Connected || hookCalls.Load() != 1 {
		t.Fatalf("after a good poll: %s, hook calls %d; want CONNECTED, 1", got, hookCalls.Load())
	}

	l.Shutdown()
	l.CheckOnce(ctx)
	l.CheckOnce(ctx)
	if got := len(p.drained(time.Time{})); got != 3 {
		t.Errorf("%d probe calls, want 3 (none after Shutdown)", got)
	}
	if got := l.State(); got != Disconnected {
		t.Errorf("after Shutdown: %s", got)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Wait(cancelled, Connected); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait for a state never coming back = %v, want context.Canceled", err)
	}
}
