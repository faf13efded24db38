package sidecar

import (
	"net"
	"testing"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

// TestHostCheckAllocatesNothing: a Host listed in security.allowedHosts
// is checked without allocating: only what may be an IP address goes
// through upstream.IsLoopbackHost, whose string would be an allocation on
// every request. Not parallel: AllocsPerRun counts the whole process.
func TestHostCheckAllocatesNothing(t *testing.T) {
	sec := &config.Security{AllowedHosts: []string{"sidecar.internal", "chittyid-sidecar.payments.svc.cluster.local"}}
	for _, host := range []string{"sidecar.internal", "ChittyID-Sidecar.payments.svc.cluster.local:8787"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetHost(host)
		if n := testing.AllocsPerRun(100, func() {
			if e := checkHost(&ctx, sec); e != nil {
				t.Fatal(e)
			}
		}); n != 0 {
			t.Errorf("checkHost(%q): %v allocations, want 0", host, n)
		}
	}
}

// TestLoopbackName: the spellings the fast path does not know still go to
// upstream.IsLoopbackHost; names that cannot be an IP address never do.
func TestLoopbackName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"127.0.0.1", true},
		{"LocalHost", true},
		{"::1", true},
		{"0:0:0:0:0:0:0:1", true},
		{"::ffff:127.0.0.1", true},
		{"[127.0.0.1", true}, // a stray bracket, as IsLoopbackHost reads it
		{"127.0.0.1.evil.example", false},
		{"sidecar.internal", false},
		{"fd00::7", false},
		{"10.0.0.1", false},
		{"", false},
	} {
		if got := loopbackName([]byte(tc.name)); got != tc.want {
			t.Errorf("loopbackName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// addrConn is a connection that is only addresses, for a RequestCtx.
type addrConn struct {
	net.Conn
	local net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(10, 9, 9, 9), Port: 40000} }

// TestOpsHostAcceptsTheAddressReached: on the operations listener, a Host
// that is the IP address the request arrived at (the pod's IP, which the
// kubelet and a scraper send) is accepted, in any spelling of that
// address; a name, or another address, is not, unless metrics.allowedHosts
// lists it.
func TestOpsHostAcceptsTheAddressReached(t *testing.T) {
	t.Parallel()
	m := &config.Metrics{AllowedHosts: []string{"metrics.apps.svc"}}
	for _, tc := range []struct {
		local net.IP
		host  string
		ok    bool
	}{
		{net.IPv4(10, 1, 2, 3), "10.1.2.3:9090", true},
		{net.IPv4(10, 1, 2, 3), "10.1.2.3", true},
		{net.IPv4(10, 1, 2, 3), "[::ffff:10.1.2.3]:9090", true},
		{net.ParseIP("fd00::7"), "[fd00::7]:9090", true},
		{net.IPv4(10, 1, 2, 3), "metrics.apps.svc:9090", true},
		{net.IPv4(10, 1, 2, 3), "localhost:9090", true},
		{net.IPv4(10, 1, 2, 3), "10.1.2.4:9090", false},
		{net.IPv4(10, 1, 2, 3), "rebound.evil.example:9090", false},
		{net.IPv4(10, 1, 2, 3), "", false},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Init2(addrConn{local: &net.TCPAddr{IP: tc.local, Port: 9090}}, nil, false)
		if tc.host != "" {
			ctx.Request.Header.SetHost(tc.host)
		}
		if e := checkOpsHost(&ctx, m); (e == nil) != tc.ok {
			t.Errorf("listener at %s, Host %q: %v, want accepted %v", tc.local, tc.host, e, tc.ok)
		}
	}
}
