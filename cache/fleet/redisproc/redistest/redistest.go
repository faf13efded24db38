// Package redistest gives a test a redis-server of its own (see
// redisproc): on a free port of 127.0.0.1, without persistence, stopped
// when the test ends. Without redis-server on PATH the test is skipped, or
// fails when CHITTYID_TEST_REQUIRE_SERVERS=1 (as CI sets it).
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc"
)

// RequireEnv set to 1 makes a missing redis-server a failure instead of a
// skip.
const RequireEnv = "CHITTYID_TEST_REQUIRE_SERVERS"

// Binary returns redis-server's path, or skips (fails with RequireEnv=1)
// without it.
func Binary(t testing.TB) string {
	t.Helper()
	return lookPath(t, "redis-server", "redis-server")
}

// lookPath returns the path of the program name, or skips (fails with
// RequireEnv=1) without it; pkg is the Debian package that brings it.
func lookPath(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s is not on PATH and %s=1: install Debian's %s (.ci/run does)", name, RequireEnv, pkg)
		}
		t.Skipf("%s is not on PATH (Debian package %s); %s=1 makes this a failure", name, pkg, RequireEnv)
	}
	return path
}

// Options are what a test may change about its server.
type Options struct {
	Args  []string // after the port and persistence flags
	Conf  string   // a config file given first (a Sentinel's)
	Dir   string   // its working directory; a new temporary one if empty
	Ready string   // the log line that says it is ready; redisproc's default if empty
	// AlsoFree asks that port+AlsoFree be free too (10000 for a Cluster
	// node's bus).
	AlsoFree int
}

// Server is a test's redis-server. Addr and Port stay the same across
// Restart.
type Server struct {
	Addr string
	Port int

	t    testing.TB
	opts redisproc.Options

	// mu guards proc, replaced by each start.
	mu   sync.Mutex
	proc *redisproc.Process
}

// Start starts redis-server with extra arguments (e.g. "--requirepass",
// "pw") and waits until it accepts connections.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartWith(t, Options{Args: args})
}

// StartWith starts a server as o says, retrying on another free port if
// another process takes the port first.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	var err error
	for range 5 {
		s := Reserve(t, o)
		if err = s.Start(); err == nil {
			return s
		}
	}
	t.Fatalf("starting redis-server: %v", err)
	return nil
}

// Reserve picks the server's port but does not start it (a test of Redis
// down at start): Start does, later.
func Reserve(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Binary(t)
	port, err := redisproc.FreePort(o.AlsoFree)
	if err != nil {
		t.Fatal(err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, t: t,
		opts: redisproc.Options{Bin: bin, Port: port, Dir: o.Dir, Conf: o.Conf, Args: o.Args, Ready: o.Ready}}
	t.Cleanup(s.Stop)
	return s
}

// Start runs the process and waits for its ready line (10s at most).
func (s *Server) Start() error {
	p, err := redisproc.Start(context.Background(), s.opts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// Stop ends the process (resuming it first if it was stopped) and waits.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// Running reports whether the server's process runs: started, and not
// stopped or exited (after SIGKILL) since.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.Done():
		return false
	default:
		return true
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits until it
// is reaped; Start brings it back on the same port, in the same directory.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		s.t.Fatal("killing a redis-server that is not running")
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	<-p.Done()
}

// Restart stops the server and starts an empty one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.Start(); err != nil {
		s.t.Fatal(err)
	}
}

// Signal sends sig (SIGSTOP, SIGCONT) to the process.
func (s *Server) Signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatal("signalling a redis-server that is not running")
	}
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}
