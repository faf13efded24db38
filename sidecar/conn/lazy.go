// Package conn is the API listener's connection plumbing: connections
// whose deadlines move lazily (Lazy, handed out by Listener), the
// deadlines of each phase of a connection set from a coarse clock
// (Deadlines), and what the caller has done to its end of a connection
// (Peer). It knows no HTTP: the sidecar's server hook says which phase a
// connection enters.
package conn

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Listener hands out connections whose deadlines move lazily (*Lazy).
type Listener struct{ net.Listener }

// Accept returns the next connection as a *Lazy.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Lazy{Conn: c}, nil
}

// Lazy is a net.Conn whose deadlines move the way nginx moves its
// timers: lazily. fasthttp sets a read deadline twice and a write deadline
// once per request, and each is a timer update in the runtime, the largest
// cost of a cached validate after parsing the request. A deadline that only
// moves later is recorded, not applied; when the earlier one the connection
// still has expires, the read or write sees that the recorded one is still
// ahead, applies it and carries on. A deadline that moves earlier, or is
// cleared, is applied at once. So I/O never times out before the deadline
// asked for, nor after it; the runtime's timer moves about once per timeout
// period instead of three times per request.
type Lazy struct {
	net.Conn
	mu          sync.Mutex // guards the deadlines below
	read, write lazyDeadline

	// answered, if set, is told once the answer being written is out:
	// see AfterAnswer.
	answered atomic.Pointer[func(delivered bool)]
	// writeFailed says a write failed: an answer did not reach the caller.
	writeFailed atomic.Bool
}

// AfterAnswer has f told, once, whether the answer of the request being
// served was delivered: written whole, and the connection not reset by
// the caller (Reset) when the server is done with it (Settle, or Close if
// the connection ends first). Only a request whose caller had half-closed
// needs to wait for this.
func (c *Lazy) AfterAnswer(f func(delivered bool)) { c.answered.Store(&f) }

// Settle tells the waiting AfterAnswer function, if any: the server is
// done with the answer (the connection is idle again).
func (c *Lazy) Settle() {
	if c.answered.Load() == nil {
		return
	}
	if f := c.answered.Swap(nil); f != nil {
		(*f)(!c.writeFailed.Load() && !Reset(c.Conn))
	}
}

// Close settles a waiting AfterAnswer first: after the close the socket
// can no longer tell whether it was reset.
func (c *Lazy) Close() error {
	c.Settle()
	return c.Conn.Close()
}

// lazyDeadline is one direction's deadline: asked is what was asked for,
// applied what the connection has. The zero time means none; asked is never
// earlier than applied, and zero only if applied is.
type lazyDeadline struct{ asked, applied time.Time }

// NetConn returns the connection underneath (as tls.Conn does), for
// Peer's socket peek.
func (c *Lazy) NetConn() net.Conn { return c.Conn }

// SetDeadline sets both deadlines, lazily.
func (c *Lazy) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline records t, and applies it unless it is later than the
// one the connection has.
func (c *Lazy) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read.set(t, c.Conn.SetReadDeadline)
}

// SetWriteDeadline records t, and applies it unless it is later than the
// one the connection has.
func (c *Lazy) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.write.set(t, c.Conn.SetWriteDeadline)
}

// set records t, and applies it unless it is later than the applied one.
func (d *lazyDeadline) set(t time.Time, apply func(time.Time) error) error {
	d.asked = t
	if !d.applied.IsZero() && !t.IsZero() && !t.Before(d.applied) {
		return nil // later: applied when the earlier one expires
	}
	if err := apply(t); err != nil {
		return err
	}
	d.applied = t
	return nil
}

// rearm is called after an I/O call failed with a deadline error: if the
// deadline asked for is still ahead, it is applied and the call may be
// repeated.
func (c *Lazy) rearm(d *lazyDeadline, err error, apply func(time.Time) error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.asked.Equal(d.applied) || !time.Now().Before(d.asked) {
		return false // the deadline asked for has passed
	}
	if apply(d.asked) != nil {
		return false
	}
	d.applied = d.asked
	return true
}

// Read reads, applying the deadline asked for when an earlier one fires.
func (c *Lazy) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if err == nil || !c.rearm(&c.read, err, c.Conn.SetReadDeadline) {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Write writes all of b, applying the deadline asked for when an earlier
// one fires.
func (c *Lazy) Write(b []byte) (int, error) {
	written := 0
	for {
		n, err := c.Conn.Write(b[written:])
		written += n
		if err == nil {
			return written, nil
		}
		if !c.rearm(&c.write, err, c.Conn.SetWriteDeadline) {
			c.writeFailed.Store(true)
			return written, err
		}
	}
}
