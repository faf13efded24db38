package sidecar_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The fault drill runs in CI with short phases; the long run is
//
//	go test ./sidecar/ -run TestFaultDrill -count=1 -v -timeout 30m -drill.phase=10s -drill.workers=16
var (
	drillPhase   = flag.Duration("drill.phase", 300*time.Millisecond, "how long each fault of the drill lasts")
	drillWorkers = flag.Int("drill.workers", 8, "concurrent callers in the drill")
)

// drillConfig keeps every timeout short, so that faults cycle quickly and
// the breaker and lifecycle go through their states within a phase. The
// late-answer window keeps its production default: with both cores
// saturated, upstream's answers come seconds late.
const drillConfig = `upstream:
  timeout: 300ms
  mintTimeout: 1s
  lateAnswerWindow: 10s
  validateTimeout: 500ms
  retry: {maxAttempts: 3, baseDelay: 10ms, maxDelay: 50ms}
  breaker: {failures: 5, openTimeout: 300ms}
health: {interval: 100ms, timeout: 80ms, failuresToReconnect: 1, maxReconnectAttempts: 3, reconnect: {baseDelay: 20ms, maxDelay: 100ms}}
validate: {ttl: 1s, negativeTtl: 500ms, staleIfError: 1h}
log: {access: false}
cache: {maxSizeMB: 32}
`

// drillCacheMB is the drill's cache.maxSizeMB: how much the heap may grow.
const drillCacheMB = 32

// drillLate is an answer that came too late: ten times the longest
// deadline of the drill's requests (upstream.mintTimeout, 1s), so that an
// answer held past its deadline shows, and a machine ten times slower
// does not. Callers wait drillCallerTimeout, longer still: a request they
// gave up on counts as a transport error.
const (
	drillLate          = 10 * time.Second
	drillCallerTimeout = 30 * time.Second
)

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
	mu       sync.Mutex
	requests int
	codes    map[string]int // "200", "503 CIRCUIT_OPEN", "transport error", …
	latency  [latencyBuckets]int
	late     int      // answers slower than drillLate
	knownBad []string // validates of known IDs not answered HIT or STALE
}

// Latencies are counted in buckets 5% apart, from 10µs up to about 80s: a
// phase of the long drill has hundreds of thousands of requests.
const (
	latencyBuckets = 330
	latencyBase    = 10 * time.Microsecond
	latencyStep    = 1.05
)

func latencyBucket(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	return min(int(math.Log(float64(d)/float64(latencyBase))/math.Log(latencyStep))+1, latencyBuckets-1)
}

func (d *drillStats) add(code string, lat time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	d.codes[code]++
	d.latency[latencyBucket(lat)]++
	if lat > drillLate {
		d.late++
	}
}

// p99 is the upper bound of the bucket that holds the 99th percentile.
func (d *drillStats) p99() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	want, seen := (d.requests*99+99)/100, 0
	for i, n := range d.latency {
		if seen += n; seen >= want && n > 0 {
			return time.Duration(float64(latencyBase) * math.Pow(latencyStep, float64(i)))
		}
	}
	return 0
}

// drillLedger accounts for IDs: what the simulator minted (by request), what
// callers got, and what the audit log recorded, read as it is written.
type drillLedger struct {
	mu       sync.Mutex
	minted   map[string]sim.Mint // ID -> the request that minted it
	returned map[string]int      // ID -> times handed to a caller
	audited  map[string]bool     // IDs in an audit line (ids, refusedIds)
	byKey    map[string][]string // idempotency key -> its audit lines' outcomes
}

func newDrillLedger() *drillLedger {
	return &drillLedger{minted: map[string]sim.Mint{}, returned: map[string]int{}, audited: map[string]bool{}, byKey: map[string][]string{}}
}

func (l *drillLedger) onMint(m sim.Mint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.minted == nil {
		panic("the simulator minted after the drill's load stopped")
	}
	for _, id := range m.IDs {
		l.minted[id] = m
	}
}

func (l *drillLedger) got(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if id != "" {
			l.returned[id]++
		}
	}
}

// auditLine is the log tap: audit lines are kept in l, the rest dropped.
func (l *drillLedger) auditLine(line []byte) {
	if !bytes.Contains(line, []byte(`"type":"audit"`)) {
		return
	}
	var a struct {
		Outcome        string   `json:"outcome"`
		IdempotencyKey string   `json:"idempotencyKey"`
		IDs            []string `json:"ids"`
		RefusedIDs     []string `json:"refusedIds"`
	}
	if err := json.Unmarshal(line, &a); err != nil {
		panic(fmt.Sprintf("audit line is not JSON: %v: %q", err, line)) // the drill's invariant cannot be checked
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range append(a.IDs, a.RefusedIDs...) {
		l.audited[id] = true
	}
	l.byKey[a.IdempotencyKey] = append(l.byKey[a.IdempotencyKey], a.Outcome)
}

func TestFaultDrill(t *testing.T) {
	ledger := newDrillLedger()
	h := start(t, sim.Config{OnMint: ledger.onMint}, drillConfig)
	h.logs.mu.Lock()
	h.logs.tap = ledger.auditLine
	h.logs.mu.Unlock()
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
		phase atomic.Pointer[drillStats]
		stop  atomic.Bool
		wg    sync.WaitGroup
		seq   atomic.Int64
	)
	record := ledger.got
	call := func(st *drillStats, method, path, body, caller string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(method, h.base+path, strings.NewReader(body))
		req.Header.Set("X-Client-ID", caller)
		if method == "POST" {
			req.Header.Set("Content-Type", "application/json")
		}
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
		began time.Time
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
		began := time.Now()
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
		rows = append(rows, row{p.name, began, st, state, hd.status})
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
		slowest += r.stats.late
		knownBad = append(knownBad, r.stats.knownBad...)
	}
	check("every request answered, none held past its deadline, no reset", transport == 0 && slowest == 0,
		fmt.Sprintf("%d transport errors, %d over %v", transport, slowest, drillLate))
	ledger.mu.Lock()
	var dups []string
	for id, n := range ledger.returned {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	check("no ID returned twice", len(dups) == 0, fmt.Sprintf("%d: %v", len(dups), dups[:min(len(dups), 10)]))
	var lost []string
	for id, m := range ledger.minted {
		if ledger.returned[id] > 0 || ledger.audited[id] || slices.Contains(known, id) {
			continue
		}
		// Where and how it was lost: the phase it was minted in, and what
		// the audit log says about its idempotency key.
		ph := ""
		for _, r := range rows {
			if !m.Time.Before(r.began) {
				ph = r.name
			}
		}
		lost = append(lost, fmt.Sprintf("%s (phase %q, key %q: audited %v)", id, ph, m.IdempotencyKey, ledger.byKey[m.IdempotencyKey]))
	}
	ledger.mu.Unlock()
	sort.Strings(lost)
	check("every ID upstream minted was returned or is in the audit log", len(lost) == 0, fmt.Sprintf("%d of %d lost: %v", len(lost), len(ledger.minted), lost[:min(len(lost), 10)]))
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
	// workers and connections wind down on their own timers). The drill's own
	// records go first, and the simulator forgets what it minted: what is
	// left is the sidecar's, whose cache may have grown up to its size.
	ledger.mu.Lock()
	ledger.minted, ledger.returned, ledger.audited, ledger.byKey = nil, nil, nil, nil
	ledger.mu.Unlock()
	rows = nil
	h.sim.Reset()
	settled := false
	var after runtime.MemStats
	// The cache may have filled: its entries (drillCacheMB) and bigcache's
	// index maps over them (up to about half as much again).
	const heapSlack = (drillCacheMB*3/2 + 16) << 20
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		runtime.GC()
		runtime.ReadMemStats(&after)
		if runtime.NumGoroutine() <= baseGoroutines+10 && after.HeapAlloc <= base.HeapAlloc+heapSlack {
			settled = true
			break
		}
	}
	detail := fmt.Sprintf("goroutines %d (baseline %d), heap %d MiB (baseline %d MiB, cache up to %d MiB and its index)",
		runtime.NumGoroutine(), baseGoroutines, after.HeapAlloc>>20, base.HeapAlloc>>20, drillCacheMB)
	if !settled {
		var g strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&g, 1)
		detail += "\n" + testout.Cut(t, "goroutines.txt", g.String(), nil)
	}
	check("goroutines and heap back to baseline", settled, detail)
	fmt.Fprintf(&b, "  (%s)\n", detail)
	t.Log(b.String())
}
