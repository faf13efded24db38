package sidecar_test

import (
	"bufio"
	"fmt"
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
)

// requireServersEnv set to 1 makes a missing redis-server a failure
// instead of a skip (.ci/run sets it).
const requireServersEnv = "CHITTYID_TEST_REQUIRE_SERVERS"

// redisServer is a redis-server process of the test's own on a free port
// of 127.0.0.1, without persistence, stopped when the test ends. The fleet
// tier's tests (cache/fleet) have a fuller one; the sidecar's need to
// start, stop, SIGSTOP and restart one, and to ask it a question.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	addr string
	dir  string

	// mu guards cmd and exited, replaced by each start.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process is reaped
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
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.port = l.Addr().(*net.TCPAddr).Port
		r.addr = l.Addr().String()
		_ = l.Close()
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
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	exited, ready := make(chan struct{}), make(chan struct{})
	var log strings.Builder // written by the reader until exited closes
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		r.mu.Lock()
		r.cmd, r.exited = cmd, exited
		r.mu.Unlock()
		return nil
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return fmt.Errorf("redis-server on port %d did not become ready:\n%s", r.port, log.String())
}

// stop ends the process (resuming it first, if stopped) and waits for it.
func (r *redisServer) stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
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
	if err := r.cmd.Process.Signal(sig); err != nil {
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
