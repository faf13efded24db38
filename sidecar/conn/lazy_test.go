package conn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the deadlines that reach the connection, and keeps
// the last of each.
type countingConn struct {
	net.Conn
	reads, writes       atomic.Int64
	lastRead, lastWrite atomic.Pointer[time.Time]
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.reads.Add(1)
	c.lastRead.Store(&t)
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.writes.Add(1)
	c.lastWrite.Store(&t)
	return c.Conn.SetWriteDeadline(t)
}

// applied is the deadline the connection has: the last that reached it.
func applied(p *atomic.Pointer[time.Time]) time.Time {
	if t := p.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// watchdog closes c if the test has not ended within a minute, so that an
// I/O call with no deadline fails the test instead of hanging it.
func watchdog(t *testing.T, c net.Conn) {
	stop := time.AfterFunc(time.Minute, func() { _ = c.Close() })
	t.Cleanup(func() { stop.Stop() })
}

// lazyPipe is a Lazy over one end of a TCP connection on 127.0.0.1, and
// the other end.
func lazyPipe(t *testing.T) (*Lazy, *countingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: c}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return &Lazy{Conn: cc}, cc, peer
}

// readTimesOutAt reads from c with nothing to read and returns how long the
// read took to fail with a deadline error.
func readTimesOutAt(t *testing.T, c net.Conn, began time.Time) time.Duration {
	t.Helper()
	watchdog(t, c)
	var b [1]byte
	if _, err := c.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
	return time.Since(began)
}

// The deadline tests check what the connection underneath was given and
// that I/O never failed before the deadline asked for (nor hung: a
// watchdog closes the connection after a minute): how late after it the
// runtime's timer fires is the machine's business.

func TestLazyConnExtendedDeadlineHoldsUntilAskedTime(t *testing.T) {
	t.Parallel()
	c, cc, _ := lazyPipe(t)
	const extended = 300 * time.Millisecond
	began := time.Now()
	_ = c.SetReadDeadline(began.Add(50 * time.Millisecond))
	_ = c.SetReadDeadline(began.Add(extended)) // later: recorded, not applied
	if got := applied(&cc.lastRead); !got.Equal(began.Add(50 * time.Millisecond)) {
		t.Fatalf("the connection has the deadline %v after the later one was asked for, want the earlier one still", got.Sub(began))
	}
	// When the earlier deadline fires, the extended one is applied, unless
	// the read is woken so late that it has passed too: either way the read
	// fails, and not before 300ms.
	if took := readTimesOutAt(t, c, began); took < extended {
		t.Fatalf("the read timed out after %v, before the extended deadline (300ms)", took)
	}
}

func TestLazyConnEarlierDeadlineAppliesAtOnce(t *testing.T) {
	t.Parallel()
	c, cc, _ := lazyPipe(t)
	const shortened = 50 * time.Millisecond
	began := time.Now()
	_ = c.SetReadDeadline(began.Add(10 * time.Second))
	_ = c.SetReadDeadline(began.Add(shortened))
	if got := applied(&cc.lastRead); !got.Equal(began.Add(shortened)) {
		t.Fatalf("the connection has the deadline %v, want the shortened one (50ms) at once", got.Sub(began))
	}
	if took := readTimesOutAt(t, c, began); took < shortened {
		t.Fatalf("the read timed out after %v, before the shortened deadline (50ms)", took)
	}
}

func TestLazyConnClearedDeadline(t *testing.T) {
	t.Parallel()
	c, _, peer := lazyPipe(t)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_ = c.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = peer.Write([]byte("x"))
	}()
	var b [1]byte
	if n, err := c.Read(b[:]); n != 1 || err != nil {
		t.Fatalf("read after clearing the deadline: %d, %v; want the byte sent after 200ms", n, err)
	}
}

// TestLazyConnExpiredDeadlineIsRearmed: the applied deadline passes while no
// read is waiting; the next read, before the deadline asked for, still works.
func TestLazyConnExpiredDeadlineIsRearmed(t *testing.T) {
	t.Parallel()
	c, _, peer := lazyPipe(t)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	time.Sleep(50 * time.Millisecond) // the applied (20ms) deadline is past
	if _, err := peer.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if n, err := c.Read(b[:]); n != 1 || err != nil {
		t.Fatalf("read within the asked deadline: %d, %v", n, err)
	}
}

// TestLazyConnWriteDeadline: a peer that never reads fills the buffers; the
// write fails at the deadline asked for, not the earlier one applied, and
// reports what it wrote.
func TestLazyConnWriteDeadline(t *testing.T) {
	t.Parallel()
	c, cc, peer := lazyPipe(t)
	defer func() { // recorded, not applied, until the earlier one fires
		if w := cc.writes.Load(); w > 2 {
			t.Errorf("%d write deadlines reached the connection, want the earlier and at most the extended one", w)
		}
	}()
	watchdog(t, c)
	const extended = 400 * time.Millisecond
	began := time.Now()
	_ = c.SetWriteDeadline(began.Add(50 * time.Millisecond))
	_ = c.SetWriteDeadline(began.Add(extended))
	n, err := c.Write(make([]byte, 64<<20))
	took := time.Since(began)
	if !errors.Is(err, os.ErrDeadlineExceeded) || took < extended {
		t.Fatalf("write: %v after %v, want a deadline error, not before 400ms", err, took)
	}
	_ = c.Close()
	got, _ := io.Copy(io.Discard, peer)
	if got != int64(n) {
		t.Fatalf("Write reported %d bytes, the peer received %d", n, got)
	}
}

// TestLazyConnMovesTheTimerRarely replays fasthttp's deadlines for 1000
// keep-alive requests (idle wait, read, write): the connection's own
// deadlines move a handful of times, not 3000.
func TestLazyConnMovesTheTimerRarely(t *testing.T) {
	t.Parallel()
	c, cc, _ := lazyPipe(t)
	for range 1000 {
		now := time.Now()
		_ = c.SetReadDeadline(now.Add(90 * time.Second)) // idle
		_ = c.SetReadDeadline(now.Add(10 * time.Second)) // reading the request
		_ = c.SetWriteDeadline(now.Add(20 * time.Second))
	}
	if r, w := cc.reads.Load(), cc.writes.Load(); r > 2 || w > 1 {
		t.Fatalf("%d read and %d write deadline updates reached the connection for 1000 requests", r, w)
	}
}
