package sidecar_test

import (
	"testing"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestRateLimitsEndToEnd: per-caller and global mint limits and the validate
// limit answer 429 with Retry-After and send nothing upstream; a reload
// changes them live. The test clock never moves, so buckets do not refill.
func TestRateLimitsEndToEnd(t *testing.T) {
	t.Parallel()
	h := startFile(t, sim.Config{}, "limits: {maxBatch: 2}\nrateLimit:\n  mint: {perCallerPerMinute: 60, burst: 2}\n")
	mint := func(caller string) reply { return h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Client-ID", caller) }
	mint("app-a").expect(t, "a 1", 200, "")
	mint("app-a").expect(t, "a 2", 200, "")
	r := mint("app-a")
	r.expect(t, "a 3 over its burst", 429, "RATE_LIMITED")
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1 (one token a second)", ra)
	}
	mint("app-b").expect(t, "another caller has its own bucket", 200, "")
	if n := h.sim.Stats().Mint; n != 3 {
		t.Errorf("upstream mints = %d, want 3: a refused mint must not reach upstream", n)
	}

	// A global limit, reloaded live, applies across callers.
	h.reloadTo(configFor(h.sim, sim.Config{}, "limits: {maxBatch: 2}\nrateLimit:\n  mint: {globalPerMinute: 60, burst: 2}\n  validate: {globalPerSecond: 1, burst: 1}\n"), 2)
	mint("app-c").expect(t, "c 1", 200, "")
	mint("app-d").expect(t, "d 1", 200, "")
	mint("app-e").expect(t, "e 1 over the global burst", 429, "RATE_LIMITED")
	id := h.sim.Minted()[0]
	h.validate(id).expect(t, "first validate", 200, "")
	v := h.validate(id)
	v.expect(t, "second validate over the validate limit", 429, "RATE_LIMITED")
	if v.header.Get("Retry-After") == "" {
		t.Error("validate 429 without Retry-After")
	}
	fams := h.scrape()
	if got := value(fams, "chittyid_sidecar_rate_limited_total", "route=mint"); got != 2 {
		t.Errorf("rate_limited_total{mint} = %v, want 2", got)
	}
	if got := value(fams, "chittyid_sidecar_rate_limited_total", "route=validate"); got != 1 {
		t.Errorf("rate_limited_total{validate} = %v, want 1", got)
	}

	// Limits off again.
	h.reloadTo(configFor(h.sim, sim.Config{}, "limits: {maxBatch: 2}\n"), 3)
	mint("app-e").expect(t, "after the limits were removed", 200, "")
	h.validate(id).expect(t, "validate after the limits were removed", 200, "")
	h.logs.waitFor(t, "access", func(m map[string]any) bool { return m["reason"] == "RATE_LIMITED" && m["caller"] == "app-e" })
}
