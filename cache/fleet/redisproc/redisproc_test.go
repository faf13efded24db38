package redisproc_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc"
	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
)

// ping sends PING on a connection of its own and returns the answer line.
func ping(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestStartStop: a started server answers on Addr, SIGSTOP makes it stop
// answering, and Stop ends it even while stopped.
func TestStartStop(t *testing.T) {
	bin := redistest.Binary(t)
	port, err := redisproc.FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := redisproc.Start(context.Background(), redisproc.Options{Bin: bin, Port: port, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if line, err := ping(p.Addr()); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING %s: %q, %v", p.Addr(), line, err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if line, err := ping(p.Addr()); err == nil {
		t.Errorf("a stopped server answered %q", line)
	}
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process was reaped")
	}
	p.Stop() // a second Stop is harmless
	if _, err := ping(p.Addr()); err == nil {
		t.Error("the port still answers after Stop")
	}
}

// TestStartFailureSaysWhy: a server that cannot start is reported with
// its own output, not a timeout.
func TestStartFailureSaysWhy(t *testing.T) {
	bin := redistest.Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = redisproc.Start(context.Background(), redisproc.Options{Bin: bin, Port: port, Dir: t.TempDir()})
	if err == nil {
		t.Fatal("Start on a port in use succeeded")
	}
	// Waiting for the ready line instead would end in a timeout error.
	if !strings.Contains(err.Error(), "it exited") || !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
		t.Errorf("error %q: want the exit and redis-server's own reason", err)
	}
}
