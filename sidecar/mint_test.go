package sidecar_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// fastRetry keeps retry waits short so fault tests run in milliseconds.
const fastRetry = "  retry: {maxAttempts: 3, baseDelay: 5ms, maxDelay: 20ms}\n"

func TestMintFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fault      sim.Fault
		status     int
		code       string
		wantMints  int64 // upstream mint requests, -1: don't check
		retryAfter bool
	}{
		{"status 500 is not retried", sim.Fault{Mode: "status", Status: 500}, 503, "UPSTREAM_UNAVAILABLE", 1, true},
		{"status 503 is retried", sim.Fault{Mode: "status", Status: 503}, 503, "UPSTREAM_UNAVAILABLE", 3, true},
		{"429 with Retry-After then ok is retried", sim.Fault{Mode: "status", Status: 429, RetryAfter: 1, Count: 1, Routes: []string{"mint"}}, 200, "", 2, false},
		{"429 beyond the deadline", sim.Fault{Mode: "status", Status: 429, RetryAfter: 30}, 429, "RATE_LIMITED", 1, true},
		{"429 without Retry-After is not retried", sim.Fault{Mode: "status", Status: 429}, 429, "RATE_LIMITED", 1, true},
		{"429 with Retry-After is retried once", sim.Fault{Mode: "status", Status: 429, RetryAfter: 1}, 429, "RATE_LIMITED", 2, true},
		{"400 from upstream", sim.Fault{Mode: "status", Status: 400}, 400, "BAD_REQUEST", 1, false},
		{"401 from upstream", sim.Fault{Mode: "status", Status: 401}, 401, "UNAUTHORIZED", 1, false},
		{"refuse is retried then 503", sim.Fault{Mode: "refuse"}, 503, "UPSTREAM_UNAVAILABLE", 0, true},
		{"fallback", sim.Fault{Mode: "fallback"}, 503, "UPSTREAM_FALLBACK", 1, true},
		{"badformat", sim.Fault{Mode: "badformat"}, 502, "UPSTREAM_BAD_RESPONSE", 1, false},
		{"garbage", sim.Fault{Mode: "garbage"}, 502, "UPSTREAM_BAD_RESPONSE", 1, false},
		{"hang", sim.Fault{Mode: "hang"}, 504, "UPSTREAM_TIMEOUT", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{}, "upstream:\n  mintTimeout: 2s\n  timeout: 500ms\n"+fastRetry+
				"  breaker: {failures: 50, openTimeout: 1m}\n")
			h.fault(tc.fault)
			began := time.Now()
			r := h.mint("PEO")
			took := time.Since(began)
			r.expect(t, "mint", tc.status, tc.code)
			if tc.wantMints >= 0 {
				if n := h.sim.Stats().Mint; n != tc.wantMints {
					t.Errorf("upstream mint requests = %d, want %d", n, tc.wantMints)
				}
			}
			if got := r.header.Get("Retry-After") != ""; got != tc.retryAfter {
				t.Errorf("Retry-After present = %v, want %v (%q)", got, tc.retryAfter, r.header.Get("Retry-After"))
			}
			// upstream.timeout (500ms) bounds the hung attempt: not answered
			// before it, less a little for the clock's granularity.
			if notBefore := 450 * time.Millisecond; tc.fault.Mode == "hang" && took < notBefore {
				t.Errorf("hang answered after %v, before the 500ms attempt timeout", took)
			}
			if tc.status == 200 && chittyid.FormatOfficial.Check(r.body["chittyId"].(string)) != nil {
				t.Errorf("minted %v", r.body["chittyId"])
			}
			if tc.status != 200 && r.body["requestId"] == "" {
				t.Errorf("error answer without requestId: %s", r.raw)
			}
		})
	}
}

// TestUpstreamRateLimitAnsweredAtOnce: a rate-limited answer that names no
// Retry-After, a plain 429 (client-v1) or the worker's RATE_LIMITED
// fallback 0007, reaches upstream once for one app call and is answered
// 429 RATE_LIMITED with Retry-After 1, whatever retries upstream.retry
// allows: the sidecar does not add load to a backend that asks for less.
func TestUpstreamRateLimitAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dialect upstream.Dialect
		fault   sim.Fault
	}{
		{upstream.DialectClientV1, sim.Fault{Mode: sim.ModeStatus, Status: 429}},
		{upstream.DialectWorker, sim.Fault{Mode: sim.ModeFallback, ErrorCode: "0007"}},
	} {
		t.Run(string(tc.dialect), func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{Dialect: tc.dialect, Format: chittyid.FormatNumeric},
				"upstream:\n  retry: {maxAttempts: 5, baseDelay: 5ms, maxDelay: 20ms}\n")
			h.fault(tc.fault)
			r := h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Request-ID", "req-limited")
			r.expect(t, "a rate-limited mint", 429, "RATE_LIMITED")
			if got := r.header.Get("Retry-After"); got != "1" || r.body["retryAfter"] != float64(1) {
				t.Errorf("Retry-After %q, body retryAfter %v; want 1 and 1", got, r.body["retryAfter"])
			}
			if n := h.sim.Stats().Mint; n != 1 {
				t.Errorf("%d upstream mints for one app call, want 1", n)
			}
			a := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-limited" })
			if a["upstreamAttempts"] != float64(1) || a["outcome"] != "RATE_LIMITED" {
				t.Errorf("audit line %v, want 1 upstream attempt, outcome RATE_LIMITED", a)
			}
		})
	}
}

func TestMintRetriesReuseIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n"+fastRetry)
	h.fault(sim.Fault{Mode: "status", Status: 503, Count: 2, Routes: []string{"mint"}})
	r := h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Request-ID", "req-42", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	r.expect(t, "mint after two 503s", 200, "")
	var keys []string
	for _, q := range h.sim.Requests() {
		if q.Route != "mint" {
			continue
		}
		keys = append(keys, q.IdempotencyKey)
		if q.RequestID != "req-42" || !strings.HasPrefix(q.TraceParent, "00-0af7") {
			t.Errorf("attempt lacks request ID or traceparent: %+v", q)
		}
	}
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Fatalf("idempotency keys across attempts = %q, want the same key three times", keys)
	}
	if r.header.Get("X-Request-ID") != "req-42" {
		t.Errorf("X-Request-ID = %q, want the caller's", r.header.Get("X-Request-ID"))
	}
}

func TestBreakerOpensAfterFailuresAndFailsFast(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  retry: {maxAttempts: 1, baseDelay: 5ms, maxDelay: 5ms}\n  breaker: {failures: 3, openTimeout: 1m}\n")
	h.fault(sim.Fault{Mode: "status", Status: 503})
	for i := 0; i < 3; i++ {
		h.mint("PEO").expect(t, "failing mint", 503, "UPSTREAM_UNAVAILABLE")
	}
	r := h.mint("PEO")
	r.expect(t, "mint with the breaker open", 503, "CIRCUIT_OPEN")
	if !strings.Contains(r.body["message"].(string), "circuit breaker is OPEN - service unavailable. Will retry in") {
		t.Errorf("message = %q", r.body["message"])
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if n := h.sim.Stats().Mint; n != 3 {
		t.Errorf("upstream mints = %d, want 3 (none once open)", n)
	}
}

func TestBreakerRecovery(t *testing.T) {
	t.Parallel()
	const cfg = "upstream:\n  retry: {maxAttempts: 1, baseDelay: 5ms, maxDelay: 5ms}\n  breaker: {failures: 2, openTimeout: 300ms}\n"
	trip := func(h *harness) {
		h.fault(sim.Fault{Mode: "status", Status: 500})
		h.mint("PEO")
		h.mint("PEO")
		h.mint("PEO").expect(t, "tripped", 503, "CIRCUIT_OPEN")
	}
	t.Run("successful trial closes", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, cfg)
		trip(h)
		h.fault(sim.Fault{Mode: "ok"})
		h.clock.advance(300 * time.Millisecond) // the breaker's open timeout, on the sidecar's clock
		h.mint("PEO").expect(t, "trial", 200, "")
		h.mint("PEO").expect(t, "after trial", 200, "")
		if st := health(h)["circuitBreaker"]; st != "closed" {
			t.Errorf("breaker %v, want closed", st)
		}
	})
	t.Run("failed trial reopens at once", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, cfg)
		trip(h)
		h.clock.advance(300 * time.Millisecond)
		before := h.sim.Stats().Mint
		h.mint("PEO").expect(t, "failed trial", 503, "UPSTREAM_UNAVAILABLE")
		h.mint("PEO").expect(t, "right after the failed trial", 503, "CIRCUIT_OPEN")
		if n := h.sim.Stats().Mint - before; n != 1 {
			t.Errorf("upstream mints after the timeout = %d, want 1 (the trial)", n)
		}
	})
}

// health returns the breaker part of the /health document.
func health(h *harness) map[string]any {
	r := h.do("GET", "/health", "")
	res, _ := r.body["resilience"].(map[string]any)
	cb, _ := res["circuitBreaker"].(map[string]any)
	return map[string]any{"circuitBreaker": cb["state"]}
}

func TestMintWithoutAnyTokenIs401WithoutUpstream(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  token: \"\"\n")
	h.mint("PEO").expect(t, "no token", 401, "UNAUTHORIZED")
	if n := h.sim.Stats().Mint; n != 0 {
		t.Errorf("upstream mints = %d, want 0", n)
	}
	// The caller's own token is passed through when the sidecar has none.
	r := h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "Authorization", "Bearer "+testToken)
	r.expect(t, "caller token", 200, "")
}

func TestMintWrongTokenIs401(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  token: wrong-token\n")
	r := h.mint("PEO")
	r.expect(t, "wrong token", 401, "UNAUTHORIZED")
	if strings.Contains(r.raw, "wrong-token") {
		t.Errorf("the token leaked into the answer: %s", r.raw)
	}
}

func TestMintBadInputNeverReachesUpstream(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "limits: {maxBodyBytes: 16384, maxMetadataBytes: 10240, maxBatch: 5}\n")
	deep := strings.Repeat(`{"a":`, 9) + "1" + strings.Repeat("}", 9)
	for _, tc := range []struct {
		name, path, body string
		status           int
		code, inMessage  string
	}{
		{"unknown entity", "/v1/mint", `{"entity":"PERSONS"}`, 400, "UNSUPPORTED_ENTITY", "PEO, PLACE, PROP, EVNT, AUTH, INFO, FACT, CONTEXT, ACTOR"},
		{"missing entity", "/v1/mint", `{"name":"x"}`, 400, "BAD_REQUEST", "entity is required"},
		{"entity not a string", "/v1/mint", `{"entity":7}`, 400, "BAD_REQUEST", "entity must be a string"},
		{"name not a string", "/v1/mint", `{"entity":"PEO","name":[1]}`, 400, "BAD_REQUEST", "name must be a string"},
		{"non-JSON body", "/v1/mint", `entity=PEO`, 400, "BAD_REQUEST", "invalid JSON"},
		{"JSON array body", "/v1/mint", `[1,2]`, 400, "BAD_REQUEST", "must be a JSON object"},
		{"empty body", "/v1/mint", ``, 400, "BAD_REQUEST", "empty"},
		{"metadata __proto__", "/v1/mint", `{"entity":"PEO","metadata":{"a":{"__proto__":{"x":1}}}}`, 400, "INVALID_METADATA", "__proto__"},
		{"metadata constructor", "/v1/mint", `{"entity":"PEO","metadata":{"constructor":1}}`, 400, "INVALID_METADATA", "constructor"},
		{"metadata not an object", "/v1/mint", `{"entity":"PEO","metadata":"x"}`, 400, "INVALID_METADATA", "JSON object"},
		{"metadata too deep", "/v1/mint", `{"entity":"PEO","metadata":` + deep + `}`, 400, "INVALID_METADATA", "deeper than 8"},
		{"metadata over 10 KiB", "/v1/mint", `{"entity":"PEO","metadata":{"a":"` + strings.Repeat("x", 10300) + `"}}`, 400, "INVALID_METADATA", "over the limit"},
		{"body over the limit", "/v1/mint", `{"entity":"PEO","metadata":{"a":"` + strings.Repeat("x", 17000) + `"}}`, 413, "PAYLOAD_TOO_LARGE", "maxBodyBytes"},
		{"batch over maxBatch", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"}]}`, 400, "BAD_REQUEST", "maxBatch"},
		{"batch bad item", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"X"}]}`, 400, "UNSUPPORTED_ENTITY", "requests[1]"},
		{"batch without requests", "/v1/mint/batch", `{}`, 400, "BAD_REQUEST", "requests is required"},
		{"batch empty", "/v1/mint/batch", `{"requests":[]}`, 400, "BAD_REQUEST", "empty"},
	} {
		r := h.do("POST", tc.path, tc.body)
		if r.status != tc.status || r.body["error"] != tc.code || !strings.Contains(r.body["message"].(string), tc.inMessage) {
			t.Errorf("%s: HTTP %d %s; want %d %s with %q", tc.name, r.status, r.raw, tc.status, tc.code, tc.inMessage)
		}
	}
	// Metadata within every limit passes.
	h.do("POST", "/v1/mint", `{"entity":"peo","name":"n","metadata":{"a":[1,{"b":"prototype"}],"c":null}}`).expect(t, "good metadata", 200, "")
	if st := h.sim.Stats(); st.Mint != 1 || st.Batch != 0 {
		t.Errorf("upstream saw %d mints and %d batches, want only the good one", st.Mint, st.Batch)
	}
}

func TestMintBatch(t *testing.T) {
	t.Parallel()
	for _, d := range []upstream.Dialect{upstream.DialectClientV1, upstream.DialectWorker} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{Dialect: d, Format: chittyid.FormatNumeric}, "")
			r := h.do("POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"PLACE"},{"entity":"EVNT"}]}`)
			r.expect(t, "batch", 200, "")
			ids, _ := r.body["chittyIds"].([]any)
			if len(ids) != 3 {
				t.Fatalf("chittyIds = %v", r.raw)
			}
			seen := map[string]bool{}
			for i, want := range []byte{'P', 'L', 'E'} {
				id, _ := ids[i].(string)
				if chittyid.FormatNumeric.Check(id) != nil || id[14] != want || seen[id] {
					t.Errorf("id %d = %q, want a distinct numeric ID with type %c", i, id, want)
				}
				seen[id] = true
				if v := h.validate(id); v.header.Get("X-Cache") != "HIT" {
					t.Errorf("batch-minted %s is not cached", id)
				}
			}
		})
	}
}

func TestMintBatchPartialFailureKeepsMintedIDs(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{Dialect: upstream.DialectWorker}, "upstream:\n"+fastRetry+"  maxInFlight: 1\n")
	// The worker has no batch route: the sidecar fans out single mints, one
	// at a time here, and the second one fails: the worker's mint backend
	// answers 500, which the worker turns into a fallback (code 0003).
	h.mustMint("PEO")
	h.fault(sim.Fault{Mode: "status", Status: 500, Routes: []string{"mint"}, Count: 1})
	r := h.do("POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"}]}`, "X-Request-ID", "req-partial")
	r.expect(t, "partial batch", 503, "UPSTREAM_FALLBACK")
	if strings.Contains(r.raw, "-ERR-") {
		t.Errorf("the answer carries the placeholder: %s", r.raw)
	}
	a := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-partial" })
	if ph, _ := a["placeholderIds"].([]any); len(ph) != 1 || !strings.HasPrefix(ph[0].(string), "03-0-ERR-0003-") {
		t.Errorf("audit line %v, want the placeholder in placeholderIds", a)
	}
	ids, _ := r.body["chittyIds"].([]any)
	if len(ids) != 3 {
		t.Fatalf("chittyIds missing from the error answer: %s", r.raw)
	}
	var minted, null int
	for _, id := range ids {
		if s, ok := id.(string); ok && chittyid.FormatOfficial.Check(s) == nil {
			minted++
		} else if id == nil {
			null++
		}
	}
	if minted != 2 || null != 1 {
		t.Errorf("chittyIds = %v, want 2 IDs and one null", ids)
	}
}

// TestIdleUpstreamConnectionsAgeOut: after a burst of concurrent mints opened
// many upstream connections, health polls alone keep only one of them busy;
// the others are closed once idle (upstream sees them go).
func TestIdleUpstreamConnectionsAgeOut(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{Latency: 50 * time.Millisecond}, "health: {interval: 200ms, timeout: 150ms}\n")
	h.waitState(fsm.Connected)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.mint("PEO").expect(t, "burst mint", 200, "")
		}()
	}
	wg.Wait()
	if n := h.sim.OpenConns(); n < 8 {
		t.Fatalf("the burst of 16 slow mints used %d upstream connections; want at least 8 for this test to mean anything", n)
	}
	deadline := time.Now().Add(15 * time.Second) // idle for 4s, found by a cleaner sweeping every 4s
	for h.sim.OpenConns() > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d upstream connections still open 15s after the burst (health polls every 200ms)", h.sim.OpenConns())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
