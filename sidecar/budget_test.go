package sidecar_test

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The series budget (docs/observability.md): what one sidecar costs the
// Prometheus that scrapes it, counted as `curl -s …/metrics | grep -vc
// '^#'` counts it.
const (
	idleSeriesBudget     = 120 // default config, no request yet but scrapes
	workloadSeriesBudget = 300 // after every route, family, status, dialect and the fleet tier
)

// scrapeText is /metrics as text.
func (h *harness) scrapeText() string {
	h.t.Helper()
	resp, err := h.http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		h.t.Fatalf("/metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// seriesByFamily counts the samples of a text exposition (every line that
// is neither empty nor a comment) by family: a histogram's _bucket, _sum
// and _count lines count for the histogram.
func seriesByFamily(text string) (total int, byFamily map[string]int) {
	byFamily = map[string]int{}
	histograms := map[string]bool{}
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, _ := strings.Cut(rest, " "); typ == "histogram" || typ == "summary" {
				histograms[name] = true
			}
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		total++
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && histograms[base] {
				name = base
			}
		}
		byFamily[name]++
	}
	return total, byFamily
}

// checkBudget fails the test if text has more than budget series, and
// says which families hold them.
func checkBudget(t *testing.T, what, text string, budget int) {
	t.Helper()
	total, fams := seriesByFamily(text)
	t.Logf("%s: %d series (budget %d), %d bytes", what, total, budget, len(text))
	if total <= budget {
		return
	}
	names := slices.SortedFunc(maps.Keys(fams), func(a, b string) int { return cmp.Or(fams[b]-fams[a], strings.Compare(a, b)) })
	var b strings.Builder
	for i, n := range names {
		if i == 20 {
			fmt.Fprintf(&b, "       … %d more families\n", len(names)-i)
			break
		}
		fmt.Fprintf(&b, "%6d %s\n", fams[n], n)
	}
	t.Errorf("%s: %d series, over the budget of %d; the largest families:\n%s%s", what, total, budget,
		b.String(), testout.Cut(t, "metrics.txt", text, func(string) bool { return false }))
}

// TestMetricsSeriesBudget: an idle sidecar with the default config, and
// one after a workload that touches every route in every family of
// routes, every status the API answers with, both upstream dialects and
// the fleet tier (hits, misses, lock waits, Redis stopped, the fleet mint
// limit), serve no more series than the budget.
func TestMetricsSeriesBudget(t *testing.T) {
	t.Parallel()
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, "")
		h.waitState(fsm.Connected)
		h.scrapeText() // a scrape counts itself from the next one on
		checkBudget(t, "idle, default config", h.scrapeText(), idleSeriesBudget)
	})
	t.Run("idle/every feature on", func(t *testing.T) {
		t.Parallel()
		redis := startRedis(t)
		tlsCfg, caFile := tlsUpstream(t)
		s, err := sim.Start(sim.Config{Token: testToken, TLS: tlsCfg}, "127.0.0.1:0", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("starting the simulator: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		h := newHarness(t)
		h.sim = s
		h.run(configFor(s, sim.Config{}, fmt.Sprintf("upstream:\n  tls: {caFile: %q}\nsnapshot: {path: %q}\nmetrics: {listen: 127.0.0.1:0}\n",
			caFile, filepath.Join(t.TempDir(), "snapshot", "cache.snap"))+fleetSection(redis, 250*time.Millisecond, 2*time.Second)), false, sidecar.Timeouts{})
		h.waitState(fsm.Connected)
		h.waitFleet(fleet.StateUp)
		h.scrapeText()
		checkBudget(t, "idle, the fleet tier, snapshots, an https upstream and metrics.listen on", h.scrapeText(), idleSeriesBudget)
	})
	for _, d := range []upstream.Dialect{upstream.DialectClientV1, upstream.DialectWorker} {
		t.Run("workload/"+string(d), func(t *testing.T) {
			t.Parallel()
			h := runWorkload(t, d)
			h.scrapeText()
			checkBudget(t, "after the workload, "+string(d)+" dialect", h.scrapeText(), workloadSeriesBudget)
		})
	}
}

// runWorkload runs the budget's workload against a sidecar (with the
// fleet tier, beside a second one sharing its Redis) in front of a
// simulator of dialect d, and returns the first sidecar.
func runWorkload(t *testing.T, d upstream.Dialect) *harness {
	t.Helper()
	redis := startRedis(t)
	s, err := sim.Start(sim.Config{Token: testToken, Dialect: d}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	base := "limits: {maxBatch: 4, maxBodyBytes: 4096, maxMetadataBytes: 1024}\n" +
		"upstream:\n  retry: {maxAttempts: 2, baseDelay: 1ms, maxDelay: 1ms}\n  mintTimeout: 300ms\n  validateTimeout: 2s\n  breaker: {failures: 5, openTimeout: 1h}\n" +
		fleetSection(redis, 250*time.Millisecond, 2*time.Second)
	simCfg := sim.Config{Dialect: d}
	h := newHarness(t)
	h.sim = s
	h.run(configFor(s, simCfg, base), true, sidecar.Timeouts{Request: 300 * time.Millisecond})
	h.waitFleet(fleet.StateUp)
	peer := newHarness(t)
	peer.sim = s
	peer.run(configFor(s, simCfg, base), false, sidecar.Timeouts{})
	peer.waitFleet(fleet.StateUp)
	h.waitState(fsm.Connected)

	// Every route of every family, answered 200 (404 for no route).
	id := h.mustMint("PEO")
	for _, p := range []string{"/v1", "/api/v1", ""} {
		h.do("GET", p+"/validate/"+id, "").expect(t, p+" validate", 200, "")
		h.do("POST", p+"/validate", `{"chittyId":"`+id+`"}`).expect(t, p+" validate POST", 200, "")
		h.do("POST", p+"/mint", `{"entity":"EVNT"}`).expect(t, p+" mint", 200, "")
		h.do("POST", p+"/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"INFO"}]}`).expect(t, p+" batch", 200, "")
		h.do("GET", p+"/health", "").expect(t, p+" health", 200, "")
		h.do("GET", p+"/no-such-route", "").expect(t, p+" unknown route", 404, "NOT_FOUND")
	}
	h.do("GET", "/api/get-chittyid?type=PEO", "").expect(t, "worker mint", 200, "")
	h.do("GET", "/generate?type=PEO", "").expect(t, "worker generate", 200, "")
	h.do("POST", "/api/validate", `{"chittyId":"`+id+`"}`).expect(t, "worker validate", 200, "")
	h.do("GET", "/api/health", "").expect(t, "worker health", 200, "")
	h.do("GET", "/api/spec", "").expect(t, "worker spec", 200, "")
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r, err := h.http.Get(h.base + p); err != nil || r.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", p, r, err)
		} else {
			r.Body.Close()
		}
	}

	// Validate answers of every kind, and the fleet tier's: a verdict
	// another sidecar fetched (fleet HIT), one fetched here (get miss,
	// lock, put, commit), and a wait on the other sidecar's lock.
	h.validate("not-an-id").expect(t, "LOCAL", 200, "")
	h.validate(unknownID(1)).expect(t, "MISS, not valid", 200, "")
	peer.validate(unknownID(2)).expect(t, "the peer's MISS", 200, "")
	if r := h.validate(unknownID(2)); r.tier() != "HIT fleet" {
		t.Errorf("a verdict the peer fetched: %q, want HIT fleet: %s", r.tier(), r.raw)
	}
	h.fault(sim.Fault{Mode: sim.ModeSlow, Latency: "400ms", Routes: []string{"validate"}})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = peer.try("GET", "/v1/validate/"+unknownID(3), "") })
	time.Sleep(100 * time.Millisecond) // the peer holds the lock by now, usually: then this waits for its verdict
	h.validate(unknownID(3)).expect(t, "a validate that waits for the peer's fetch", 200, "")
	wg.Wait()
	h.fault(sim.Fault{Mode: sim.ModeOK})

	// Every status the API answers with, but 500 (a handler panic), and
	// every error code that is not only said at shutdown.
	h.do("POST", "/v1/mint", `nope`).expect(t, "malformed JSON", 400, "BAD_REQUEST")
	h.do("POST", "/v1/mint", `{"entity":"DOG"}`).expect(t, "entity", 400, "UNSUPPORTED_ENTITY")
	h.do("POST", "/v1/mint", `{"entity":"PEO","metadata":"x"}`).expect(t, "metadata", 400, "INVALID_METADATA")
	h.do("POST", "/v1/mint", `{"entity":"PEO","name":"`+strings.Repeat("n", 5000)+`"}`).expect(t, "body too large", 413, "PAYLOAD_TOO_LARGE")
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "Content-Type", "text/plain").expect(t, "not JSON", 415, "UNSUPPORTED_MEDIA_TYPE")
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "Sec-Fetch-Site", "cross-site").expect(t, "cross-site", 403, "FORBIDDEN")
	h.do("DELETE", "/v1/mint", "").expect(t, "method", 405, "METHOD_NOT_ALLOWED")
	if d == upstream.DialectWorker {
		h.fault(sim.Fault{Mode: sim.ModeFallback, Count: 1})
		h.mint("PEO").expect(t, "worker fallback", 503, "UPSTREAM_FALLBACK")
	} else {
		h.fault(sim.Fault{Mode: sim.ModeStatus, Status: 401, Count: 1})
		h.mint("PEO").expect(t, "upstream 401", 401, "UNAUTHORIZED")
	}
	h.fault(sim.Fault{Mode: sim.ModeStatus, Status: 429, Count: 1, Routes: []string{"mint"}})
	h.mint("PEO").expect(t, "upstream 429", 429, "RATE_LIMITED")
	h.fault(sim.Fault{Mode: sim.ModeGarbage, Count: 2, Routes: []string{"mint"}})
	h.mint("PEO").expect(t, "garbage", 502, "UPSTREAM_BAD_RESPONSE")
	h.fault(sim.Fault{Mode: sim.ModeHang, Routes: []string{"mint"}})
	h.mint("PEO").expect(t, "hang", 504, "UPSTREAM_TIMEOUT")
	h.fault(sim.Fault{Mode: sim.ModeOK})
	h.mustMint("PEO") // the breaker counts failures in a row: none open it here
	req, _ := http.NewRequest("GET", h.base+"/v1/validate/"+id, nil)
	req.Host = "evil.example"
	if r, err := h.http.Do(req); err != nil || r.StatusCode != 403 {
		t.Errorf("a request for another Host: %v %v, want 403", r, err)
	} else {
		r.Body.Close()
	}
	half := dial(t, h) // 408: the request never ends
	fmt.Fprint(half, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
	if got, _ := readUntilClosed(t, half, time.Now(), 10*time.Second); !strings.HasPrefix(got, "HTTP/1.1 408 ") {
		t.Errorf("half-sent request: %.60q, want 408", got)
	}
	big := dial(t, h) // 431
	fmt.Fprintf(big, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 64<<10))
	if got, _ := readUntilClosed(t, big, time.Now(), 10*time.Second); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("huge headers: %.60q, want 431", got)
	}

	// A verdict past its TTL served stale while upstream fails.
	h.clock.advance(11 * time.Minute) // validate.ttl is 10m
	h.fault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"validate"}})
	if r := h.validate(id); r.header.Get("X-Cache") != "STALE" {
		t.Errorf("an expired verdict while upstream fails: X-Cache %q, want STALE: %s", r.header.Get("X-Cache"), r.raw)
	}
	h.fault(sim.Fault{Mode: sim.ModeOK})
	h.mustMint("PEO")

	// Redis stopped: calls time out, then the tier is skipped; back up.
	redis.Signal(syscall.SIGSTOP)
	for i := 0; h.sc.FleetStats().Skipped == 0; i++ {
		if i == 100 {
			t.Fatal("the fleet tier was not skipped after 100 validates with Redis stopped")
		}
		h.validate(unknownID(100 + i))
	}
	redis.Signal(syscall.SIGCONT)
	h.waitFleet(fleet.StateUp)

	// Local and fleet rate limits, switched on by a reload.
	h.reloadTo(configFor(s, simCfg, base+"rateLimit:\n  mint: {perCallerPerMinute: 60, burst: 4, fleetPerMinute: 60, fleetBurst: 4}\n"), 2)
	for range 4 {
		h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Client-ID", "greedy").expect(t, "within the limits", 200, "")
	}
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Client-ID", "greedy").expect(t, "over the caller's limit", 429, "RATE_LIMITED")
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Client-ID", "other").expect(t, "over the fleet limit", 429, "RATE_LIMITED")

	h.reloadTo(configFor(s, simCfg, base), 3)

	// Last, as nothing mints after it: the breaker opens.
	h.mustMint("PEO") // the breaker counts failures in a row
	h.fault(sim.Fault{Mode: sim.ModeRefuse})
	h.mint("PEO").expect(t, "upstream refusing connections", 503, "UPSTREAM_UNAVAILABLE")
	for i := 0; h.mint("PEO").body["error"] != "CIRCUIT_OPEN"; i++ {
		if i == 10 {
			t.Fatal("the breaker did not open after 10 failed mints")
		}
	}
	h.fault(sim.Fault{Mode: sim.ModeOK})
	return h
}
