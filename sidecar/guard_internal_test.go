package sidecar

import (
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
