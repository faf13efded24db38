package sidecar_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// What the fault drills share (drill_test.go: faults the simulator plays
// at the HTTP level; netdrill_test.go: faults of the network, below it):
// the load, the accounting of every answer and every minted ID, and the
// invariants checked at the end.

// drillLate is an answer that came too late: ten times the longest
// deadline of the drill's requests (upstream.mintTimeout, 1s), so that an
// answer held past its deadline shows, and a machine ten times slower
// does not. Callers wait drillCallerTimeout, longer still: a request they
// gave up on counts as a transport error.
const (
	drillLate          = 10 * time.Second
	drillCallerTimeout = 30 * time.Second
)

// drillStats is one phase's figures.
type drillStats struct {
	mu       sync.Mutex
	requests int
	codes    map[string]int // "200", "503 CIRCUIT_OPEN", "transport error", …
	latency  [latencyBuckets]int
	late     int      // answers slower than drillLate
	knownBad []string // validates of known IDs not answered HIT or STALE
}

func newDrillStats() *drillStats { return &drillStats{codes: map[string]int{}} }

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
	// unsure holds the idempotency keys of mints whose answer was lost:
	// an audit line says upstream may have minted under the key
	// (mayHaveMinted, or a late answer's outcome "unknown").
	unsure map[string]bool
}

func newDrillLedger() *drillLedger {
	return &drillLedger{minted: map[string]sim.Mint{}, returned: map[string]int{}, audited: map[string]bool{},
		byKey: map[string][]string{}, unsure: map[string]bool{}}
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
		MayHaveMinted  bool     `json:"mayHaveMinted"`
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
	if a.MayHaveMinted || a.Outcome == "unknown" {
		l.unsure[a.IdempotencyKey] = true
	}
}

// tapAudit makes the ledger read h's audit lines as they are written.
func (l *drillLedger) tapAudit(h *harness) {
	h.logs.mu.Lock()
	h.logs.tap = l.auditLine
	h.logs.mu.Unlock()
}

// drillLoad is the drills' load: workers calling one sidecar with a mix of
// validates of known and unknown IDs, mints and batches, until stopped.
// Each answer is counted in the phase under way; each ID handed out goes
// to the ledger.
type drillLoad struct {
	base   string
	known  []string // IDs minted before the load: always valid
	ledger *drillLedger
	client *http.Client
	phase  atomic.Pointer[drillStats]
	stop   atomic.Bool
	wg     sync.WaitGroup
	seq    atomic.Int64
}

// startDrillLoad starts workers callers against the sidecar at base.
func startDrillLoad(base string, known []string, ledger *drillLedger, workers int) *drillLoad {
	l := &drillLoad{base: base, known: known, ledger: ledger,
		client: &http.Client{Timeout: drillCallerTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	l.phase.Store(newDrillStats())
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go l.worker(w)
	}
	return l
}

// next begins a phase: answers from now on are counted in the stats it
// returns.
func (l *drillLoad) next() *drillStats {
	st := newDrillStats()
	l.phase.Store(st)
	return st
}

// finish stops the workers and waits for them.
func (l *drillLoad) finish() {
	l.stop.Store(true)
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

func (l *drillLoad) call(st *drillStats, method, path, body, caller string) (int, map[string]any, http.Header) {
	req, _ := http.NewRequest(method, l.base+path, strings.NewReader(body))
	req.Header.Set("X-Client-ID", caller)
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	began := time.Now()
	resp, err := l.client.Do(req)
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

func (l *drillLoad) worker(w int) {
	defer l.wg.Done()
	caller := fmt.Sprintf("app-%d", w%3)
	for !l.stop.Load() {
		st := l.phase.Load()
		switch n := l.seq.Add(1); n % 10 {
		case 0, 1, 2, 3: // a known ID: always answered valid, from the cache (HIT, STALE) or upstream (MISS)
			id := l.known[int(n)%len(l.known)]
			code, m, hdr := l.call(st, "GET", "/v1/validate/"+id, "", caller)
			if code != 200 || m["valid"] != true || hdr.Get("X-Cache") == "LOCAL" {
				st.mu.Lock()
				st.knownBad = append(st.knownBad, fmt.Sprintf("%d %s %v", code, hdr.Get("X-Cache"), m))
				st.mu.Unlock()
			}
		case 4, 5: // an unknown, well-formed ID
			l.call(st, "GET", fmt.Sprintf("/v1/validate/CT-Z-ZZZ-%04d-P-26-Z-0", n%10000), "", caller)
		case 6, 7, 8:
			_, m, _ := l.call(st, "POST", "/v1/mint", `{"entity":"EVNT"}`, caller)
			if id, ok := m["chittyId"].(string); ok {
				l.ledger.got(id)
			}
		default:
			_, m, _ := l.call(st, "POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"PLACE"},{"entity":"INFO"}]}`, caller)
			if ids, ok := m["chittyIds"].([]any); ok {
				for _, id := range ids {
					if s, ok := id.(string); ok {
						l.ledger.got(s)
					}
				}
			}
		}
	}
}

// drillRow is one phase of a drill, as its table shows it.
type drillRow struct {
	name  string
	began time.Time
	stats *drillStats
	state string // the lifecycle state at its end
	ready int    // /health's status at its end
}

// drillReport is a drill's table and the verdict of each invariant; t
// fails for each one broken.
type drillReport struct {
	t *testing.T
	b strings.Builder
}

// table writes the rows; with extra set, one more column of that name,
// whose cells cell gives.
func (r *drillReport) table(rows []drillRow, extra string, cell func(drillRow) string) {
	head, rule := "| fault | requests | outcomes | p99 | state at end | /health |", "|---|---|---|---|---|---|"
	if extra != "" {
		head, rule = head+" "+extra+" |", rule+"---|"
	}
	fmt.Fprintf(&r.b, "\n%s\n%s\n", head, rule)
	for _, row := range rows {
		var codes []string
		for c, n := range row.stats.codes {
			codes = append(codes, fmt.Sprintf("%s ×%d", c, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(&r.b, "| %s | %d | %s | %v | %s | %d |", row.name, row.stats.requests, strings.Join(codes, ", "),
			row.stats.p99().Round(time.Millisecond), row.state, row.ready)
		if extra != "" {
			fmt.Fprintf(&r.b, " %s |", cell(row))
		}
		r.b.WriteByte('\n')
	}
}

// check records an invariant's verdict.
func (r *drillReport) check(name string, ok bool, detail string) {
	r.t.Helper()
	mark := "ok"
	if !ok {
		mark = "FAILED: " + detail
		r.t.Errorf("invariant %q: %s", name, detail)
	}
	fmt.Fprintf(&r.b, "- %s: %s\n", name, mark)
}

// drillTotals are a drill's figures for the IDs upstream minted.
type drillTotals struct {
	minted, returned, audited int
	// byKey were minted for a mint whose answer was lost: its audit line
	// says upstream may have minted under its idempotency key.
	byKey int
	lost  int // none of these
}

// checkAnswers checks the invariants of the answers and the IDs: every
// request answered within its deadline, no ID handed out twice, every ID
// upstream minted handed out or in the audit log (known: minted before the
// load), by itself or, when the network lost the answer, by the
// idempotency key of an audit line that says upstream may have minted;
// known IDs always valid.
func (r *drillReport) checkAnswers(rows []drillRow, ledger *drillLedger, known []string) drillTotals {
	r.t.Helper()
	var transport, slowest int
	var knownBad []string
	for _, row := range rows {
		transport += row.stats.codes["transport error"]
		slowest += row.stats.late
		knownBad = append(knownBad, row.stats.knownBad...)
	}
	r.check("every request answered, none held past its deadline, no reset", transport == 0 && slowest == 0,
		fmt.Sprintf("%d transport errors, %d over %v", transport, slowest, drillLate))
	ledger.mu.Lock()
	var dups []string
	for id, n := range ledger.returned {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	r.check("no ID returned twice", len(dups) == 0, fmt.Sprintf("%d: %v", len(dups), dups[:min(len(dups), 10)]))
	var lost []string
	tot := drillTotals{minted: len(ledger.minted)}
	for id, m := range ledger.minted {
		switch {
		case slices.Contains(known, id):
			continue
		case ledger.returned[id] > 0:
			tot.returned++
			continue
		case ledger.audited[id]:
			tot.audited++
			continue
		case ledger.unsure[m.IdempotencyKey]:
			tot.byKey++
			continue
		}
		// Where and how it was lost: the phase it was minted in, and what
		// the audit log says about its idempotency key.
		ph := ""
		for _, row := range rows {
			if !m.Time.Before(row.began) {
				ph = row.name
			}
		}
		lost = append(lost, fmt.Sprintf("%s (phase %q, key %q: audited %v)", id, ph, m.IdempotencyKey, ledger.byKey[m.IdempotencyKey]))
	}
	ledger.mu.Unlock()
	tot.lost = len(lost)
	sort.Strings(lost)
	r.check("every ID upstream minted was returned or is in the audit log", len(lost) == 0, fmt.Sprintf("%d of %d lost: %v", len(lost), tot.minted, lost[:min(len(lost), 10)]))
	r.check("validates of known IDs answered valid throughout, never an error", len(knownBad) == 0, fmt.Sprint(knownBad[:min(len(knownBad), 5)]))
	return tot
}

// forget drops the ledger's records, once checked, so that what is left
// on the heap is the sidecar's.
func (l *drillLedger) forget() {
	l.mu.Lock()
	l.minted, l.returned, l.audited, l.byKey, l.unsure = nil, nil, nil, nil, nil
	l.mu.Unlock()
}

// drillBaseline is the goroutines and heap before a drill's load.
type drillBaseline struct {
	goroutines int
	heap       runtime.MemStats
}

func takeDrillBaseline() drillBaseline {
	runtime.GC()
	var b drillBaseline
	runtime.ReadMemStats(&b.heap)
	b.goroutines = runtime.NumGoroutine()
	return b
}

// checkSettled checks that goroutines and the heap come back to the
// baseline (fasthttp's idle workers and connections wind down on their own
// timers) within 30s, the heap allowed heapSlack more (what the sidecar's
// cache may hold).
func (r *drillReport) checkSettled(base drillBaseline, heapSlack uint64, cacheMB int) {
	r.t.Helper()
	settled := false
	var after runtime.MemStats
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		runtime.GC()
		runtime.ReadMemStats(&after)
		if runtime.NumGoroutine() <= base.goroutines+10 && after.HeapAlloc <= base.heap.HeapAlloc+heapSlack {
			settled = true
			break
		}
	}
	detail := fmt.Sprintf("goroutines %d (baseline %d), heap %d MiB (baseline %d MiB, cache up to %d MiB and its index)",
		runtime.NumGoroutine(), base.goroutines, after.HeapAlloc>>20, base.heap.HeapAlloc>>20, cacheMB)
	if !settled {
		detail += "; " + dumpGoroutines()
	}
	r.check("goroutines and heap back to baseline", settled, detail)
	fmt.Fprintf(&r.b, "  (%s)\n", detail)
}

// dumpGoroutines writes every goroutine's stack to a file that outlives
// the test, and says where: a failing drill prints a few lines, not the
// dump.
func dumpGoroutines() string {
	f, err := os.CreateTemp("", "chittyid-drill-goroutines-*.txt")
	if err != nil {
		return "the goroutine dump could not be written: " + err.Error()
	}
	defer f.Close()
	if err := pprof.Lookup("goroutine").WriteTo(f, 1); err != nil {
		return "the goroutine dump could not be written: " + err.Error()
	}
	return "their stacks are in " + f.Name()
}
