package sidecar_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// fastHealth polls every 50ms; 3 failed reconnect polls, 10-40ms apart, give up.
const fastHealth = "health: {interval: 50ms, timeout: 40ms, failuresToReconnect: 1, maxReconnectAttempts: 3, reconnect: {baseDelay: 10ms, maxDelay: 40ms}}\n"

// ready returns the /readyz status code.
func (h *harness) ready() int {
	h.t.Helper()
	return h.do("GET", "/readyz", "").status
}

// transitions returns the /health transitions as "FROM>TO (reason)".
func (h *harness) transitions() []string {
	h.t.Helper()
	r := h.do("GET", "/health", "")
	list, _ := r.body["transitions"].([]any)
	var out []string
	for _, x := range list {
		m := x.(map[string]any)
		out = append(out, fmt.Sprintf("%v>%v (%v)", m["from"], m["to"], m["reason"]))
	}
	return out
}

func TestLifecycleDrill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy                                string
		connected, reconnecting, failed, back int // /readyz status in each phase
	}{
		{"degraded", 200, 200, 503, 200},
		{"connected", 200, 503, 503, 200},
		{"always", 200, 200, 200, 200},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{}, "health: {interval: 50ms, timeout: 40ms, maxReconnectAttempts: 3, reconnect: {baseDelay: 200ms, maxDelay: 400ms}}\nreadiness: {policy: "+tc.policy+"}\n")
			h.waitState(fsm.Connected)
			if got := h.ready(); got != tc.connected {
				t.Errorf("CONNECTED: /readyz %d, want %d", got, tc.connected)
			}
			// Reconnect polls back off 200, 400, 400ms: RECONNECTING lasts a
			// second before FAILED, long enough to be checked.
			h.fault(sim.Fault{Mode: "refuse"})
			h.waitState(fsm.Reconnecting)
			if got := h.ready(); got != tc.reconnecting {
				t.Errorf("RECONNECTING: /readyz %d, want %d", got, tc.reconnecting)
			}
			h.waitState(fsm.Failed)
			if got := h.ready(); got != tc.failed {
				t.Errorf("FAILED: /readyz %d, want %d", got, tc.failed)
			}
			h.fault(sim.Fault{Mode: "ok"})
			h.waitState(fsm.Connected)
			if got := h.ready(); got != tc.back {
				t.Errorf("CONNECTED again: /readyz %d, want %d", got, tc.back)
			}
			got := strings.Join(h.transitions(), "; ")
			for _, want := range []string{
				"CONNECTING>CONNECTED (poll ok)",
				"CONNECTED>RECONNECTING (1 failed poll in a row)",
				"RECONNECTING>FAILED (3 reconnect attempts failed)",
				"FAILED>CONNECTED (poll ok)",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("/health transitions lack %q: %s", want, got)
				}
			}
		})
	}
}

func TestReadinessWhenStartingWithUpstreamDown(t *testing.T) {
	t.Parallel()
	h := startWith(t, sim.Config{}, fastHealth, func(s *sim.Sim) {
		if err := s.SetFault(sim.Fault{Mode: "refuse"}); err != nil {
			t.Fatal(err)
		}
	})
	h.waitState(fsm.Reconnecting)
	if got := h.ready(); got != 503 {
		t.Errorf("never connected, RECONNECTING: /readyz %d, want 503 under degraded", got)
	}
	if got := h.do("GET", "/healthz", "").status; got != 200 {
		t.Errorf("/healthz %d, want 200: liveness never depends on upstream", got)
	}
	h.fault(sim.Fault{Mode: "ok"})
	h.waitState(fsm.Connected)
	if got := h.ready(); got != 200 {
		t.Errorf("after the first good poll: /readyz %d, want 200", got)
	}
	if r := h.do("GET", "/health", ""); r.status != 200 || r.body["connection"].(map[string]any)["isHealthy"] != true {
		t.Errorf("/health: %d %s", r.status, r.raw)
	}
}

func TestBreakerTripMovesStateBeforeNextPoll(t *testing.T) {
	t.Parallel()
	// Polls an hour apart: only the breaker can move the state.
	h := start(t, sim.Config{}, "health: {interval: 1h, timeout: 1s}\nupstream:\n  retry: {maxAttempts: 1, baseDelay: 1ms, maxDelay: 1ms}\n  breaker: {failures: 2, openTimeout: 1m}\n")
	h.waitState(fsm.Connected)
	h.fault(sim.Fault{Mode: "status", Status: 500, Routes: []string{"mint"}})
	h.mint("PEO")
	h.mint("PEO")
	h.waitState(fsm.Reconnecting)
	if got := strings.Join(h.transitions(), "; "); !strings.Contains(got, "CONNECTED>RECONNECTING (breaker opened)") {
		t.Errorf("transitions: %s", got)
	}
	r := h.do("GET", "/health", "")
	cb := r.body["resilience"].(map[string]any)["circuitBreaker"].(map[string]any)
	if cb["state"] != "open" || cb["trips"] != float64(1) {
		t.Errorf("breaker in /health: %v", cb)
	}
}

func TestGoodPollHalfOpensBreaker(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, fastHealth+"upstream:\n  retry: {maxAttempts: 1, baseDelay: 1ms, maxDelay: 1ms}\n  breaker: {failures: 2, openTimeout: 1h}\n")
	h.waitState(fsm.Connected)
	h.fault(sim.Fault{Mode: "status", Status: 500, Routes: []string{"mint"}, Count: 2})
	h.mint("PEO")
	h.mint("PEO")
	// The breaker is open for an hour, but health polls are good: the poller
	// moves it to half-open and the next mint is the trial that closes it.
	h.waitState(fsm.Reconnecting)
	h.waitState(fsm.Connected)
	h.mint("PEO").expect(t, "trial after a good poll", 200, "")
	if st := health(h)["circuitBreaker"]; st != "closed" {
		t.Errorf("breaker %v after a good trial, want closed", st)
	}
}

func TestFailedStateFailsFastAndServesStale(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, fastHealth+"validate: {ttl: 1m, negativeTtl: 1m, staleIfError: 1h}\n")
	h.waitState(fsm.Connected)
	id := h.mustMint("PEO")
	h.fault(sim.Fault{Mode: "refuse"})
	h.waitState(fsm.Failed)
	before := h.sim.Stats()
	began := time.Now()
	r := h.mint("PEO")
	took := time.Since(began)
	r.expect(t, "mint in FAILED", 503, "UPSTREAM_UNAVAILABLE")
	if took > 100*time.Millisecond {
		t.Errorf("fail-fast mint took %v", took)
	}
	h.clock.advance(5 * time.Minute)
	v := h.validate(id)
	if v.status != 200 || v.header.Get("X-Cache") != "STALE" || v.body["stale"] != true {
		t.Errorf("validate of a known ID in FAILED: %d %s X-Cache=%s", v.status, v.raw, v.header.Get("X-Cache"))
	}
	h.validate("ID-B-CHI-5678-P-24-B-X").expect(t, "unknown ID in FAILED", 503, "UPSTREAM_UNAVAILABLE")
	after := h.sim.Stats()
	if after.Mint != before.Mint || after.Validate != before.Validate {
		t.Errorf("upstream saw requests in FAILED: %+v -> %+v", before, after)
	}
}

func TestShutdownDrainsInFlightMints(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "shutdown: {drainTimeout: 10s}\n")
	h.waitState(fsm.Connected)
	known := h.mustMint("PEO")
	h.fault(sim.Fault{Mode: "hang", Routes: []string{"mint"}})
	const n = 10
	var wg sync.WaitGroup
	answers := make([]reply, n)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = h.mint("EVNT")
		}()
	}
	if err := h.sim.WaitHung(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	// Shutdown has begun; a new connection still gets an answer.
	h.waitState(fsm.Disconnected)
	fresh := newClientHarness(h)
	fresh.mint("PEO").expect(t, "mint during drain", 503, "SHUTTING_DOWN")
	if got := fresh.ready(); got != 503 {
		t.Errorf("/readyz during drain: %d, want 503", got)
	}
	if v := fresh.validate(known); v.status != 200 || v.body["valid"] != true {
		t.Errorf("validate during drain: %d %s", v.status, v.raw)
	}
	fresh.http.CloseIdleConnections()
	h.fault(sim.Fault{Mode: "ok"}) // releases the hung mints: they complete upstream
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within the drain timeout")
	}
	wg.Wait()
	for i, a := range answers {
		if a.status != 200 {
			t.Errorf("in-flight mint %d: %d %s", i, a.status, a.raw)
		}
	}
}

// newClientHarness is h with its own HTTP client (fresh connections).
func newClientHarness(h *harness) *harness {
	c := *h
	c.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	return &c
}
