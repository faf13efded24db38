package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// drillConfig is short enough to follow by hand: polls every 30s while
// CONNECTED, RECONNECTING after 2 failed polls, backoff 1s, 2s, 4s (capped),
// FAILED after 3 reconnect attempts, then every 4s.
var drillConfig = Config{
	Interval:             30 * time.Second,
	Timeout:              5 * time.Second,
	FailuresToReconnect:  2,
	MaxReconnectAttempts: 3,
	Reconnect:            ReconnectConfig{BaseDelay: time.Second, MaxDelay: 4 * time.Second},
}

// noJitter makes every jittered delay exact.
func noJitter(n int64) int64 { return n / 2 }

// fakeProbe is upstream's health route: good while ok is set. Each call's
// time is sent on calls (dropped if nobody keeps up).
type fakeProbe struct {
	ok    atomic.Bool
	calls chan time.Time
}

func newFakeProbe(ok bool) *fakeProbe {
	p := &fakeProbe{calls: make(chan time.Time, 64)}
	p.ok.Store(ok)
	return p
}

func (p *fakeProbe) probe(context.Context) error {
	select {
	case p.calls <- time.Now():
	default:
	}
	if p.ok.Load() {
		return nil
	}
	return errors.New("upstream down")
}

// drained returns the times of the calls not yet received, relative to start.
func (p *fakeProbe) drained(start time.Time) []time.Duration {
	var out []time.Duration
	for {
		select {
		case c := <-p.calls:
			out = append(out, c.Sub(start))
		default:
			return out
		}
	}
}

func testOptions() Options {
	return Options{Logger: slog.New(slog.DiscardHandler), Rand: noJitter}
}

// startRun runs l.Run in a goroutine; stop cancels it and returns Run's result.
func startRun(l *Lifecycle) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// waitState waits for want, at most an hour of (virtual) time.
func waitState(t *testing.T, l *Lifecycle, want State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := l.Wait(ctx, want); err != nil {
		t.Fatal(err)
	}
}

// transitions renders a snapshot's transitions as "FROM>TO reason @elapsed".
func transitions(s Snapshot, start time.Time) []string {
	var out []string
	for _, tr := range s.Transitions {
		out = append(out, fmt.Sprintf("%s>%s %s @%s", tr.From, tr.To, tr.Reason, tr.Time.Sub(start)))
	}
	return out
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
