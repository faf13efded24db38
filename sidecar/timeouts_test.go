package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// readUntilClosed reads c until the sidecar closes it and returns what it
// sent and how long after began the close came. If the client's own
// deadline (began + limit) ends the read first, the test fails: the
// connection was not closed by the sidecar.
func readUntilClosed(t *testing.T, c net.Conn, began time.Time, limit time.Duration) (string, time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(began.Add(limit))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("waiting %v for the sidecar to close the connection: %v, after %d bytes; their status lines:\n%s", limit, err, len(b),
			testout.Cut(t, "read.txt", string(b), func(l string) bool { return strings.HasPrefix(l, "HTTP/") }))
	}
	return string(b), time.Since(began)
}

// TestRequestTimeout: a request whose headers stop coming is answered 408
// once the request timeout has passed since its first byte, and the
// connection closed by the sidecar; so is a new connection that never
// sends a byte. The client waits up to 8s, less than the default timeout
// (10s): a close by the default would fail here, a close by the 400ms one
// passes on a machine 10 times slower.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	const requestTimeout = 400 * time.Millisecond
	h := startTimeouts(t, "", sidecar.Timeouts{Request: requestTimeout})
	half := dial(t, h)
	silent := dial(t, h)
	began := time.Now()
	fmt.Fprint(half, "GET /v1/validate/CT-A-AAA-0000-P-26-A-0 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
	got, took := readUntilClosed(t, half, began, 8*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, "REQUEST_TIMEOUT") {
		t.Errorf("half-sent request: answer %.200q", got)
	}
	if took < requestTimeout {
		t.Errorf("half-sent request answered after %v, before the 400ms request timeout", took)
	}
	if got, took := readUntilClosed(t, silent, began, 8*time.Second); !strings.HasPrefix(got, "HTTP/1.1 408 ") || took < requestTimeout {
		t.Errorf("silent connection: closed after %v with %.200q, want a 408 after 400ms", took, got)
	}
}

// TestIdleTimeout: a keep-alive connection is closed by the sidecar once
// idle for the idle timeout, and not before; one that keeps sending
// requests (every 50ms, a twentieth of the timeout) stays open for more
// than twice the timeout. The client waits up to 20s for the close, less
// than the default timeout (90s).
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idleTimeout = time.Second
	h := startTimeouts(t, "", sidecar.Timeouts{Idle: idleTimeout})
	busy, idle := dial(t, h), dial(t, h)
	ask := func(c net.Conn, r *bufio.Reader) error {
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil || !strings.Contains(line, " 200 ") {
			return fmt.Errorf("keep-alive request: %q, %v", line, err)
		}
		for line != "\r\n" && err == nil { // headers; the body is "ok"-sized, read below
			line, err = r.ReadString('\n')
		}
		_, _ = r.Discard(r.Buffered())
		return err
	}
	br := bufio.NewReader(busy)
	if err := ask(busy, br); err != nil {
		t.Fatal(err)
	}
	if err := ask(idle, bufio.NewReader(idle)); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		_ = idle.SetReadDeadline(began.Add(20 * time.Second))
		_, err := io.ReadAll(idle)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			closed <- -1
			return
		}
		closed <- time.Since(began)
	}()
	last := time.Now() // the busy connection's last answer
	for time.Since(began) < 2*idleTimeout+500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
		gap := time.Since(last)
		if err := ask(busy, br); err != nil {
			if gap < idleTimeout {
				t.Fatalf("the busy connection, idle %v (under the %v timeout), was closed: %v", gap, idleTimeout, err)
			}
			t.Logf("the busy connection was idle %v, the machine being slow, and closed: its check is void", gap)
			break
		}
		last = time.Now()
	}
	switch took := <-closed; {
	case took < 0:
		t.Errorf("idle connection not closed by the sidecar within 20s (idle timeout %v)", idleTimeout)
	case took < idleTimeout:
		t.Errorf("idle connection closed after %v, before the %v idle timeout", took, idleTimeout)
	}
}

// TestWriteTimeout: a client that sends requests but never reads the
// answers has its connection closed by the sidecar once an answer could
// not be written within upstream.mintTimeout plus the write slack (500ms
// here). The client keeps sending until a write fails because the
// sidecar closed the connection, whenever that is on a slow machine: no
// sleep decides when the answers have backed up. The request and idle
// timeouts are a minute, so only the write timeout can close it within
// the 30s the test waits.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	h := startTimeouts(t, "upstream:\n  mintTimeout: 200ms\n  timeout: 200ms\n",
		sidecar.Timeouts{WriteSlack: 300 * time.Millisecond, Request: time.Minute, Idle: time.Minute})
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		_ = rc.Control(func(fd uintptr) { // a small window, so the answers back up soon
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return err
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	failed := make(chan error, 1)
	go func() { // /metrics answers are large: the sidecar's writes block once the buffers are full
		req := []byte("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		for {
			if _, err := c.Write(req); err != nil {
				failed <- err
				return
			}
		}
	}()
	select {
	case err := <-failed:
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("a write failed with %v, not because the sidecar closed the connection", err)
		}
		t.Logf("the sidecar closed the connection %v after the first request", time.Since(began))
	case <-time.After(30 * time.Second):
		_ = c.Close() // ends the writer
		t.Fatal("the sidecar did not close a connection whose answers were not read within 30s (write timeout 500ms)")
	}
}

// TestRunLongAfterNew: the connections' clock is set when Run starts, so a
// sidecar started well after it was built (a long snapshot restore, say)
// does not give its first connection a deadline already past.
func TestRunLongAfterNew(t *testing.T) {
	t.Parallel()
	s, err := sim.Start(sim.Config{Token: testToken}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, err := config.Parse([]byte(configFor(s, sim.Config{}, "")), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.New(cfg, sidecar.Options{Timeouts: sidecar.Timeouts{Request: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // more than the request timeout and a clock tick
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("first request after a late Run: %q, %v", line, err)
	}
}
