package fsm

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTransitionRingKeepsNewest drives rounds with CheckOnce: a probe that
// alternates makes one transition per round.
func TestTransitionRingKeepsNewest(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	alternate := func(context.Context) error {
		if n.Add(1)%2 == 0 {
			return errors.New("down")
		}
		return nil
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ticks int
	opts := testOptions()
	opts.Now = func() time.Time { ticks++; return start.Add(time.Duration(ticks) * time.Second) }
	cfg := drillConfig
	cfg.FailuresToReconnect = 1
	l := New(cfg, alternate, opts)
	for range 25 {
		l.CheckOnce(t.Context())
	}
	tr := l.Snapshot().Transitions
	if len(tr) != ringSize {
		t.Fatalf("%d transitions kept, want %d", len(tr), ringSize)
	}
	// Round i (1-based) makes transition i; the ring keeps 6..25, oldest first.
	for i, x := range tr {
		round := i + 6
		want := Transition{From: Reconnecting, To: Connected, Reason: "poll ok"}
		if round%2 == 0 {
			want = Transition{From: Connected, To: Reconnecting, Reason: "1 failed poll in a row"}
		}
		if x.From != want.From || x.To != want.To || x.Reason != want.Reason {
			t.Errorf("transition %d = %+v, want %+v", i, x, want)
		}
		if i > 0 && !x.Time.After(tr[i-1].Time) {
			t.Errorf("transition %d at %s, not after %s", i, x.Time, tr[i-1].Time)
		}
	}
}

// TestStateReadsRaceFreeWhileRunFires runs in real time with millisecond
// timings so Run fires many events while readers call State and Snapshot;
// -race checks the publication.
func TestStateReadsRaceFreeWhileRunFires(t *testing.T) {
	t.Parallel()
	const polls = 40
	var n atomic.Int64
	enough := make(chan struct{})
	alternate := func(context.Context) error {
		switch k := n.Add(1); {
		case k == polls:
			close(enough)
		case k%2 == 0:
			return errors.New("down")
		}
		return nil
	}
	cfg := Config{Interval: time.Millisecond, Timeout: time.Millisecond, FailuresToReconnect: 1,
		MaxReconnectAttempts: 1, Reconnect: ReconnectConfig{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}}
	l := New(cfg, alternate, Options{Logger: slog.New(slog.DiscardHandler)})
	stop := startRun(l)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if s := l.State(); s == "" {
					t.Error("empty state")
				}
				_ = l.Snapshot()
				runtime.Gosched()
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Error("too few polls in 10s")
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	close(done)
	wg.Wait()
	if got := len(l.Snapshot().Transitions); got < 10 {
		t.Errorf("%d transitions, want many", got)
	}
}
