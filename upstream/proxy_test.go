package upstream_test

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// connectProxy is a small CONNECT proxy that wants Basic credentials
// user:pass and splices the tunnels it opens. It records the targets.
type connectProxy struct {
	srv *httptest.Server
	wg  sync.WaitGroup // splicing goroutines

	// mu guards the fields below.
	mu      sync.Mutex
	targets []string
	conns   []net.Conn
}

func startProxy(t *testing.T, user, pass string) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Proxy-Authorization") != want {
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			http.Error(w, "who are you", http.StatusProxyAuthRequired)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			_ = up.Close()
			return
		}
		if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			_ = up.Close()
			_ = down.Close()
			return
		}
		p.mu.Lock()
		p.targets = append(p.targets, r.Host)
		p.conns = append(p.conns, up, down)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.splice(up, down)
		go p.splice(down, up)
	}))
	t.Cleanup(func() {
		p.srv.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) splice(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
}

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// TestClientThroughProxy: upstream.proxy's credentials open a CONNECT
// tunnel through which TLS runs end to end; wrong ones are refused in words
// that never show them.
func TestClientThroughProxy(t *testing.T) {
	t.Parallel()
	proxy := startProxy(t, "alice", "s3cret")
	p := newPKI(t, sim.LeafSpec{})
	s, cfg := startSim(t, sim.Config{TLS: p.server.ServerConfig(nil)})
	proxyURL := func(cred string) upstream.ProxyURL {
		return upstream.ProxyURL("http://" + cred + "@" + strings.TrimPrefix(proxy.srv.URL, "http://"))
	}
	cfg.Timeout, cfg.TLS.CAFile = 2*time.Second, p.caFile
	cfg.Retry = upstream.RetryConfig{MaxAttempts: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}

	cfg.Proxy = proxyURL("alice:s3cret")
	c := newClient(t, cfg, upstream.Options{LookupEnv: noEnv})
	if got, src := c.Proxy(); got != "http://[redacted]@"+strings.TrimPrefix(proxy.srv.URL, "http://") || src != "upstream.proxy" {
		t.Errorf("Proxy() = %q, %q", got, src)
	}
	for range 3 {
		if _, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{}); err != nil {
			t.Fatalf("Mint through the proxy: %v", err)
		}
	}
	if got := proxy.seen(); len(got) != 1 || got[0] != s.APIAddr() {
		t.Errorf("proxy tunnels = %v, want one to %s (kept alive)", got, s.APIAddr())
	}

	cfg.Proxy = proxyURL("alice:wrong")
	_, err := newClient(t, cfg, upstream.Options{LookupEnv: noEnv}).Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
	var pe *upstream.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired || !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("Mint with wrong credentials = %v, want an unavailable ProxyError 407", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "check the credentials") || strings.Contains(msg, "wrong") || strings.Contains(msg, "alice") {
		t.Errorf("error %q: want a hint and no credentials", msg)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	cfg.Proxy = upstream.ProxyURL("http://alice:s3cret@" + dead)
	err = newClient(t, cfg, upstream.Options{LookupEnv: noEnv}).Health(ctxFor(t, 2*time.Second))
	if !errors.As(err, &pe) || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "through proxy http://[redacted]@"+dead) {
		t.Errorf("Health through a dead proxy = %v", err)
	}
	if n := s.Stats().Health; n != 0 {
		t.Errorf("upstream saw %d health polls through a dead proxy", n)
	}
}

func noEnv(string) (string, bool) { return "", false }
