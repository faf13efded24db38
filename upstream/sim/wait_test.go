package sim

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitStats(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	done := make(chan error, 1)
	go func() {
		done <- s.WaitStats(context.Background(), func(st Stats) bool { return st.Health >= 2 })
	}()
	for range 2 {
		if r := c.do("GET", s.URL()+"/health", nil); r.status != 200 {
			t.Fatalf("health: %d", r.status)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitStats: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitStats(ctx, func(st Stats) bool { return st.Mint > 0 }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitStats for a mint that never comes = %v, want DeadlineExceeded", err)
	}
	_ = s.Close()
	if err := s.WaitStats(context.Background(), func(st Stats) bool { return st.Mint > 0 }); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitStats after Close = %v, want ErrClosed", err)
	}
}
