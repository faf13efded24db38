package fsm

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeBreaker is the breaker as the lifecycle sees it: open until a
// deadline on the (virtual) clock.
type fakeBreaker struct{ until atomic.Int64 }

func (b *fakeBreaker) openFor(d time.Duration) { b.until.Store(time.Now().Add(d).UnixNano()) }
func (b *fakeBreaker) open() bool              { return time.Now().UnixNano() < b.until.Load() }

// TestLifecycleBreakerOpenPeriodIsNotCutShortByPolls: health good while
// minting fails (a worker's /health is 200 while its mint backend fails).
// The breaker trips: CONNECTED becomes RECONNECTING at once, and stays so
// through every good poll of the open period; the first good poll after it
// gives CONNECTED (the breaker is half-open: the next real request is the
// trial). The trial fails: RECONNECTING again for the doubled period. So the
// state changes at most twice per open period, and never flaps.
func TestLifecycleBreakerOpenPeriodIsNotCutShortByPolls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := newFakeProbe(true)
		var b fakeBreaker
		opts := testOptions()
		opts.BreakerOpen = b.open
		l := New(drillConfig, p.probe, opts)
		stop := startRun(l)
		waitState(t, l, Connected)

		b.openFor(10 * time.Second)
		l.BreakerOpened()
		waitState(t, l, Reconnecting)
		if got := time.Since(start); got != 0 {
			t.Errorf("RECONNECTING at %s, want at once", got)
		}
		waitState(t, l, Connected)
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("CONNECTED again at %s, want 10s, when the open period ends", got)
		}
		// Polls every health.reconnect.baseDelay while open, all good.
		want := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second,
			6 * time.Second, 7 * time.Second, 8 * time.Second, 9 * time.Second, 10 * time.Second}
		if got := p.drained(start); !equal(got, want) {
			t.Errorf("polls at %v, want %v", got, want)
		}

		time.Sleep(500 * time.Millisecond) // the trial fails at 10.5s
		b.openFor(20 * time.Second)
		l.BreakerOpened()
		waitState(t, l, Reconnecting)
		waitState(t, l, Connected)
		if got := time.Since(start); got != 30500*time.Millisecond {
			t.Errorf("CONNECTED again at %s, want 30.5s", got)
		}
		l.BreakerClosed() // the next trial succeeds: no change
		synctest.Wait()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		got := transitions(l.Snapshot(), start)
		wantTr := []string{
			"CONNECTING>CONNECTED poll ok @0s",
			"CONNECTED>RECONNECTING breaker opened @0s",
			"RECONNECTING>CONNECTED poll ok @10s",
			"CONNECTED>RECONNECTING breaker opened @10.5s",
			"RECONNECTING>CONNECTED poll ok @30.5s",
			"CONNECTED>DISCONNECTED shutdown @30.5s",
		}
		if !equal(got, wantTr) {
			t.Errorf("transitions\n%q\nwant\n%q", got, wantTr)
		}
	})
}

// TestLifecycleBreakerClosedConnectsAtOnce: a trial that succeeds before the
// next poll moves RECONNECTING to CONNECTED without waiting for it.
func TestLifecycleBreakerClosedConnectsAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := newFakeProbe(true)
		var b fakeBreaker
		opts := testOptions()
		opts.BreakerOpen = b.open
		cfg := drillConfig
		cfg.Reconnect.BaseDelay = time.Minute // no poll comes in between
		cfg.Reconnect.MaxDelay = time.Minute
		l := New(cfg, p.probe, opts)
		stop := startRun(l)
		waitState(t, l, Connected)
		b.openFor(time.Second)
		l.BreakerOpened()
		waitState(t, l, Reconnecting)
		time.Sleep(2 * time.Second) // the period is over; a request is the trial, and succeeds
		l.BreakerClosed()
		waitState(t, l, Connected)
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("CONNECTED at %s, want 2s, when the breaker closed", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if tr := l.Snapshot().Transitions; len(tr) < 3 || tr[2].Reason != "breaker closed" {
			t.Errorf("transitions %+v, want the third for %q", tr, "breaker closed")
		}
		if got := p.drained(start); len(got) != 1 {
			t.Errorf("polls at %v, want only the first", got)
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
// breaker signal is applied before the poll, the latest of two pending
// signals wins, a good poll while the breaker is open keeps RECONNECTING,
// and after Shutdown a round does not poll.
func TestCheckOnceAppliesSignalsBeforePolling(t *testing.T) {
	t.Parallel()
	p := newFakeProbe(true)
	var open atomic.Bool
	opts := testOptions()
	opts.BreakerOpen = open.Load
	l := New(drillConfig, p.probe, opts)
	ctx := t.Context()

	l.CheckOnce(ctx)
	if got := l.State(); got != Connected {
		t.Fatalf("after a good poll: %s, want CONNECTED", got)
	}
	// Opened, then closed again before the round: the breaker is closed.
	l.BreakerOpened()
	l.BreakerClosed()
	l.CheckOnce(ctx)
	if s := l.Snapshot(); s.State != Connected || len(s.Transitions) != 1 {
		t.Fatalf("after opened-then-closed and a good poll: %+v; want CONNECTED, no transition", s)
	}
	p.ok.Store(false)
	open.Store(true)
	l.BreakerClosed()
	l.BreakerOpened()
	l.BreakerOpened() // coalesced
	l.CheckOnce(ctx)
	if s := l.Snapshot(); s.State != Reconnecting || s.Attempts != 1 || s.Transitions[1].Reason != "breaker opened" {
		t.Fatalf("after closed-then-opened + failed poll: %+v; want RECONNECTING by the breaker, then attempt 1 failed", s)
	}
	p.ok.Store(true)
	l.CheckOnce(ctx)
	if s := l.Snapshot(); s.State != Reconnecting || s.Attempts != 0 || len(s.Transitions) != 2 {
		t.Fatalf("after a good poll with the breaker open: %+v; want RECONNECTING, attempts 0, no transition", s)
	}
	open.Store(false) // half-open
	l.CheckOnce(ctx)
	if got := l.State(); got != Connected {
		t.Fatalf("after a good poll with the breaker half-open: %s, want CONNECTED", got)
	}

	l.Shutdown()
	l.CheckOnce(ctx)
	l.CheckOnce(ctx)
	if got := len(p.drained(time.Time{})); got != 5 {
		t.Errorf("%d probe calls, want 5 (none after Shutdown)", got)
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
