package sim

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// WaitStats blocks until cond holds for Stats, ctx is done or the
// simulator is closed. It checks cond at once and again whenever an API
// request is counted (never by polling), so it suits conditions on the
// per-route counters, such as "three more health polls arrived".
func (s *Sim) WaitStats(ctx context.Context, cond func(Stats) bool) error {
	n := &s.counted
	n.waiters.Add(1)
	defer n.waiters.Add(-1)
	for {
		wake := n.channel()
		st := s.Stats()
		if cond(st) {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("sim: waiting for stats (now %+v): %w", st, ctx.Err())
		case <-s.done:
			return ErrClosed
		}
	}
}

// notifier wakes WaitStats callers. It costs an API request one atomic load
// while nobody waits.
type notifier struct {
	waiters atomic.Int32
	// mu guards ch: closed by notify, made again by the next waiter.
	mu sync.Mutex
	ch chan struct{}
}

// channel returns the channel the next notify closes. A waiter takes it
// before checking its condition, so no notification falls in between.
func (n *notifier) channel() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// notify wakes every waiter.
func (n *notifier) notify() {
	if n.waiters.Load() == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
