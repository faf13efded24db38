package conn

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// The API listener's timeouts are enforced by its connections (Lazy),
// set by phase from the server's connection-state hook with a coarse
// clock, rather than by the HTTP server: for its own timeouts fasthttp
// reads the clock and moves a deadline three times per request; this
// reads an atomic twice, and the deadlines themselves move lazily.
const (
	// defaultRequestTimeout bounds reading a request from its first byte,
	// and the wait for a new connection's first byte (slow headers,
	// half-sent bodies).
	defaultRequestTimeout = 10 * time.Second
	// defaultIdleTimeout closes keep-alive connections idle this long.
	defaultIdleTimeout = 90 * time.Second
	// defaultWriteSlack is added to the answer's own bound (the mint
	// deadline) to bound a request from its first byte to its answer being
	// written.
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

// Deadlines sets the deadlines of the phase a connection enters, from
// Timeouts and a coarse clock, so that a deadline fires up to a clock tick
// (250ms) late, never early. Connections other than *Lazy are left alone.
// Errors setting one are not reported: the connection is closed or
// broken, which its next read or write reports.
type Deadlines struct {
	t     Timeouts
	clock atomic.Int64 // the time to within a tick, in Unix nanoseconds
}

// NewDeadlines returns Deadlines for t (zero fields: the defaults), its
// clock set to now.
func NewDeadlines(t Timeouts) *Deadlines {
	d := &Deadlines{t: t.withDefaults()}
	d.SetClock(time.Now())
	return d
}

// SetClock sets the clock to now: before the first connection, since a
// Run started long after NewDeadlines would otherwise give it deadlines
// already past.
func (d *Deadlines) SetClock(now time.Time) { d.clock.Store(now.UnixNano()) }

// Run ticks the clock until ctx ends.
func (d *Deadlines) Run(ctx context.Context) {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			d.SetClock(now)
		case <-ctx.Done():
			return
		}
	}
}

// later is at least dur from now (and at most dur plus a tick).
func (d *Deadlines) later(dur time.Duration) time.Time {
	return time.Unix(0, d.clock.Load()+int64(dur+clockTick))
}

// Opened is a new connection's phase: its first request must arrive within
// Timeouts.Request.
func (d *Deadlines) Opened(c net.Conn) {
	if lc, ok := c.(*Lazy); ok {
		_ = lc.SetReadDeadline(d.later(d.t.Request))
	}
}

// Active is a request's phase: it must be read within Timeouts.Request,
// and answered within answer (the longest an answer may take) plus
// Timeouts.WriteSlack.
func (d *Deadlines) Active(c net.Conn, answer time.Duration) {
	if lc, ok := c.(*Lazy); ok {
		_ = lc.SetReadDeadline(d.later(d.t.Request))
		_ = lc.SetWriteDeadline(d.later(answer + d.t.WriteSlack))
	}
}

// Idle is a keep-alive connection's phase between requests: the next must
// begin within Timeouts.Idle.
func (d *Deadlines) Idle(c net.Conn) {
	if lc, ok := c.(*Lazy); ok {
		_ = lc.SetReadDeadline(d.later(d.t.Idle))
	}
}
