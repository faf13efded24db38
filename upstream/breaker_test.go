package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errDown = errors.New("down")

// fakeClock is a clock that only moves when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func fail(b *Breaker) error {
	return b.do(context.Background(), func() (outcome, error) { return countFailure, errDown })
}

func succeed(b *Breaker) error {
	return b.do(context.Background(), func() (outcome, error) { return countSuccess, nil })
}

// trial runs one attempt that reports failure; it tells whether the attempt
// ran (reached upstream) or the breaker refused it.
func trial(b *Breaker) (ran bool) {
	err := b.do(context.Background(), func() (outcome, error) {
		ran = true
		return countFailure, errDown
	})
	if !ran && !errors.Is(err, ErrCircuitOpen) {
		panic("refused without ErrCircuitOpen: " + err.Error())
	}
	return ran
}

func TestBreakerOpensAfterConsecutiveFailuresFarApart(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 3, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour, HalfOpenProbes: 1}, clock.now)
	for i := 0; i < 3; i++ {
		if b.State() != BreakerClosed {
			t.Fatalf("open after %d failures", i)
		}
		_ = fail(b)
		clock.advance(10 * time.Minute)
	}
	clock.advance(-10 * time.Minute)
	if b.State() != BreakerOpen || b.Trips() != 1 {
		t.Fatalf("state %s, trips %d after 3 failures; want open, 1", b.State(), b.Trips())
	}
	if err := fail(b); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("call while open: %v", err)
	}
	if d := b.RetryIn(); d != time.Hour {
		t.Errorf("RetryIn = %v, want an hour", d)
	}
}

// TestBreakerOpenPeriodDoublesAfterFailedTrials: nothing reaches upstream
// before the open period ends; then exactly one trial; a failed trial opens
// the breaker for twice the last period, capped at maxOpenTimeout; RetryIn
// is, to the second rounded up, when the trial is let through; a
// successful trial closes it, and the next trip is openTimeout again.
func TestBreakerOpenPeriodDoublesAfterFailedTrials(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 2, OpenTimeout: 10 * time.Second, MaxOpenTimeout: 35 * time.Second, HalfOpenProbes: 1}, clock.now)
	_, _ = fail(b), fail(b)
	for _, period := range []time.Duration{10 * time.Second, 20 * time.Second, 35 * time.Second, 35 * time.Second} {
		if got := b.RetryIn(); got != period {
			t.Fatalf("RetryIn = %v just after opening, want %v", got, period)
		}
		clock.advance(period - 1500*time.Millisecond)
		if got := b.RetryIn(); got != 2*time.Second {
			t.Errorf("RetryIn = %v with 1.5s left, want 2s (rounded up)", got)
		}
		clock.advance(time.Second)
		if got := b.RetryIn(); got != time.Second {
			t.Errorf("RetryIn = %v with 0.5s left, want 1s", got)
		}
		if trial(b) || b.State() != BreakerOpen {
			t.Fatalf("a request reached upstream, or the breaker left open, 0.5s before the end of a %v period", period)
		}
		clock.advance(500 * time.Millisecond)
		if got := b.State(); got != BreakerHalfOpen {
			t.Fatalf("state %s at the end of a %v period, want half-open", got, period)
		}
		if !trial(b) {
			t.Fatalf("no trial at the end of a %v period", period)
		}
		if trial(b) {
			t.Fatalf("a second request reached upstream after the failed trial of a %v period", period)
		}
	}
	clock.advance(35 * time.Second)
	if err := succeed(b); err != nil || b.State() != BreakerClosed {
		t.Fatalf("good trial: %v, %s; want closed", err, b.State())
	}
	if got := b.Trips(); got != 5 {
		t.Errorf("trips = %d, want 5 (the trip and four failed trials)", got)
	}
	_, _ = fail(b), fail(b)
	if got := b.RetryIn(); b.State() != BreakerOpen || got != 10*time.Second {
		t.Errorf("after closing and tripping again: %s, RetryIn %v; want open for openTimeout, 10s", b.State(), got)
	}
	var changes []BreakerState
	for len(b.Changes()) > 0 {
		changes = append(changes, <-b.Changes())
	}
	want := []BreakerState{BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerOpen,
		BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerClosed, BreakerOpen}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
}

// TestBreakerHalfOpenGatesTrials: once the open period is over, at most
// halfOpenProbes trials run at once; the others fail fast.
func TestBreakerHalfOpenGatesTrials(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 1, OpenTimeout: time.Second, MaxOpenTimeout: time.Second, HalfOpenProbes: 2}, clock.now)
	_ = fail(b)
	clock.advance(time.Second)
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.do(context.Background(), func() (outcome, error) {
				started <- struct{}{}
				<-release
				return countSuccess, nil
			})
		}()
	}
	<-started
	<-started
	if err := succeed(b); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("a third concurrent trial: %v, want ErrCircuitOpen", err)
	}
	close(release)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || b.State() != BreakerClosed {
		t.Errorf("trials %v, state %s; want both ok and closed", errs, b.State())
	}
}

func TestBreakerIgnoresCallerErrors(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 1, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour, HalfOpenProbes: 1}, clock.now)
	_ = b.do(context.Background(), func() (outcome, error) { return countIgnore, errDown })
	if b.State() != BreakerClosed {
		t.Fatalf("a 4xx-like error opened the breaker")
	}
	_ = fail(b)
	clock.advance(time.Hour)
	// An ignored trial neither closes nor reopens: the next request is a trial too.
	_ = b.do(context.Background(), func() (outcome, error) { return countIgnore, errDown })
	if b.State() != BreakerHalfOpen {
		t.Fatalf("after an ignored trial: %s, want half-open", b.State())
	}
	if err := succeed(b); err != nil || b.State() != BreakerClosed {
		t.Fatalf("the next trial: %v, %s; want closed", err, b.State())
	}
}

func TestBreakerReconfigureKeepsState(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 3, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour, HalfOpenProbes: 1}, clock.now)
	_, _ = fail(b), fail(b)
	b.Reconfigure(BreakerConfig{Failures: 4, OpenTimeout: time.Hour, MaxOpenTimeout: 2 * time.Hour, HalfOpenProbes: 1})
	if _ = fail(b); b.State() != BreakerClosed || b.Failures() != 3 {
		t.Fatalf("third failure after raising the threshold to 4: %s, %d failures; want closed, 3 (the count kept)", b.State(), b.Failures())
	}
	if _ = fail(b); b.State() != BreakerOpen || b.Trips() != 1 {
		t.Fatalf("fourth failure: %s, trips %d; want open, 1", b.State(), b.Trips())
	}
	// An open period under way keeps its end...
	clock.advance(10 * time.Minute)
	b.Reconfigure(BreakerConfig{Failures: 5, OpenTimeout: time.Hour, MaxOpenTimeout: 3 * time.Hour, HalfOpenProbes: 2})
	if d := b.RetryIn(); d != 50*time.Minute || b.State() != BreakerOpen {
		t.Errorf("after a reload: %s, RetryIn %v; want open, 50m", b.State(), d)
	}
	// ...unless a lower maxOpenTimeout cuts it.
	b.Reconfigure(BreakerConfig{Failures: 5, OpenTimeout: 10 * time.Minute, MaxOpenTimeout: 20 * time.Minute, HalfOpenProbes: 2})
	if d := b.RetryIn(); d != 20*time.Minute {
		t.Errorf("after lowering maxOpenTimeout to 20m: RetryIn %v, want 20m", d)
	}
	clock.advance(20 * time.Minute)
	if !trial(b) {
		t.Fatal("no trial at the end of the cut period")
	}
	if d := b.RetryIn(); d != 20*time.Minute {
		t.Errorf("after a failed trial: RetryIn %v, want 20m (twice 20m, capped at the new maxOpenTimeout)", d)
	}
	clock.advance(20 * time.Minute)
	if err := succeed(b); err != nil || b.State() != BreakerClosed {
		t.Fatalf("good trial: %v, %s; want closed", err, b.State())
	}
	for i := 0; i < 4; i++ {
		_ = fail(b)
	}
	if b.State() != BreakerClosed {
		t.Fatal("opened before the new threshold of 5")
	}
	if _ = fail(b); b.State() != BreakerOpen || b.RetryIn() != 10*time.Minute {
		t.Fatalf("fifth failure: %s, RetryIn %v; want open for the new openTimeout, 10m", b.State(), b.RetryIn())
	}
}

// TestBreakerConcurrentUse runs requests, State and reloads from many
// goroutines while the clock moves (for the race detector, and to show the
// hook never deadlocks with callers).
func TestBreakerConcurrentUse(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := BreakerConfig{Failures: 2, OpenTimeout: time.Second, MaxOpenTimeout: 4 * time.Second, HalfOpenProbes: 1}
	b := NewBreaker(cfg, clock.now)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				switch (g + i) % 4 {
				case 0:
					_ = fail(b)
				case 1:
					_ = succeed(b)
				case 2:
					_ = b.State()
					_ = b.RetryIn()
				case 3:
					clock.advance(100 * time.Millisecond)
				}
				if g == 0 && i%100 == 0 {
					cfg.HalfOpenProbes = 1 + i%3
					b.Reconfigure(cfg)
				}
			}
		}()
	}
	wg.Wait()
}
