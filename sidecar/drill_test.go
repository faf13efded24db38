package sidecar_test

import (
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
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

func TestFaultDrill(t *testing.T) {
	ledger := newDrillLedger()
	h := start(t, sim.Config{OnMint: ledger.onMint}, drillConfig)
	ledger.tapAudit(h)
	h.waitState(fsm.Connected)
	known := make([]string, 20)
	for i := range known {
		known[i] = h.mustMint("PEO")
	}
	base := takeDrillBaseline()

	load := startDrillLoad(h.base, known, ledger, *drillWorkers)
	var rows []drillRow
	for _, p := range drillPhases() {
		st := load.next()
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
		rows = append(rows, drillRow{p.name, began, st, state, hd.status})
		// Readiness follows the degraded policy at every phase end.
		wantReady := state == "CONNECTED" || state == "RECONNECTING"
		if (hd.status == 200) != wantReady {
			t.Errorf("phase %s: state %s but /health %d", p.name, state, hd.status)
		}
	}
	h.fault(sim.Fault{Mode: "ok"})
	h.waitState(fsm.Connected)
	load.finish()

	r := &drillReport{t: t}
	r.table(rows, "", nil)
	r.checkAnswers(rows, ledger, known)
	var states []string // seen at phase ends, and in the last 20 transitions
	for _, row := range rows {
		states = append(states, row.state)
	}
	for _, tr := range h.do("GET", "/health", "").body["transitions"].([]any) {
		states = append(states, tr.(map[string]any)["to"].(string))
	}
	hd := h.do("GET", "/health", "")
	final := hd.body["connection"].(map[string]any)["state"]
	r.check("lifecycle went through RECONNECTING and FAILED and ended CONNECTED",
		slices.Contains(states, "RECONNECTING") && slices.Contains(states, "FAILED") && final == "CONNECTED" && hd.status == 200,
		fmt.Sprintf("states seen %v, final %v, /health %d", states, final, hd.status))

	// Goroutines and memory settle back once the load stops. The drill's
	// own records go first, and the simulator forgets what it minted: what
	// is left is the sidecar's, whose cache may have grown up to its size
	// (its entries, and bigcache's index maps over them, up to about half as
	// much again).
	ledger.forget()
	rows = nil
	h.sim.Reset()
	r.checkSettled(base, (drillCacheMB*3/2+16)<<20, drillCacheMB)
	t.Log(r.b.String())
}
