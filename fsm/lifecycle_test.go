package fsm

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestLifecycleDrill(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := newFakeProbe(true)
		l := New(drillConfig, p.probe, testOptions())
		stop := startRun(l)

		waitState(t, l, Connected) // the first poll runs at once
		p.ok.Store(false)
		waitState(t, l, Failed)
		if s := l.Snapshot(); s.Attempts != 3 || !s.EverConnected {
			t.Errorf("in FAILED: attempts %d, everConnected %v; want 3, true", s.Attempts, s.EverConnected)
		}
		p.ok.Store(true)
		waitState(t, l, Connected)
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if got := l.State(); got != Disconnected {
			t.Fatalf("after Run: %s, want DISCONNECTED", got)
		}

		// 30s interval; two failures; backoff 1s, 2s, 4s; FAILED every 4s.
		wantCalls := []time.Duration{0, 30 * time.Second, 60 * time.Second, 61 * time.Second,
			63 * time.Second, 67 * time.Second, 71 * time.Second}
		if got := p.drained(start); !equal(got, wantCalls) {
			t.Errorf("probe calls at %v, want %v", got, wantCalls)
		}
		s := l.Snapshot()
		wantTr := []string{
			"CONNECTING>CONNECTED poll ok @0s",
			"CONNECTED>RECONNECTING 2 failed polls in a row @1m0s",
			"RECONNECTING>FAILED 3 reconnect attempts failed @1m7s",
			"FAILED>CONNECTED poll ok @1m11s",
			"CONNECTED>DISCONNECTED shutdown @1m11s",
		}
		if got := transitions(s, start); !equal(got, wantTr) {
			t.Errorf("transitions\n got %q\nwant %q", got, wantTr)
		}
		if s.Polls != (PollCounts{OK: 2, Failed: 5}) || !s.LastPoll.OK || s.LastPoll.Time.Sub(start) != 71*time.Second {
			t.Errorf("polls %+v, last %+v; want 2 ok, 5 failed, last ok at 71s", s.Polls, s.LastPoll)
		}
	})
}

func TestLifecycleStartsWhileUpstreamDown(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := newFakeProbe(false)
		l := New(drillConfig, p.probe, testOptions())
		stop := startRun(l)
		waitState(t, l, Reconnecting)
		if s := l.Snapshot(); s.EverConnected || time.Since(start) != 0 {
			t.Errorf("at %s: everConnected %v; want RECONNECTING at once, never connected", time.Since(start), s.EverConnected)
		}
		waitState(t, l, Failed) // reconnect polls at 1s, 3s, 7s
		if got := time.Since(start); got != 7*time.Second {
			t.Errorf("FAILED at %s, want 7s", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

func TestLifecycleHangingProbeIsBoundedByTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		l := New(drillConfig, hang, testOptions())
		stop := startRun(l)
		waitState(t, l, Reconnecting)
		if got := time.Since(start); got != drillConfig.Timeout {
			t.Errorf("RECONNECTING at %s, want after the 5s timeout", got)
		}
		s := l.Snapshot()
		if s.LastPoll.OK || s.LastPoll.Latency != drillConfig.Timeout || !strings.Contains(s.LastPoll.Error, "deadline exceeded") {
			t.Errorf("last poll %+v, want failed after 5s with deadline exceeded", s.LastPoll)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestLifecycleCancelDuringPollIsNotAFailure: a poll cut short by Run's own
// ctx ending is dropped, and the shutdown event still goes through although
// that ctx is cancelled (looplab would wedge on it).
func TestLifecycleCancelDuringPollIsNotAFailure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		l := New(drillConfig, hang, testOptions())
		stop := startRun(l)
		synctest.Wait() // Run is inside the probe
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		s := l.Snapshot()
		if s.State != Disconnected || s.Polls != (PollCounts{}) {
			t.Errorf("state %s, polls %+v; want DISCONNECTED and no poll counted", s.State, s.Polls)
		}
		if tr := s.Transitions; len(tr) != 1 || tr[0].From != Connecting || tr[0].Reason != "shutdown" {
			t.Errorf("transitions %+v, want CONNECTING>DISCONNECTED shutdown", tr)
		}
	})
}

func TestLifecycleRunTwice(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProbe(true)
		l := New(drillConfig, p.probe, testOptions())
		stop := startRun(l)
		synctest.Wait()
		if err := l.Run(context.Background()); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v, want ErrRunning", err)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

func TestReconfigureAppliesToNextDecision(t *testing.T) {
	t.Parallel()
	var ok atomic.Bool
	ok.Store(true)
	l := New(Config{FailuresToReconnect: 1}, func(context.Context) error {
		if ok.Load() {
			return nil
		}
		return errors.New("down")
	}, Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	l.CheckOnce(ctx)
	if l.State() != Connected {
		t.Fatalf("state %s, want CONNECTED", l.State())
	}
	l.Reconfigure(Config{FailuresToReconnect: 2})
	ok.Store(false)
	l.CheckOnce(ctx)
	if l.State() != Connected {
		t.Fatalf("after one failed poll with failuresToReconnect 2: %s, want CONNECTED", l.State())
	}
	l.CheckOnce(ctx)
	if l.State() != Reconnecting {
		t.Fatalf("after two failed polls: %s, want RECONNECTING", l.State())
	}
}
