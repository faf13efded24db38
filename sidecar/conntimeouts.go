package sidecar

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The API listener's timeouts are enforced by its connections (lazyConn),
// set from fasthttp's connection-state hook with a coarse clock, rather
// than by fasthttp: for its own timeouts fasthttp reads the clock and moves
// a deadline three times per request; this reads an atomic twice, and the
// deadlines themselves move lazily.
const (
	// defaultRequestTimeout bounds reading a request from its first byte,
	// and the wait for a new connection's first byte (slow headers,
	// half-sent bodies).
	defaultRequestTimeout = 10 * time.Second
	// defaultIdleTimeout closes keep-alive connections idle this long.
	defaultIdleTimeout = 90 * time.Second
	// defaultWriteSlack is added to upstream.mintTimeout to bound a request
	// from its first byte to its answer being written.
	defaultWriteSlack = 10 * time.Second
	// clockTick is the coarse clock's resolution. Deadlines get one tick
	// more, so they fire up to a tick late, never early.
	clockTick = 250 * time.Millisecond
)

// Timeouts are the API listener's timeouts; zero fields take the defaults
// (10s, 90s, 10s). Tests shorten them.
type Timeouts struct {
	Request    time.Duration // reading a request, from its first byte
	Idle       time.Duration // a keep-alive connection between requests
	WriteSlack time.Duration // added to upstream.mintTimeout for writing the answer
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Request <= 0 {
		t.Request = defaultRequestTimeout
	}
	if t.Idle <= 0 {
		t.Idle = defaultIdleTimeout
	}
	if t.WriteSlack <= 0 {
		t.WriteSlack = defaultWriteSlack
	}
	return t
}

// coarseClock is the time to within a tick, read with one atomic load.
type coarseClock struct{ ns atomic.Int64 }

func newCoarseClock() *coarseClock {
	c := &coarseClock{}
	c.set(time.Now())
	return c
}

func (c *coarseClock) set(now time.Time) { c.ns.Store(now.UnixNano()) }

// run ticks until ctx ends.
func (c *coarseClock) run(ctx context.Context) {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			c.set(now)
		case <-ctx.Done():
			return
		}
	}
}

// later is at least d from now (and at most d plus a tick).
func (c *coarseClock) later(d time.Duration) time.Time {
	return time.Unix(0, c.ns.Load()+int64(d+clockTick))
}

// connState is the API server's connection-state hook: it sets the
// deadlines of the phase a connection enters.
func (s *Sidecar) connState(c net.Conn, st fasthttp.ConnState) {
	lc, ok := c.(*lazyConn)
	if !ok {
		return
	}
	// Errors: the connection is closed or broken, which its next read or
	// write reports.
	switch st {
	case fasthttp.StateNew:
		_ = lc.SetReadDeadline(s.clock.later(s.timeouts.Request))
	case fasthttp.StateActive:
		_ = lc.SetReadDeadline(s.clock.later(s.timeouts.Request))
		_ = lc.SetWriteDeadline(s.clock.later(s.cfg.Load().Upstream.MintTimeout + s.timeouts.WriteSlack))
	case fasthttp.StateIdle:
		lc.settle() // the answer has been written
		_ = lc.SetReadDeadline(s.clock.later(s.timeouts.Idle))
	}
}
