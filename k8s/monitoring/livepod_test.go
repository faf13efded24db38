package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// A live pod is the built sidecar (-sidecar) run as a pod runs it, with
// `serve --config` and every feature on: an https upstream that requires
// a client certificate (the simulator of upstream/sim, in this process),
// the fleet tier on a redis-server of the test's own, and snapshots.

const podToken = "monitoring-test-token-0123456789"

// upstreamEnv is a simulator serving TLS and the files a sidecar needs to
// reach it.
type upstreamEnv struct {
	sim                       *sim.Sim
	caFile, certFile, keyFile string
	redis                     *redistest.Server
}

// startUpstream starts a simulator over TLS (client certificates
// required) and a redis-server, both stopped when the test ends.
func startUpstream(t *testing.T) *upstreamEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.NewCA("monitoring test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(sim.LeafSpec{Names: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(sim.LeafSpec{Names: []string{"monitoring test pod"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamEnv{caFile: filepath.Join(dir, "ca.pem")}
	if err := ca.WriteFile(u.caFile); err != nil {
		t.Fatal(err)
	}
	if u.certFile, u.keyFile, err = client.WriteFiles(dir, "client"); err != nil {
		t.Fatal(err)
	}
	if u.sim, err = sim.Start(sim.Config{Token: podToken, TLS: server.ServerConfig(ca)}, "127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.sim.Close() })
	u.redis = redistest.Start(t)
	return u
}

// config is a pod's config file: every feature on, then extra's lines
// (top-level keys the base does not set).
func (u *upstreamEnv) config(snapshotPath, extra string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
upstream:
  url: %q
  token: %q
  tls: {caFile: %q, certFile: %q, keyFile: %q}
reload: {interval: 100ms}
snapshot: {path: %q, interval: 200ms}
fleet:
  redis: {addrs: [%q]}
  timeout: 250ms
log: {level: info}
%s`, u.sim.URL(), podToken, u.caFile, u.certFile, u.keyFile, snapshotPath, u.redis.Addr, extra)
}

// livePod is one running sidecar process.
type livePod struct {
	t      *testing.T
	name   string
	base   string // the API's URL
	config string // its config file
	stderr *syncBuffer
}

// syncBuffer is a bytes.Buffer for a process's output, read while written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPod runs `bin serve --config` with config, waits until /healthz
// answers, and stops it (SIGINT) when the test ends.
func startPod(t *testing.T, bin, name, config string) *livePod {
	t.Helper()
	p := &livePod{t: t, name: name, config: filepath.Join(t.TempDir(), "config.yaml"), stderr: &syncBuffer{}}
	p.writeConfig(config)
	cmd := exec.Command(bin, "serve", "--config", p.config)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	addr := startProcess(t, "pod "+name, cmd, out, p.stderr, p.stderr, func(line string) string {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "sidecar listening" {
			return l.Addr
		}
		return ""
	})
	p.base = "http://" + addr
	return p
}

// startProcess starts cmd, stops it when the test ends (SIGINT, then
// SIGKILL after 15s), and returns the first non-empty result of find over
// the lines of out (a pipe of cmd's), each of which it also copies to
// copyTo. It fails the test, showing the end of logs, if the process
// exits first or finds nothing within 30s.
func startProcess(t *testing.T, what string, cmd *exec.Cmd, out io.Reader, copyTo io.Writer, logs fmt.Stringer, find func(line string) string) string {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			fmt.Fprintln(copyTo, sc.Text())
			if f := find(sc.Text()); f != "" {
				select {
				case found <- f:
				default:
				}
			}
		}
		_, _ = io.Copy(copyTo, out)
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	select {
	case f := <-found:
		return f
	case <-done:
		t.Fatalf("%s exited before it was ready:\n%s", what, testout.Cut(t, "process.log", logs.String(), nil))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s was not ready within 30s:\n%s", what, testout.Cut(t, "process.log", logs.String(), nil))
	}
	return ""
}

// writeConfig replaces the pod's config file atomically (a reload).
func (p *livePod) writeConfig(text string) {
	p.t.Helper()
	tmp := p.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.config); err != nil {
		p.t.Fatal(err)
	}
}

// do sends a request to the pod's API and returns the status, the
// X-Cache header and the body.
func (p *livePod) do(method, path, body string) (int, string, string) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return res.StatusCode, strings.TrimSpace(res.Header.Get("X-Cache") + " " + res.Header.Get("X-Cache-Tier")), string(b)
}

// expect sends a request and fails the test unless it is answered status.
func (p *livePod) expect(method, path, body string, status int) string {
	p.t.Helper()
	code, _, b := p.do(method, path, body)
	if code != status {
		p.t.Fatalf("pod %s: %s %s: HTTP %d, want %d: %.300s", p.name, method, path, code, status, b)
	}
	return b
}

// scrape is the pod's /metrics.
func (p *livePod) scrape() string {
	p.t.Helper()
	return p.expect("GET", "/metrics", "", 200)
}

// fleetState is /health's fleet.state.
func (p *livePod) fleetState() string {
	p.t.Helper()
	var doc struct{ Fleet struct{ State string } }
	_, _, b := p.do("GET", "/health", "") // 503 while not ready
	if err := json.Unmarshal([]byte(b), &doc); err != nil {
		p.t.Fatalf("pod %s: /health: %v", p.name, err)
	}
	return doc.Fleet.State
}

// waitFor polls cond every 20ms until it holds, or fails the test after
// 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
	}
}
