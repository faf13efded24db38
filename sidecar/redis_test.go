package sidecar_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc"
)

// requireServersEnv set to 1 makes a missing redis-server a failure
// instead of a skip (.ci/run sets it).
const requireServersEnv = "CHITTYID_TEST_REQUIRE_SERVERS"

// redisServer is a redis-server process of the test's own on a free port
// of 127.0.0.1, without persistence, stopped when the test ends. The
// sidecar's tests start, stop, SIGSTOP and restart one, and ask it a
// question.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	addr string
	dir  string

	// mu guards proc, replaced by each start.
	mu   sync.Mutex
	proc *redisproc.Process
}

// startRedis starts redis-server, or skips the test (fails with
// CHITTYID_TEST_REQUIRE_SERVERS=1) without one on PATH.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(requireServersEnv) == "1" {
			t.Fatalf("redis-server is not on PATH and %s=1: install Debian's redis-server (.ci/run does)", requireServersEnv)
		}
		t.Skipf("redis-server is not on PATH (Debian package redis-server); %s=1 makes this a failure", requireServersEnv)
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir()}
	for range 5 { // another process may take the free port first
		if r.port, err = redisproc.FreePort(0); err != nil {
			t.Fatal(err)
		}
		r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		if err = r.start(); err == nil {
			t.Cleanup(r.stop)
			return r
		}
		t.Log(err)
	}
	t.Fatal("could not start redis-server")
	return nil
}

// start runs redis-server on r.port and waits (10s at most) for its ready
// line.
func (r *redisServer) start() error {
	p, err := redisproc.Start(context.Background(), redisproc.Options{Bin: r.bin, Port: r.port, Dir: r.dir})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	return nil
}

// stop ends the process (resuming it first, if stopped) and waits for it.
func (r *redisServer) stop() {
	r.mu.Lock()
	p := r.proc
	r.proc = nil
	r.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// restart stops the server and starts an empty one on the same port.
func (r *redisServer) restart() {
	r.t.Helper()
	r.stop()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// signal sends sig (SIGSTOP, SIGCONT) to the process.
func (r *redisServer) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.proc.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// dbsize asks the server how many keys it holds, speaking RESP on a
// connection of its own.
func (r *redisServer) dbsize() int {
	r.t.Helper()
	c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "*1\r\n$6\r\nDBSIZE\r\n"); err != nil {
		r.t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ":") {
		r.t.Fatalf("DBSIZE answered %q, %v", line, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}
