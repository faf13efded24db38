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
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// readUntilClosed reads c until the sidecar closes it and returns what it
// sent and how long after began the close came; a read that waits past
// limit fails the test.
func readUntilClosed(t *testing.T, c net.Conn, began time.Time, limit time.Duration) (string, time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(began.Add(limit))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("waiting for the sidecar to close the connection: %v (read %q)", err, b)
	}
	return string(b), time.Since(began)
}

// TestRequestTimeout: a request whose headers stop coming is answered 408
// once the request timeout has passed since its first byte, and the
// connection closed; so is a new connection that never sends a byte.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	h := startTimeouts(t, "", sidecar.Timeouts{Request: 400 * time.Millisecond})
	half := dial(t, h)
	silent := dial(t, h)
	began := time.Now()
	fmt.Fprint(half, "GET /v1/validate/CT-A-AAA-0000-P-26-A-0 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
	got, took := readUntilClosed(t, half, began, 5*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, "REQUEST_TIMEOUT") {
		t.Errorf("half-sent request: answer %q", got)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("half-sent request answered after %v, want about 400ms", took)
	}
	if got, took := readUntilClosed(t, silent, began, 5*time.Second); !strings.HasPrefix(got, "HTTP/1.1 408 ") || took < 400*time.Millisecond {
		t.Errorf("silent connection: closed after %v with %q, want a 408 after 400ms", took, got)
	}
}

// TestIdleTimeout: a keep-alive connection is closed once idle for the idle
// timeout, and not before; one that keeps sending requests stays open.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	h := startTimeouts(t, "", sidecar.Timeouts{Idle: 500 * time.Millisecond})
	busy, idle := dial(t, h), dial(t, h)
	ask := func(c net.Conn, r *bufio.Reader) {
		t.Helper()
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil || !strings.Contains(line, " 200 ") {
			t.Fatalf("keep-alive request: %q, %v", line, err)
		}
		for line != "\r\n" && err == nil { // headers; the body is "ok"-sized, read below
			line, err = r.ReadString('\n')
		}
		_, _ = r.Discard(r.Buffered())
	}
	br := bufio.NewReader(busy)
	ask(busy, br)
	ask(idle, bufio.NewReader(idle))
	began := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		_ = idle.SetReadDeadline(began.Add(5 * time.Second))
		_, err := io.ReadAll(idle)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			closed <- -1
			return
		}
		closed <- time.Since(began)
	}()
	for time.Since(began) < 1200*time.Millisecond { // more than twice the idle timeout
		time.Sleep(100 * time.Millisecond)
		ask(busy, br) // fails the test if the busy connection was closed
	}
	if took := <-closed; took < 500*time.Millisecond || took > 1100*time.Millisecond {
		t.Errorf("idle connection closed after %v, want about 500ms (-1: not within 5s)", took)
	}
}

// TestWriteTimeout: a client that sends requests but never reads the
// answers has its connection closed once an answer could not be written
// within upstream.mintTimeout plus the write slack.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	h := startTimeouts(t, "upstream:\n  mintTimeout: 200ms\n  timeout: 200ms\n", sidecar.Timeouts{WriteSlack: 300 * time.Millisecond})
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
	sent := 0
	go func() { // /metrics answers are large: the sidecar's writes block soon
		req := []byte("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		for i := 0; i < 5000; i++ {
			if _, err := c.Write(req); err != nil {
				return
			}
			sent++
		}
	}()
	time.Sleep(2 * time.Second) // past the 500ms write timeout
	got, _ := readUntilClosed(t, c, began, 10*time.Second)
	if n := strings.Count(got, "HTTP/1.1 200 "); n >= 5000 {
		t.Errorf("all %d answers were written to a client that did not read; want the connection cut", n)
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
