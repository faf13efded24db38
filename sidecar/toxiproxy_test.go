package sidecar_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// toxiServer is a Toxiproxy server of the test's own: toxiproxy-server
// (go.mod's tool, built by the test into its temporary directory, from the
// build cache after the first time), listening for its API on a free
// loopback port, its proxies on free loopback ports too, and driven
// through Toxiproxy's client package. The test's cleanup kills it; its
// output goes to a file in the test's directory.
type toxiServer struct {
	*toxiproxy.Client
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed once the process is reaped
}

// toxiproxyPkg is the server's package, a tool in go.mod.
const toxiproxyPkg = "github.com/Shopify/toxiproxy/v2/cmd/server"

// startToxiproxy builds and starts toxiproxy-server and waits until its API
// answers.
func startToxiproxy(t *testing.T) *toxiServer {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "toxiproxy-server")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build toxiproxy-server: %v", err)
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, toxiproxyPkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", toxiproxyPkg, err, out)
	}
	var last error
	for range 5 { // another process may take the free port first
		s, err := runToxiproxy(bin, filepath.Join(dir, "toxiproxy.log"))
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		last = err
	}
	t.Fatalf("starting toxiproxy-server: %v", last)
	return nil
}

// runToxiproxy runs bin on a free port, its output appended to logFile,
// and waits (10s at most) for its API.
func runToxiproxy(bin, logFile string) (*toxiServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &toxiServer{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	s.Client = toxiproxy.NewClient(s.addr)
	// The server says nothing when it is ready: ask its API.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := s.Proxies(); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("toxiproxy-server exited (see %s)", logFile)
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("toxiproxy-server's API on %s did not answer within 10s (see %s)", s.addr, logFile)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop kills the server, which closes every connection through it, and
// waits until it is reaped; the client's idle connections to its API go
// too.
func (s *toxiServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL) // fails only once it has exited
	<-s.done
	http.DefaultClient.CloseIdleConnections() // the client package uses the default client
}

// proxy creates a proxy to upstream on a free loopback port.
func (s *toxiServer) proxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	p, err := s.CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		t.Fatalf("creating the toxiproxy proxy %s to %s: %v", name, upstream, err)
	}
	return p
}
