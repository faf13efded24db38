package sidecar_test

import (
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestWorkerStyleAPIEndToEnd: an app written for the newest service mints
// with GET /api/get-chittyid?type=event and validates with POST
// /api/validate, against the simulator in both dialects; an app on the
// 1.0.0 client then validates the same ID from the same cache.
func TestWorkerStyleAPIEndToEnd(t *testing.T) {
	t.Parallel()
	for _, d := range []upstream.Dialect{upstream.DialectClientV1, upstream.DialectWorker} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{Dialect: d, Format: chittyid.FormatNumeric}, "")
			r := h.do("GET", "/api/get-chittyid?type=event", "")
			r.expect(t, "GET mint", 200, "")
			id, _ := r.body["id"].(string)
			if r.body["success"] != true || r.body["chittyId"] != id || r.body["chitty_id"] != id || r.body["entity"] != "EVNT" {
				t.Fatalf("mint answer %s", r.raw)
			}
			if chittyid.FormatNumeric.Check(id) != nil || id[14] != 'E' {
				t.Fatalf("minted %q: not a numeric ID with type letter E", id)
			}
			v := h.do("POST", "/api/validate", `{"id":"`+id+`"}`)
			v.expect(t, "POST /api/validate", 200, "")
			if v.body["success"] != true || v.body["valid"] != true || v.body["entityType"] != "EVNT" || v.body["components"] == nil {
				t.Errorf("validate answer %s", v.raw)
			}
			g := h.validate(id)
			if g.status != 200 || g.body["valid"] != true || g.header.Get("X-Cache") != "HIT" {
				t.Errorf("GET /v1/validate after the mint: HTTP %d X-Cache %q %s; want a HIT from the same cache", g.status, g.header.Get("X-Cache"), g.raw)
			}
			if n := h.sim.Stats().Validate; n != 0 {
				t.Errorf("upstream saw %d validates: every one should come from the cache the mint filled", n)
			}
			spec := h.do("GET", "/api/spec", "")
			s, _ := spec.body["specification"].(map[string]any)
			if spec.status != 200 || spec.body["success"] != true || s["format"] != "VV-G-LLL-SSSS-T-YYMM-C-XX" {
				t.Errorf("/api/spec: %s", spec.raw)
			}
			if et, _ := s["entityTypes"].(map[string]any); et["EVNT"] == nil {
				t.Errorf("/api/spec entityTypes: %v", s["entityTypes"])
			}
		})
	}
}

// TestWorkerMintPassesRegionUpstream: region, jurisdiction and trust of a
// GET mint reach a worker upstream, which mints the ID with them.
func TestWorkerMintPassesRegionUpstream(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}, "")
	r := h.do("GET", "/generate?type=person&region=7&jurisdiction=gbr&trust=4", "")
	r.expect(t, "GET /generate", 200, "")
	id, _ := r.body["chittyId"].(string)
	if chittyid.FormatNumeric.Check(id) != nil || id[3] != '7' || id[5:8] != "GBR" || id[21] != '4' || id[14] != 'P' {
		t.Errorf("minted %q, want region 7, jurisdiction GBR, trust 4, type P", id)
	}
	h.do("GET", "/generate?type=person&region=x", "").expect(t, "a bad region", 400, "BAD_REQUEST")
}

// TestWorkerHealthFollowsReadiness: /api/health is the worker's document,
// 503 "unhealthy" while the sidecar is not ready and 200 "healthy" once it
// is.
func TestWorkerHealthFollowsReadiness(t *testing.T) {
	t.Parallel()
	h := startWith(t, sim.Config{}, fastHealth+"readiness: {policy: connected}\n", refuseFirst(t))
	h.waitDown()
	r := h.do("GET", "/api/health", "")
	if r.status != 503 || r.body["status"] != "unhealthy" || r.body["service"] != "chittyid-sidecar" || r.body["timestamp"] == nil {
		t.Errorf("/api/health while not ready: HTTP %d %s", r.status, r.raw)
	}
	h.fault(sim.Fault{Mode: sim.ModeOK})
	h.waitState(fsm.Connected)
	r = h.do("GET", "/api/health", "")
	if r.status != 200 || r.body["status"] != "healthy" {
		t.Errorf("/api/health when ready: HTTP %d %s", r.status, r.raw)
	}
}

// TestNewMintRoutesKeepEveryRule: no new route mints without what POST
// /v1/mint has: the token rule, the browser refusal, the rate limits and
// an audit line.
func TestNewMintRoutesKeepEveryRule(t *testing.T) {
	t.Parallel()
	routes := []struct{ method, path, body string }{
		{"GET", "/api/get-chittyid?type=person", ""},
		{"GET", "/generate?for=PEO", ""},
		{"POST", "/mint", `{"entity":"PEO"}`},
		{"POST", "/api/v1/mint", `{"entityType":"person"}`},
	}
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, "upstream:\n  token: \"\"\n")
		for _, r := range routes {
			h.do(r.method, r.path, r.body).expect(t, r.path+" without a token", 401, "UNAUTHORIZED")
		}
		if n := h.sim.Stats().Mint; n != 0 {
			t.Errorf("upstream saw %d mints", n)
		}
	})
	t.Run("browser refusal", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, "")
		for _, r := range routes {
			h.do(r.method, r.path, r.body, "Sec-Fetch-Site", "cross-site").expect(t, r.path+" cross-site", 403, "FORBIDDEN")
			h.do(r.method, r.path, r.body, "Origin", "http://evil.example").expect(t, r.path+" foreign Origin", 403, "FORBIDDEN")
		}
		if n := h.sim.Stats().Mint; n != 0 {
			t.Errorf("upstream saw %d mints", n)
		}
	})
	t.Run("rate limits and audit", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, "rateLimit: {mint: {perCallerPerMinute: 1, burst: 1}}\nlimits: {maxBatch: 1}\n")
		for i, r := range routes {
			caller := []string{"X-Client-ID", "caller-" + string(rune('a'+i))}
			h.do(r.method, r.path, r.body, caller...).expect(t, r.path+" first", 200, "")
			h.do(r.method, r.path, r.body, caller...).expect(t, r.path+" over the limit", 429, "RATE_LIMITED")
		}
		if n := h.sim.Stats().Mint; n != int64(len(routes)) {
			t.Errorf("upstream saw %d mints, want %d", n, len(routes))
		}
		for i := range routes {
			caller := "caller-" + string(rune('a'+i))
			for _, outcome := range []string{`"outcome":"ok"`, `"outcome":"RATE_LIMITED"`} {
				found := false
				for _, l := range strings.Split(h.logs.String(), "\n") {
					if strings.Contains(l, `"type":"audit"`) && strings.Contains(l, `"caller":"`+caller+`"`) && strings.Contains(l, outcome) {
						found = true
					}
				}
				if !found {
					t.Errorf("no audit line for %s with %s", routes[i].path, outcome)
				}
			}
		}
	})
}
