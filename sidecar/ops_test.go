package sidecar_test

import (
	"net/http"
	"testing"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestOpsListenerChecksHost: with metrics.listen on loopback (a
// developer's machine), a page that rebinds its own name to 127.0.0.1
// cannot read /metrics or /health: a Host that is not loopback, the
// listener's address or listed in metrics.allowedHosts gets 403. The
// probes answer anyone, as on the API. Before, the operations listener
// checked no Host.
func TestOpsListenerChecksHost(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "metrics: {listen: 127.0.0.1:0, allowedHosts: [metrics.apps.svc]}\n")
	h.waitState(fsm.Connected) // so that /health is 200
	ops := "http://" + h.sc.OpsAddr()
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/metrics", "rebound.evil.example", 403},
		{"/health", "rebound.evil.example:9090", 403},
		{"/metrics", "10.1.2.3:9090", 403}, // not the address it was reached at
		{"/healthz", "rebound.evil.example", 200},
		{"/readyz", "rebound.evil.example", 0}, // 200 or 503: not refused
		{"/metrics", "metrics.apps.svc:9090", 200},
		{"/metrics", "localhost", 200},
		{"/health", h.sc.OpsAddr(), 200},
	} {
		req, _ := http.NewRequest("GET", ops+tc.path, nil)
		req.Host = tc.host
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.StatusCode; got != tc.want && (tc.want != 0 || got == 403) {
			t.Errorf("%s with Host %q: HTTP %d, want %d", tc.path, tc.host, resp.StatusCode, tc.want)
		}
	}
}
