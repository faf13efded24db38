package sidecar_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
)

// Tests of how single requests use the fleet tier, on a real redis-server:
// what the access log says, and how long a mint waits on a Redis that
// hangs.

// TestFleetAccessLogTier: the access line of a validate says which cache
// tier answered, as X-Cache-Tier does: fleet for an ID minted on another
// sidecar, local once it is cached here; a MISS (upstream's answer) has
// none.
func TestFleetAccessLogTier(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 2, "", 250*time.Millisecond, time.Second)
	id := f.sc[0].mustMint("PEO")
	b := f.sc[1]
	for i, want := range []string{"HIT fleet", "HIT local", "MISS"} {
		path := "/v1/validate/" + id
		if want == "MISS" {
			path = "/v1/validate/" + mintAtSim(t, f.sim, 1)[0]
		}
		rid := fmt.Sprintf("req-tier-%d", i)
		r := b.do("GET", path, "", "X-Request-ID", rid)
		if r.tier() != want {
			t.Fatalf("validate %d: %q, want %s", i+1, r.tier(), want)
		}
		line := b.logs.waitFor(t, "access", func(m map[string]any) bool { return m["requestId"] == rid })
		if got, _ := line["tier"].(string); got != r.header.Get("X-Cache-Tier") {
			t.Errorf("access line for %s: tier %q, want %q: %v", want, got, r.header.Get("X-Cache-Tier"), line)
		}
	}
}

// TestFleetMintLimitRedisHangingWaitsOnce: with the fleet mint limit on
// and Redis hanging (SIGSTOP), a mint makes one call to Redis, the
// limit's, which times out after fleet.timeout: the minted ID is then not
// written to the fleet tier, which would wait a second fleet.timeout. The
// mint succeeds (the limit fails open).
func TestFleetMintLimitRedisHangingWaitsOnce(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 1, "rateLimit: {mint: {fleetPerMinute: 6000, fleetBurst: 10}}\nlimits: {maxBatch: 10}\n", 100*time.Millisecond, time.Second)
	h := f.sc[0]
	h.mustMint("PEO") // the limit's script is loaded
	f.redis.Signal(syscall.SIGSTOP)
	for i := range 2 { // the tier skips Redis after its third failure in a row
		e0 := h.sc.FleetStats().Errors
		h.mint("PEO").expect(t, "a mint with Redis hanging", 200, "")
		if n := h.sc.FleetStats().Errors - e0; n != 1 {
			t.Errorf("mint %d with Redis hanging: %d failed calls to Redis, want 1 (the limit's)", i+1, n)
		}
	}
	f.redis.Signal(syscall.SIGCONT)
	h.waitFleet(fleet.StateUp)
}
