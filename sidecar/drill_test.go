package sidecar_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The fault drill runs in CI with short phases; the long run is
//
//	go test -run TestFaultDrill -drill.phase=10s -drill.workers=16 -v ./sidecar/
var (
	drillPhase   = flag.Duration("drill.phase", 300*time.Millisecond, "how long each fault of the drill lasts")
	drillWorkers = flag.Int("drill.workers", 8, "concurrent callers in the drill")
)

// drillConfig keeps every timeout short, so that faults cycle quickly and
// the breaker and lifecycle go through their states within a phase.
const drillConfig = `upstream:
  timeout: 300ms
  mintTimeout: 1s
  validateTimeout: 500ms
  retry: {maxAttempts: 3, baseDelay: 10ms, maxDelay: 50ms}
  breaker: {failures: 5, openTimeout: 300ms}
health: {interval: 100ms, timeout: 80ms, failuresToReconnect: 1, maxReconnectAttempts: 3, reconnect: {baseDelay: 20ms, maxDelay: 100ms}}
validate: {ttl: 1s, negativeTtl: 500ms, staleIfError: 1h}
log: {access: false}
`

// drillCallerTimeout is how long a caller waits: the mint deadline plus a margin.
const drillCallerTimeout = 2 * time.Second

type drillPhaseSpec struct {
	name  string
	fault sim.Fault
	flap  bool // alternate ok and refuse every 150ms
}

func drillPhases() []drillPhaseSpec {
	st := func(code, ra int) sim.Fault { return sim.Fault{Mode: "status", Status: code, RetryAfter: ra} }
	return []drillPhaseSpec{
		{"ok", sim.Fault{Mode: "ok"}, false},
		{"refuse", sim.Fault{Mode: "refuse"}, false},
		{"ok", sim.Fault{Mode: "ok"}, false},
		{"hang", sim.Fault{Mode: "hang"}, false},
		{"slow 500ms", sim.Fault{Mode: "slow", Latency: "500ms"}, false},
		{"status 500", st(500, 0), false},
		{"status 502", st(502, 0), false},
		{"status 503", st(503, 0), false},
		{"status 503 Retry-After 1", st(503, 1), false},
		{"status 429", st(429, 0), false},
		{"status 429 Retry-After 1", st(429, 1), false},
		{"fallback", sim.Fault{Mode: "fallback"}, false},
		{"badformat", sim.Fault{Mode: "badformat"}, false},
		{"garbage", sim.Fault{Mode: "garbage"}, false},
		{"flapping ok/refuse", sim.Fault{}, true},
		{"ok (recovery)", sim.Fault{Mode: "ok"}, false},
	}
}

// drillStats is one phase's figures.
type drillStats struct {
	mu        sync.Mutex
	requests  int
	codes     map[string]int // "200", "503 CIRCUIT_OPEN", "transport error", …
	latencies []time.Duration
	knownBad  []string // validates of known IDs not answered HIT or STALE
}

func (d *drillStats) add(code string, lat time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	d.codes[code]++
	d.latencies = append(d.latencies, lat)
}

func (d *drillStats) p99() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.latencies) == 0 {
		return 0
	}
	s := slices.Clone(d.latencies)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

func TestFaultDrill(t *testing.T) {
	h := start(t, sim.Config{}, drillConfig)
	h.waitState(fsm.Connected)
	known := make([]string, 20)
	for i := range known {
		known[i] = h.mustMint("PEO")
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	baseGoroutines := runtime.NumGoroutine()

	client := &http.Client{Timeout: drillCallerTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu       sync.Mutex
		returned = map[string]int{} // ID -> times handed to a caller
		phase    atomic.Pointer[drillStats]
		stop     atomic.Bool
		wg       sync.WaitGroup
		seq      atomic.Int64
	)
	record := func(ids ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if id != "" {
				returned[id]++
			}
		}
	}
	call := func(st *drillStats, method, path, body, caller string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(method, h.base+path, strings.NewReader(body))
		req.Header.Set("X-Client-ID", caller)
		began := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			st.add("transport error", time.Since(began))
			return 0, nil, nil
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		code := fmt.Sprint(resp.StatusCode)
		if json.Unmarshal(b, &m) != nil {
			code += " (not JSON)"
		} else if e, ok := m["error"].(string); ok {
			code += " " + e
		}
		st.add(code, time.Since(began))
		return resp.StatusCode, m, resp.Header
	}
	worker := func(w int) {
		defer wg.Done()
		caller := fmt.Sprintf("app-%d", w%3)
		for i := 0; !stop.Load(); i++ {
			st := phase.Load()
			switch n := seq.Add(1); n % 10 {
			case 0, 1, 2, 3: // a known ID: always answered valid, from the cache (HIT, STALE) or upstream (MISS)
				id := known[int(n)%len(known)]
				code, m, hdr := call(st, "GET", "/v1/validate/"+id, "", caller)
				if code != 200 || m["valid"] != true || hdr.Get("X-Cache") == "LOCAL" {
					st.mu.Lock()
					st.knownBad = append(st.knownBad, fmt.Sprintf("%d %s %v", code, hdr.Get("X-Cache"), m))
					st.mu.Unlock()
				}
			case 4, 5: // an unknown, well-formed ID
				call(st, "GET", fmt.Sprintf("/v1/validate/CT-Z-ZZZ-%04d-P-26-Z-0", n%10000), "", caller)
			case 6, 7, 8:
				_, m, _ := call(st, "POST", "/v1/mint", `{"entity":"EVNT"}`, caller)
				if id, ok := m["chittyId"].(string); ok {
					record(id)
				}
			default:
				_, m, _ := call(st, "POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"PLACE"},{"entity":"INFO"}]}`, caller)
				if ids, ok := m["chittyIds"].([]any); ok {
					for _, id := range ids {
						if s, ok := id.(string); ok {
							record(s)
						}
					}
				}
			}
		}
	}

	type row struct {
		name  string
		stats *drillStats
		state string
		ready int
	}
	var rows []row
	phase.Store(&drillStats{codes: map[string]int{}})
	for w := 0; w < *drillWorkers; w++ {
		wg.Add(1)
		go worker(w)
	}
	for _, p := range drillPhases() {
		st := &drillStats{codes: map[string]int{}}
		phase.Store(st)
		if p.flap {
			end := time.Now().Add(*drillPhase)
			for on := false; time.Now().Before(end); on = !on {
				mode := "refuse"
				if on {
					mode = "ok"
				}
				h.fault(sim.Fault{Mode: mode})
				time.Sleep(min(150*time.Millisecond, time.Until(end)))
			}
		} else {
			h.fault(p.fault)
			time.Sleep(*drillPhase) // the drill is load over time: the phase length is the point
		}
		hd := h.do("GET", "/health", "")
		state, _ := hd.body["connection"].(map[string]any)["state"].(string)
		rows = append(rows, row{p.name, st, state, hd.status})
		// Readiness follows the degraded policy at every phase end.
		wantReady := state == "CONNECTED" || state == "RECONNECTING"
		if (hd.status == 200) != wantReady {
			t.Errorf("phase %s: state %s but /health %d", p.name, state, hd.status)
		}
	}
	h.fault(sim.Fault{Mode: "ok"})
	h.waitState(fsm.Connected)
	stop.Store(true)
	wg.Wait()
	client.CloseIdleConnections()

	// The table.
	var b strings.Builder
	fmt.Fprintf(&b, "\n| fault | requests | outcomes | p99 | state at end | /health |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		var codes []string
		for c, n := range r.stats.codes {
			codes = append(codes, fmt.Sprintf("%s ×%d", c, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(&b, "| %s | %d | %s | %v | %s | %d |\n", r.name, r.stats.requests, strings.Join(codes, ", "),
			r.stats.p99().Round(time.Millisecond), r.state, r.ready)
	}

	// Invariants.
	check := func(name string, ok bool, detail string) {
		mark := "ok"
		if !ok {
			mark = "FAILED: " + detail
			t.Errorf("invariant %q: %s", name, detail)
		}
		fmt.Fprintf(&b, "- %s: %s\n", name, mark)
	}
	var transport, slowest int
	var knownBad []string
	for _, r := range rows {
		transport += r.stats.codes["transport error"]
		for _, l := range r.stats.latencies {
			if l > drillCallerTimeout {
				slowest++
			}
		}
		knownBad = append(knownBad, r.stats.knownBad...)
	}
	check("every request answered within its deadline, no reset", transport == 0 && slowest == 0,
		fmt.Sprintf("%d transport errors, %d over %v", transport, slowest, drillCallerTimeout))
	var dups []string
	for id, n := range returned {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	check("no ID returned twice", len(dups) == 0, fmt.Sprint(dups))
	accounted := map[string]bool{}
	for id := range returned {
		accounted[id] = true
	}
	for _, id := range known {
		accounted[id] = true
	}
	for _, l := range h.logs.lines(t, "audit") {
		for _, key := range []string{"ids", "refusedIds"} {
			list, _ := l[key].([]any)
			for _, id := range list {
				accounted[id.(string)] = true
			}
		}
	}
	var lost []string
	for _, id := range h.sim.Minted() {
		if !accounted[id] {
			lost = append(lost, id)
		}
	}
	check("every ID upstream minted was returned or is in the audit log", len(lost) == 0, fmt.Sprintf("%d lost: %v", len(lost), lost[:min(len(lost), 5)]))
	check("validates of known IDs answered valid throughout, never an error", len(knownBad) == 0, fmt.Sprint(knownBad[:min(len(knownBad), 5)]))
	var states []string // seen at phase ends, and in the last 20 transitions
	for _, r := range rows {
		states = append(states, r.state)
	}
	for _, tr := range h.do("GET", "/health", "").body["transitions"].([]any) {
		states = append(states, tr.(map[string]any)["to"].(string))
	}
	hd := h.do("GET", "/health", "")
	final := hd.body["connection"].(map[string]any)["state"]
	check("lifecycle went through RECONNECTING and FAILED and ended CONNECTED",
		slices.Contains(states, "RECONNECTING") && slices.Contains(states, "FAILED") && final == "CONNECTED" && hd.status == 200,
		fmt.Sprintf("states seen %v, final %v, /health %d", states, final, hd.status))

	// Goroutines and memory settle back once the load stops (fasthttp's idle
	// workers and connections wind down on their own timers).
	settled := false
	var after runtime.MemStats
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		runtime.GC()
		runtime.ReadMemStats(&after)
		if runtime.NumGoroutine() <= baseGoroutines+10 && after.HeapAlloc <= base.HeapAlloc+32<<20 {
			settled = true
			break
		}
	}
	check("goroutines and heap back to baseline", settled,
		fmt.Sprintf("goroutines %d (baseline %d), heap %d MiB (baseline %d MiB)", runtime.NumGoroutine(), baseGoroutines, after.HeapAlloc>>20, base.HeapAlloc>>20))
	t.Log(b.String())
}
