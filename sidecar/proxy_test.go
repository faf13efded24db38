package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// serverBinary returns the path of a Debian server a test needs. Without
// it the test is skipped, unless CHITTYID_TEST_REQUIRE_SERVERS=1 (as .ci/run
// sets), which makes its absence a failure.
func serverBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CHITTYID_TEST_REQUIRE_SERVERS") == "1" {
		t.Fatalf("%s is not on PATH and CHITTYID_TEST_REQUIRE_SERVERS=1: apt-get install %s (.ci/run installs it)", name, pkg)
	}
	t.Skipf("%s is not on PATH: apt-get install %s to run this test (CHITTYID_TEST_REQUIRE_SERVERS=1 makes this a failure)", name, pkg)
	return ""
}

// tinyproxy is a real CONNECT proxy (Debian's tinyproxy) on a free
// loopback port, in the foreground, with Basic credentials alice:s3cret.
type tinyproxy struct {
	addr string
	log  string
}

const proxyUser, proxyPass = "alice", "s3cret"

func startTinyproxy(t *testing.T) *tinyproxy {
	t.Helper()
	bin := serverBinary(t, "tinyproxy", "tinyproxy")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	p := &tinyproxy{addr: addr, log: filepath.Join(dir, "tinyproxy.log")}
	conf := filepath.Join(dir, "tinyproxy.conf")
	// No ConnectPort line: CONNECT to any port (the simulator's is random).
	text := fmt.Sprintf("Port %s\nListen 127.0.0.1\nTimeout 30\nLogFile %q\nLogLevel Connect\nMaxClients 32\nAllow 127.0.0.1\nBasicAuth %s %s\n",
		port, p.log, proxyUser, proxyPass)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(bin, "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tinyproxy: %v", err)
	}
	exited := make(chan struct{}) // closed once the process is gone
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func(sig os.Signal) {
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(func() { stop(syscall.SIGTERM) })
	// Ready once it accepts connections.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return p
		}
		select {
		case <-exited:
			t.Fatalf("tinyproxy exited: %v\n%s", waitErr, out.String())
		case <-deadline:
			stop(os.Kill)
			t.Fatalf("tinyproxy did not listen on %s:\n%s", addr, out.String())
		case <-tick.C:
		}
	}
}

var connectLine = regexp.MustCompile(`Request \(file descriptor \d+\): CONNECT (\S+) HTTP/1\.[01]`)

// connects returns the targets of the CONNECT requests tinyproxy logged.
func (p *tinyproxy) connects(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, m := range connectLine.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

func (p *tinyproxy) url(withCredentials bool) string {
	if withCredentials {
		return "http://" + proxyUser + ":" + proxyPass + "@" + p.addr
	}
	return "http://" + p.addr
}

// loopbackName returns a host name other than localhost that resolves to
// 127.0.0.1 and nothing but loopback addresses (from /etc/hosts, such as
// the machine's own name), or skips the test. Go's proxy rules never proxy
// localhost or a loopback address, so a test of the environment's proxy
// variables needs such a name.
func loopbackName(t *testing.T) string {
	t.Helper()
	var names []string
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	if b, err := os.ReadFile("/etc/hosts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(strings.SplitN(line, "#", 2)[0])
			if len(f) > 1 && net.ParseIP(f[0]) != nil && net.ParseIP(f[0]).IsLoopback() {
				names = append(names, f[1:]...)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range names {
		if n == "" || strings.EqualFold(n, "localhost") || strings.HasSuffix(strings.ToLower(n), ".localhost") || net.ParseIP(n) != nil {
			continue
		}
		addrs, err := net.DefaultResolver.LookupHost(ctx, n)
		if err != nil || len(addrs) == 0 {
			continue
		}
		ok, has := true, false
		for _, a := range addrs {
			ip := net.ParseIP(a)
			ok = ok && ip != nil && ip.IsLoopback()
			has = has || a == "127.0.0.1"
		}
		if ok && has {
			return n
		}
	}
	t.Skip("no host name other than localhost resolves to 127.0.0.1 alone here (/etc/hosts); this test needs one")
	return ""
}

func envOf(m map[string]string) func(*sidecar.Options) {
	return func(o *sidecar.Options) {
		o.LookupEnv = func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
}

// TestProxyThroughTinyproxy: with upstream.proxy, mints reach a TLS
// upstream through a real CONNECT proxy (its log shows the tunnel), with
// the credentials of the proxy URL, which /health and the log never show.
func TestProxyThroughTinyproxy(t *testing.T) {
	t.Parallel()
	tp := startTinyproxy(t)
	serverCfg, caFile := tlsUpstream(t)
	h := start(t, sim.Config{TLS: serverCfg}, fmt.Sprintf("upstream:\n  proxy: %q\n  tls: {caFile: %q}\n", tp.url(true), caFile))
	h.waitState(fsm.Connected) // the mints then reuse the poll's connection
	for range 3 {
		h.mint("PEO").expect(t, "mint through the proxy", 200, "")
	}
	if got := tp.connects(t); len(got) != 1 || got[0] != h.sim.APIAddr() {
		t.Errorf("tinyproxy tunnels %v, want one CONNECT %s (kept alive)", got, h.sim.APIAddr())
	}
	if c := h.sim.Conns(); c.Handshakes != 1 {
		t.Errorf("simulator: %+v, want the TLS handshake through the tunnel", c)
	}
	up := h.upstreamDoc()
	if up["proxy"] != "http://[redacted]@"+tp.addr || up["proxySource"] != "upstream.proxy" {
		t.Errorf("/health upstream proxy %v from %v", up["proxy"], up["proxySource"])
	}
	for what, text := range map[string]string{"/health": h.do("GET", "/health", "").raw, "the log": h.logs.String(), "/metrics": h.metricsText()} {
		if strings.Contains(text, proxyPass) || strings.Contains(text, proxyUser) {
			t.Errorf("%s shows the proxy credentials", what)
		}
	}
}

// TestProxyFromEnvironment: HTTPS_PROXY sends mints through the proxy, and
// NO_PROXY naming the upstream's host bypasses it.
func TestProxyFromEnvironment(t *testing.T) {
	t.Parallel()
	tp := startTinyproxy(t)
	name := loopbackName(t)
	p := newTestPKI(t, "sidecar test CA")
	serverCfg := p.leaf(t, sim.LeafSpec{Names: []string{name}}).ServerConfig(nil)
	extra := fmt.Sprintf("upstream:\n  url: https://%s:{simPort}/v1\n  tls: {caFile: %q}\n", name, p.caFile)

	proxied := launch(t, sim.Config{TLS: serverCfg}, extra, nil, false, sidecar.Timeouts{},
		envOf(map[string]string{"HTTPS_PROXY": tp.url(true)}))
	proxied.waitState(fsm.Connected)
	proxied.mint("PEO").expect(t, "mint through HTTPS_PROXY", 200, "")
	target := net.JoinHostPort(name, portOf(proxied.sim.APIAddr()))
	if got := tp.connects(t); len(got) != 1 || got[0] != target {
		t.Errorf("tinyproxy tunnels %v, want one CONNECT %s", got, target)
	}
	if up := proxied.upstreamDoc(); up["proxySource"] != "HTTPS_PROXY" || up["proxy"] != "http://[redacted]@"+tp.addr {
		t.Errorf("/health upstream proxy %v from %v", up["proxy"], up["proxySource"])
	}

	bypass := launch(t, sim.Config{TLS: serverCfg}, extra, nil, false, sidecar.Timeouts{},
		envOf(map[string]string{"https_proxy": tp.url(true), "no_proxy": "example.com," + name}))
	bypass.waitState(fsm.Connected)
	bypass.mint("PEO").expect(t, "mint with NO_PROXY", 200, "")
	if got := tp.connects(t); len(got) != 1 {
		t.Errorf("tinyproxy tunnels %v, want no new one: NO_PROXY names the upstream", got)
	}
	if up := bypass.upstreamDoc(); up["proxy"] != "" {
		t.Errorf("/health upstream proxy %v, want direct", up["proxy"])
	}
	if c := bypass.sim.Conns(); c.Handshakes != 1 {
		t.Errorf("simulator of the bypassing sidecar: %+v", c)
	}
}

// TestAllowInsecureWarns: a plain http:// upstream named by a host that is
// not loopback, with a token, runs only with upstream.allowInsecure, and
// then warns at start, at every reload and in /health.
func TestAllowInsecureWarns(t *testing.T) {
	t.Parallel()
	name := loopbackName(t)
	h := startFile(t, sim.Config{}, "upstream:\n  url: http://"+name+":{simPort}/v1\n  allowInsecure: true\n")
	h.mint("PEO").expect(t, "mint over plain http", 200, "")
	warn, _ := h.upstreamDoc()["warning"].(string)
	if !strings.Contains(warn, "upstream.allowInsecure is true") || !strings.Contains(warn, "unencrypted") {
		t.Errorf("/health upstream.warning = %q", warn)
	}
	warnings := func() int {
		n := 0
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, `"msg":"upstream connection is not encrypted"`) && strings.Contains(l, `"level":"WARN"`) {
				n++
			}
		}
		return n
	}
	if n := warnings(); n != 1 {
		t.Errorf("%d warnings after start, want 1", n)
	}
	h.reloadTo(mustRead(t, h.file)+"limits: {maxBatch: 7}\n", 2)
	if n := warnings(); n != 2 {
		t.Errorf("%d warnings after a reload, want 2", n)
	}
}

// metricsText is /metrics as text.
func (h *harness) metricsText() string {
	h.t.Helper()
	resp, err := h.http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		h.t.Fatal(err)
	}
	return b.String()
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
