package sidecar_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
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
	h.waitDown()
	if got := h.ready(); got != 503 {
		t.Errorf("never connected, RECONNECTING or FAILED: /readyz %d, want 503 under degraded", got)
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

// TestBreakerOpenPeriodHoldsWhileHealthIsGood: upstream's health route is
// good while its mints fail (as the worker's /health is while its mint
// backend fails). Polls come every 10ms throughout. No mint reaches
// upstream before openTimeout, whatever the polls say; then exactly one
// trial; it fails and the breaker opens for twice as long; Retry-After
// says, to the second, when the trial is let through; the state stays
// RECONNECTING through each open period (no transition while it lasts, at
// most a CONNECTED between the period's end and the failed trial), and
// becomes CONNECTED when a good trial closes the breaker.
func TestBreakerOpenPeriodHoldsWhileHealthIsGood(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dialect  upstream.Dialect
		failCode string // a failing mint's error
	}{
		{upstream.DialectClientV1, "UPSTREAM_UNAVAILABLE"},
		{upstream.DialectWorker, "UPSTREAM_FALLBACK"}, // the mint backend's 503: a 200 fallback, /health still 200
	} {
		t.Run(string(tc.dialect), func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{Dialect: tc.dialect, Format: chittyid.FormatNumeric}, fastHealth+
				"upstream:\n  retry: {maxAttempts: 1, baseDelay: 1ms, maxDelay: 1ms}\n  breaker: {failures: 2, openTimeout: 10s, maxOpenTimeout: 1m}\n")
			h.waitState(fsm.Connected)
			h.clock.freeze() // the breaker's periods move only by advance: Retry-After is exact
			h.fault(sim.Fault{Mode: "status", Status: 503, Routes: []string{"mint"}})
			h.mint("PEO").expect(t, "first failing mint", 503, tc.failCode)
			h.mint("PEO").expect(t, "second failing mint", 503, tc.failCode)
			h.waitState(fsm.Reconnecting)
			tripped := h.transitions()
			if got := tripped[len(tripped)-1]; !byOpenBreaker(got) {
				t.Fatalf("last transition %q, want the breaker's", got)
			}
			mints := h.sim.Stats().Mint

			// The open period: 10s on the sidecar's clock, polls every 10ms
			// of real time throughout.
			h.holdsOpen("the open period", 10, tripped)

			// The end of the period: one trial, which fails.
			h.clock.advance(time.Second)
			h.mint("PEO").expect(t, "the trial", 503, tc.failCode)
			if n := h.sim.Stats().Mint; n != mints+1 {
				t.Fatalf("%d mints reached upstream at the end of the period, want 1 (the trial)", n-mints)
			}
			h.waitState(fsm.Reconnecting)
			reopened := h.transitions()
			checkPeriodEnd(t, tripped, reopened)

			// Twice as long: 20s.
			h.holdsOpen("the doubled period", 20, reopened)

			// A good trial closes the breaker: CONNECTED.
			h.fault(sim.Fault{Mode: "ok"})
			h.clock.advance(time.Second)
			h.mint("PEO").expect(t, "the good trial", 200, "")
			h.waitState(fsm.Connected)
			if st := health(h)["circuitBreaker"]; st != "closed" {
				t.Errorf("breaker %v after a good trial, want closed", st)
			}
			if n := h.sim.Stats().Mint; n != mints+2 {
				t.Errorf("%d mints reached upstream after the trip, want 2 (the trials)", n-mints)
			}
		})
	}
}

// holdsOpen checks an open period of secs seconds that has just begun:
// mints are refused with the time left, at its start and 1s before its
// end (the clock advanced in between), while polls go on; no mint
// reaches upstream, and the state stays RECONNECTING with no transition
// since since.
func (h *harness) holdsOpen(period string, secs int, since []string) {
	h.t.Helper()
	mints := h.sim.Stats().Mint
	h.expectOpen(period+", at its start", secs)
	h.waitPolls(5)
	h.clock.advance(time.Duration(secs-1) * time.Second)
	h.expectOpen(period+", 1s before its end", 1)
	h.waitPolls(5)
	if got := h.transitions(); !slices.Equal(got, since) || h.state() != fsm.Reconnecting {
		h.t.Fatalf("during %s: %s, transitions %q; want RECONNECTING and none since %q", period, h.state(), got, since)
	}
	if n := h.sim.Stats().Mint; n != mints {
		h.t.Fatalf("%d mints reached upstream during %s", n-mints, period)
	}
}

// expectOpen checks that a mint now is refused with CIRCUIT_OPEN, saying
// to retry in secs seconds (header, field and message agree), without
// reaching upstream.
func (h *harness) expectOpen(when string, secs int) {
	h.t.Helper()
	before := h.sim.Stats().Mint
	r := h.mint("PEO")
	r.expect(h.t, when, 503, "CIRCUIT_OPEN")
	want := strconv.Itoa(secs)
	msg, _ := r.body["message"].(string)
	if ra := r.header.Get("Retry-After"); ra != want || r.body["retryAfter"] != float64(secs) || !strings.HasSuffix(msg, "Will retry in "+want+"s") {
		h.t.Errorf("%s: Retry-After %q, retryAfter %v, message %q; want %d s", when, ra, r.body["retryAfter"], msg, secs)
	}
	if n := h.sim.Stats().Mint; n != before {
		h.t.Errorf("%s: a refused mint reached upstream", when)
	}
}

// checkPeriodEnd checks the transitions from the end of an open period to
// the failed trial: none, or a good poll's CONNECTED followed by the
// breaker opening again (a poll may see the period over before the trial).
// byOpenBreaker says a transition is CONNECTED to RECONNECTING because the
// breaker opened: its trip's own signal ("breaker opened"), or a poll
// that saw it open first ("breaker open"), which a busy machine may run
// before the signal is delivered.
func byOpenBreaker(transition string) bool {
	return transition == "CONNECTED>RECONNECTING (breaker opened)" || transition == "CONNECTED>RECONNECTING (breaker open)"
}

func checkPeriodEnd(t *testing.T, before, after []string) {
	t.Helper()
	added := after[len(before):]
	if len(after) >= 20 { // the list keeps the last 20: compare what is left
		added = after[len(after)-2:]
	}
	switch {
	case len(added) == 0:
		// No poll saw the period end before the trial failed.
	case len(added) == 2 && added[0] == "RECONNECTING>CONNECTED (poll ok)" && byOpenBreaker(added[1]):
	default:
		t.Fatalf("transitions at the end of the period: %q, want none or CONNECTED then RECONNECTING", added)
	}
}

// waitPolls waits until n more health polls have reached upstream; the
// poller has one in flight at a time, so n-1 of them have been applied.
func (h *harness) waitPolls(n int64) {
	h.t.Helper()
	from := h.sim.Stats().Health
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitStats(ctx, func(st sim.Stats) bool { return st.Health >= from+n }); err != nil {
		h.t.Fatal(err)
	}
}

// state is the lifecycle state /health reports.
func (h *harness) state() fsm.State {
	h.t.Helper()
	conn, _ := h.do("GET", "/health", "").body["connection"].(map[string]any)
	st, _ := conn["state"].(string)
	return fsm.State(st)
}

func TestFailedStateFailsFastAndServesStale(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, fastHealth+"validate: {ttl: 1m, negativeTtl: 1m, staleIfError: 1h}\n")
	h.waitState(fsm.Connected)
	id := h.mustMint("PEO")
	h.fault(sim.Fault{Mode: "refuse"})
	h.waitState(fsm.Failed)
	before := h.sim.Stats()
	h.mint("PEO").expect(t, "mint in FAILED", 503, "UPSTREAM_UNAVAILABLE") // fails fast: no upstream call (checked below)
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

// TestHealthLastPollLatency: /health's connection.stats.lastPoll gives the
// poll's duration as latencyMs, in milliseconds like the document's other
// durations, and still as latency, in nanoseconds (deprecated, kept one
// release), the same duration.
func TestHealthLastPollLatency(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "health: {interval: 300ms, timeout: 300ms}\n")
	h.fault(sim.Fault{Mode: sim.ModeSlow, Latency: "30ms", Routes: []string{"health"}})
	h.waitState(fsm.Connected)
	var poll map[string]any
	waitUntil(t, "a good poll of the slow health route", func() bool {
		conn, _ := h.do("GET", "/health", "").body["connection"].(map[string]any)
		stats, _ := conn["stats"].(map[string]any)
		poll, _ = stats["lastPoll"].(map[string]any)
		ms, _ := poll["latencyMs"].(float64)
		return ms >= 30 && poll["ok"] == true
	})
	ns, ok := poll["latency"].(float64)
	if !ok || poll["latencyMs"] != float64(int64(ns)/1000)/1000 {
		t.Errorf("/health lastPoll = %v, want latencyMs the milliseconds of latency's nanoseconds", poll)
	}
}
