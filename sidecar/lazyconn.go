package sidecar

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// lazyListener hands out connections whose deadlines move lazily.
type lazyListener struct{ net.Listener }

func (l lazyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lazyConn{Conn: c}, nil
}

// lazyConn is a net.Conn whose deadlines move the way nginx moves its
// timers: lazily. fasthttp sets a read deadline twice and a write deadline
// once per request, and each is a timer update in the runtime, the largest
// cost of a cached validate after parsing the request. A deadline that only
// moves later is recorded, not applied; when the earlier one the connection
// still has expires, the read or write sees that the recorded one is still
// ahead, applies it and carries on. A deadline that moves earlier, or is
// cleared, is applied at once. So I/O never times out before the deadline
// asked for, nor after it; the runtime's timer moves about once per timeout
// period instead of three times per request.
type lazyConn struct {
	net.Conn
	mu          sync.Mutex // guards the deadlines below
	read, write lazyDeadline

	// answered, if set, is told once the answer being written is out:
	// see afterAnswer.
	answered atomic.Pointer[func(delivered bool)]
	// writeFailed says a write failed: an answer did not reach the caller.
	writeFailed atomic.Bool
}

// afterAnswer has f told, once, whether the answer of the request being
// served was delivered: written whole, and the connection not reset by
// the caller (connReset) when the server is done with it (the
// connection-state hook's StateIdle, or Close if the connection ends
// first). Only a request whose caller had half-closed waits for this.
func (c *lazyConn) afterAnswer(f func(delivered bool)) { c.answered.Store(&f) }

// settle tells the waiting afterAnswer function, if any.
func (c *lazyConn) settle() {
	if c.answered.Load() == nil {
		return
	}
	if f := c.answered.Swap(nil); f != nil {
		(*f)(!c.writeFailed.Load() && !connReset(c.Conn))
	}
}

// Close settles a waiting afterAnswer first: after the close the socket
// can no longer tell whether it was reset.
func (c *lazyConn) Close() error {
	c.settle()
	return c.Conn.Close()
}

// lazyDeadline is one direction's deadline: asked is what was asked for,
// applied what the connection has. The zero time means none; asked is never
// earlier than applied, and zero only if applied is.
type lazyDeadline struct{ asked, applied time.Time }

// NetConn returns the connection underneath (as tls.Conn does), for
// peerOf's socket peek.
func (c *lazyConn) NetConn() net.Conn { return c.Conn }

func (c *lazyConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read.set(t, c.Conn.SetReadDeadline)
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
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
func (c *lazyConn) rearm(d *lazyDeadline, err error, apply func(time.Time) error) bool {
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

func (c *lazyConn) Read(b []byte) (int, error) {
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

func (c *lazyConn) Write(b []byte) (int, error) {
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
