package upstream

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errDown = errors.New("down")

func fail(b *Breaker) error {
	return b.do(context.Background(), func() (outcome, error) { return countFailure, errDown })
}

func TestBreakerOpensAfterConsecutiveFailuresFarApart(t *testing.T) {
	t.Parallel()
	b := NewBreaker(BreakerConfig{Failures: 3, OpenTimeout: time.Hour, HalfOpenProbes: 1})
	for i := 0; i < 3; i++ {
		if b.State() != BreakerClosed {
			t.Fatalf("open after %d failures", i)
		}
		_ = fail(b)
	}
	if b.State() != BreakerOpen || b.Trips() != 1 {
		t.Fatalf("state %s, trips %d after 3 failures; want open, 1", b.State(), b.Trips())
	}
	if err := fail(b); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("call while open: %v", err)
	}
	if d := b.RetryIn(); d < 59*time.Minute {
		t.Errorf("RetryIn = %v, want about an hour", d)
	}
}

func TestBreakerIgnoresCallerErrors(t *testing.T) {
	t.Parallel()
	b := NewBreaker(BreakerConfig{Failures: 1, OpenTimeout: time.Hour, HalfOpenProbes: 1})
	_ = b.do(context.Background(), func() (outcome, error) { return countIgnore, errDown })
	if b.State() != BreakerClosed {
		t.Fatalf("a 4xx-like error opened the breaker")
	}
}

func TestBreakerReconfigureKeepsState(t *testing.T) {
	t.Parallel()
	b := NewBreaker(BreakerConfig{Failures: 1, OpenTimeout: time.Hour, HalfOpenProbes: 1})
	_ = fail(b)
	b.Reconfigure(BreakerConfig{Failures: 5, OpenTimeout: 2 * time.Hour, HalfOpenProbes: 2})
	if b.State() != BreakerOpen || b.Trips() != 1 {
		t.Fatalf("after reconfigure: %s, trips %d; want open, 1", b.State(), b.Trips())
	}
	if d := b.RetryIn(); d < 119*time.Minute {
		t.Errorf("RetryIn = %v, want the new open timeout", d)
	}
	b.HalfOpen()
	if err := b.do(context.Background(), func() (outcome, error) { return countSuccess, nil }); err != nil {
		t.Fatal(err)
	}
	if b.State() != BreakerClosed {
		t.Fatalf("good trial: %s, want closed", b.State())
	}
	for i := 0; i < 4; i++ {
		_ = fail(b)
	}
	if b.State() != BreakerClosed {
		t.Fatal("opened before the new threshold of 5")
	}
	_ = fail(b)
	if b.State() != BreakerOpen {
		t.Fatal("not open after 5 failures")
	}
}
