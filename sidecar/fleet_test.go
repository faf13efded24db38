package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
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
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The fleet tier end to end (docs/fleet.md): sidecars on real loopback
// listeners in front of one simulator, sharing a real redis-server started
// by the test. fleet.timeout is generous (250ms) where a test counts
// upstream calls exactly: a call that times out falls back to upstream,
// and the race detector on a shared machine is slow.

// fleetSection is the fleet section of a test sidecar's config.
func fleetSection(r *redisServer, timeout, lockTTL time.Duration) string {
	return fmt.Sprintf("fleet:\n  redis: {addrs: [%q]}\n  timeout: %s\n  lockTtl: %s\n", r.Addr, timeout, lockTTL)
}

// testFleet is n sidecars in front of one simulator, sharing one Redis.
type testFleet struct {
	t     *testing.T
	redis *redisServer
	sim   *sim.Sim
	sc    []*harness
}

// startFleet starts a Redis, a simulator and n sidecars whose config is
// extra plus the fleet section, and waits until every tier is up.
func startFleet(t *testing.T, n int, extra string, timeout, lockTTL time.Duration) *testFleet {
	t.Helper()
	f := &testFleet{t: t, redis: startRedis(t)}
	s, err := sim.Start(sim.Config{Token: testToken}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.sim = s
	for range n {
		f.add(extra + fleetSection(f.redis, timeout, lockTTL))
	}
	return f
}

// add starts one more sidecar of the fleet with the config extra, and
// waits until its tier is up. edit adjusts its harness before it starts.
func (f *testFleet) add(extra string, edit ...func(*harness)) *harness {
	f.t.Helper()
	h := newHarness(f.t)
	h.sim = f.sim
	for _, e := range edit {
		e(h)
	}
	h.run(configFor(f.sim, sim.Config{}, extra), false, sidecar.Timeouts{})
	h.waitFleet(fleet.StateUp)
	f.sc = append(f.sc, h)
	return h
}

// waitFleet waits (at most 10s) until the sidecar's fleet tier is in state
// want.
func (h *harness) waitFleet(want fleet.State) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sc.WaitFleet(ctx, func(s fleet.Status) bool { return s.State == want }); err != nil {
		h.t.Fatalf("fleet tier %s not reached: %v; /health: %s", want, err, h.do("GET", "/health", "").raw)
	}
}

// tier is the answer's X-Cache and X-Cache-Tier, e.g. "HIT fleet", "MISS".
func (r reply) tier() string {
	return strings.TrimSpace(r.header.Get("X-Cache") + " " + r.header.Get("X-Cache-Tier"))
}

// mintAtSim mints n IDs directly at the simulator (no sidecar, so no fleet
// tier knows them).
func mintAtSim(t *testing.T, s *sim.Sim, n int) []string {
	t.Helper()
	ents := []string{"PEO", "PLACE", "PROP", "EVNT", "AUTH", "INFO", "FACT", "CONTEXT", "ACTOR"}
	var body bytes.Buffer
	body.WriteString(`{"requests":[`)
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"entity":%q}`, ents[i%len(ents)])
	}
	body.WriteString(`]}`)
	req, err := http.NewRequest("POST", s.URL()+"/mint/batch", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		ChittyIDs []string `json:"chittyIds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || len(ans.ChittyIDs) != n {
		t.Fatalf("minting %d IDs at the simulator: HTTP %d, %d IDs, %v", n, resp.StatusCode, len(ans.ChittyIDs), err)
	}
	return ans.ChittyIDs
}

// unknownID is a well-formed official ID the simulator never minted (its
// IDs start CT-A…CT-J).
func unknownID(n int) string { return fmt.Sprintf("CT-Z-QQQ-%04d-P-26-Z-9", n) }

// waitUntil polls cond every 2ms until it holds, or fails the test after
// 10s: for counters, which have no event to wait on.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFleetSharesVerdictsAcrossSidecars: three sidecars, one Redis, one
// simulator. 1,000 IDs validated through all three cost exactly 1,000
// upstream validates (one MISS and two fleet HITs per ID); an ID minted
// through one sidecar validates as a fleet HIT on another with no upstream
// call; 200 concurrent validates of one unknown ID spread over the three
// make one upstream call.
func TestFleetSharesVerdictsAcrossSidecars(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 3, "", 250*time.Millisecond, 2*time.Second)
	ids := mintAtSim(t, f.sim, 1000)
	v0, failed0 := f.sim.Stats().Validate, f.failedCalls()

	var mu sync.Mutex
	tiers := map[string]int{}
	var errs []error
	work := make(chan string)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for id := range work {
				for _, k := range rand.Perm(3) { // each ID through all three, in any order
					r, err := f.sc[k].try("GET", "/v1/validate/"+id, "")
					mu.Lock()
					switch {
					case err != nil:
						errs = append(errs, err)
					case r.status != 200 || r.body["valid"] != true:
						errs = append(errs, fmt.Errorf("%s on sidecar %d: HTTP %d %s", id, k, r.status, r.raw))
					default:
						tiers[r.tier()]++
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d validates failed, the first: %v", len(errs), errs[0])
	}
	got := f.sim.Stats().Validate - v0
	f.checkSharing(t, "1,000 IDs through three sidecars", 1000, got, failed0)
	if tiers["MISS"] != int(got) || tiers["HIT fleet"] != 3000-int(got) || len(tiers) > 2 {
		t.Errorf("answers by X-Cache and X-Cache-Tier: %v, want a MISS for each of the %d upstream validates and HIT fleet for the rest of 3,000", tiers, got)
	}

	// Minted through A: a fleet HIT on B and C, then a local HIT on B; no
	// upstream validate.
	v1, failed1 := f.sim.Stats().Validate, f.failedCalls()
	id := f.sc[0].mustMint("EVNT")
	for i, want := range []string{"HIT fleet", "HIT fleet", "HIT local"} {
		r := f.sc[1+i%2].validate(id)
		if r.status != 200 || r.body["valid"] != true || r.body["entity"] != "EVNT" || (r.tier() != want && (want != "HIT fleet" || r.tier() != "MISS")) {
			t.Errorf("validate %d of the ID minted on A: HTTP %d, %s, %s; want valid EVNT, %s (MISS if a fleet call failed)", i+1, r.status, r.tier(), r.raw, want)
		}
	}
	f.checkSharing(t, "validating the ID minted on A on B and C", 0, f.sim.Stats().Validate-v1, failed1)

	// 200 at once, one unknown ID, spread over the three sidecars.
	v2, failed2 := f.sim.Stats().Validate, f.failedCalls()
	unknown := unknownID(1)
	start := make(chan struct{})
	results := make(chan error, 200)
	for i := range 200 {
		go func() {
			<-start
			r, err := f.sc[i%3].try("GET", "/v1/validate/"+unknown, "")
			if err == nil && (r.status != 200 || r.body["valid"] != false) {
				err = fmt.Errorf("HTTP %d %s", r.status, r.raw)
			}
			results <- err
		}()
	}
	close(start)
	for range 200 {
		if err := <-results; err != nil {
			t.Errorf("concurrent validate of an unknown ID: %v", err)
		}
	}
	f.checkSharing(t, "200 concurrent validates of one ID over three sidecars", 1, f.sim.Stats().Validate-v2, failed2)

	// /health and /metrics say so.
	doc, _ := f.sc[1].do("GET", "/health", "").body["fleet"].(map[string]any)
	stats, _ := doc["stats"].(map[string]any)
	if doc["enabled"] != true || doc["state"] != "up" || stats == nil || stats["hits"].(float64) < 600 {
		t.Errorf("/health fleet of B: %v", doc)
	}
	if m := f.sc[1].do("GET", "/health", "").raw; strings.Contains(m, "password") {
		t.Errorf("/health mentions a password: %s", m)
	}
	resp, err := f.sc[1].http.Get(f.sc[1].base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`chittyid_sidecar_fleet_calls_total{op="get",outcome="hit"}`, `chittyid_sidecar_fleet_state{state="up"} 1`,
		`chittyid_sidecar_fleet_call_duration_seconds_count `} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// failedCalls sums, over the fleet's sidecars, the fleet calls that
// failed, timed out or were skipped, and the locks taken over once
// expired: each may cost one upstream validate more than sharing would
// (the sidecar fetches the verdict itself). On a machine too slow for
// fleet.timeout, calls time out now and then.
func (f *testFleet) failedCalls() int64 {
	var n int64
	for _, h := range f.sc {
		st := h.sc.FleetStats()
		n += st.Errors + st.Skipped + st.Takeovers
	}
	return n
}

// checkSharing fails the test unless the upstream validates (got) are
// the want that sharing verdicts takes, plus at most one for each fleet
// call that failed since failedCalls said before.
func (f *testFleet) checkSharing(t *testing.T, what string, want, got, before int64) {
	t.Helper()
	failed := f.failedCalls() - before
	if got < want || got > want+failed {
		t.Errorf("%s made %d upstream validates, want %d (one per ID), plus at most one per failed fleet call (%d)", what, got, want, failed)
	}
	if failed > 0 {
		t.Logf("%s: %d fleet calls failed (a slow machine), %d upstream validates", what, failed, got)
	}
}

// TestFleetLockHolderKilled: the sidecar holding an ID's lock (a separate
// process, its upstream validate held by the simulator) is killed with
// SIGKILL; the waiters on two other sidecars get their answers once the
// lock expires, one of them taking it over and asking upstream itself.
func TestFleetLockHolderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	const lockTTL = time.Second
	f := startFleet(t, 2, "upstream:\n  validateTimeout: 10s\n", 250*time.Millisecond, lockTTL)
	dir := t.TempDir()
	bin := buildSidecar(t, dir)
	cfgFile := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nupstream: {url: %q, token: %q, validateTimeout: 10s}\nlog: {level: info, access: false}\n%s",
		f.sim.URL(), testToken, fleetSection(f.redis, 250*time.Millisecond, lockTTL))
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	holder := startProc(t, bin, cfgFile)
	holder.waitLog(1, "fleet tier up: Redis answers")

	id := mintAtSim(t, f.sim, 1)[0]
	// The holder's upstream validate hangs; the next ones are answered.
	if err := f.sim.SetFault(sim.Fault{Mode: sim.ModeHang, Routes: []string{"validate"}, Count: 1}); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	sent := time.Now() // the holder takes the lock after this
	go func() {
		resp, err := http.Get("http://" + holder.addr + "/v1/validate/" + id)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the killed holder answered HTTP %d", resp.StatusCode)
		}
		held <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.sim.WaitHung(ctx, 1); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		r   reply
		err error
		at  time.Time
	}
	answers := make(chan answer, 20)
	for i := range 20 {
		go func() {
			r, err := f.sc[i%2].try("GET", "/v1/validate/"+id, "")
			answers <- answer{r, err, time.Now()}
		}()
	}
	for _, h := range f.sc {
		waitUntil(t, "both other sidecars wait for the holder", func() bool { return h.sc.FleetStats().LockWaits > 0 })
	}
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.kill()
	if err := <-held; err == nil {
		t.Error("the holder's caller got no error from a killed sidecar")
	}
	tiers := map[string]int{}
	for range 20 {
		a := <-answers
		if a.err != nil || a.r.status != 200 || a.r.body["valid"] != true {
			t.Fatalf("a waiter's validate: %v, HTTP %d %s", a.err, a.r.status, a.r.raw)
		}
		// The lock was taken after sent, so it expired after sent + lockTtl.
		if early := lockTTL - a.at.Sub(sent); early > 0 {
			t.Errorf("a waiter was answered %v before the dead holder's lock can have expired", early)
		}
		tiers[a.r.tier()]++
	}
	var takeovers int64
	for _, h := range f.sc {
		takeovers += h.sc.FleetStats().Takeovers
	}
	if takeovers != 1 {
		t.Errorf("%d takeovers, want 1", takeovers)
	}
	if got := f.sim.Stats().Validate; got != 2 {
		t.Errorf("%d upstream validates, want 2 (the dead holder's and the takeover's)", got)
	}
	t.Logf("waiters' answers: %v", tiers)
}

// sample is one request of a load, with how long it took.
type sample struct {
	kind   string // "hit" (cached on that sidecar), "new" (no sidecar has it) or "mint"
	d      time.Duration
	status int
	err    error
}

// fleetLoad sends validates to the fleet from a few goroutines until
// stop: IDs each sidecar has cached, and IDs none has seen, alternately.
type fleetLoad struct {
	f      *testFleet
	cached [][]string // per sidecar
	fresh  chan string
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	got    []sample
}

func (f *testFleet) load(cached [][]string, fresh []string) *fleetLoad {
	l := &fleetLoad{f: f, cached: cached, fresh: make(chan string, len(fresh)), stop: make(chan struct{})}
	for _, id := range fresh {
		l.fresh <- id
	}
	return l
}

// run starts the load; collect stops it and returns what it did.
func (l *fleetLoad) run() {
	l.stop = make(chan struct{})
	for g := range 6 {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := (g + i) % len(l.f.sc)
				kind, id := "hit", l.cached[k][rand.IntN(len(l.cached[k]))]
				if i%2 == 1 {
					select {
					case id = <-l.fresh:
						kind = "new"
					default:
					}
				}
				start := time.Now()
				r, err := l.f.sc[k].try("GET", "/v1/validate/"+id, "")
				s := sample{kind: kind, d: time.Since(start), status: r.status, err: err}
				if err == nil && r.body["valid"] != true {
					s.err = fmt.Errorf("%s on sidecar %d: %s", id, k, r.raw)
				}
				l.mu.Lock()
				l.got = append(l.got, s)
				l.mu.Unlock()
			}
		})
	}
}

func (l *fleetLoad) collect() []sample {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.got
	l.got = nil
	return got
}

// count returns how many samples the load has taken so far.
func (l *fleetLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

// slowest returns the longest duration of each kind.
func slowest(ss []sample) map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, s := range ss {
		m[s.kind] = max(m[s.kind], s.d)
	}
	return m
}

// checkSamples fails the test for a failed request, and logs how many of
// each kind there were and the slowest: figures for the reader; the
// fleet's timings are measured in bench/ (scenario f).
func checkSamples(t *testing.T, phase string, ss []sample) {
	t.Helper()
	n := map[string]int{}
	for _, s := range ss {
		n[s.kind]++
		if s.err != nil || s.status != 200 {
			t.Errorf("%s: a %s validate failed: HTTP %d %v", phase, s.kind, s.status, s.err)
		}
	}
	t.Logf("%s: %d requests %v, slowest %v", phase, len(ss), n, slowest(ss))
}

// collectWithin stops the load and returns what it did, or fails the test
// if its requests are not all answered within limit.
func (l *fleetLoad) collectWithin(t *testing.T, limit time.Duration, why string) []sample {
	t.Helper()
	done := make(chan []sample, 1)
	go func() { done <- l.collect() }()
	select {
	case ss := <-done:
		return ss
	case <-time.After(limit):
		t.Fatalf("requests still unanswered %v after the load stopped: %s", limit, why)
		return nil
	}
}

// getCalls is a sidecar's fleet_calls_total{op="get",outcome}.
func (h *harness) getCalls(outcome string) float64 {
	return max(0, value(h.scrape(), "chittyid_sidecar_fleet_calls_total", "op=get", "outcome="+outcome))
}

// TestFleetRedisStoppedAndRestarted: Redis stopped (SIGSTOP) under load
// fails no request, and delays none until Redis comes back: every call to
// Redis has a deadline (fleet.timeout), so the load's requests are all
// answered while Redis is still stopped; once a sidecar's calls have
// failed several times in a row its tier is skipped, and its lookups are
// no longer sent (counted as skipped, not timed out). After SIGCONT the
// tiers come back and share verdicts again. Redis restarted empty under
// load: nothing fails, and the fleet refills. How long the requests take
// meanwhile is measured in bench/ (scenario f), not here.
func TestFleetRedisStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	const timeout = 50 * time.Millisecond
	f := startFleet(t, 3, "", timeout, time.Second)
	ids := mintAtSim(t, f.sim, 1500)
	cached := make([][]string, 3)
	for k, h := range f.sc {
		cached[k] = ids[k*20 : k*20+20]
		for _, id := range cached[k] {
			h.validate(id).expect(t, "warming the local cache", 200, "")
		}
	}
	l := f.load(cached, ids[60:])

	l.run()
	waitUntil(t, "300 requests before the stop", func() bool { return l.count() >= 300 })
	checkSamples(t, "before the stop", l.collect())

	f.redis.Signal(syscall.SIGSTOP)
	l.run()
	for _, h := range f.sc {
		h.waitFleet(fleet.StateSkipped)
	}
	for _, h := range f.sc { // each says so in its log, with why
		h.logs.waitForLine(t, func(l map[string]any) bool {
			msg, _ := l["msg"].(string)
			return l["level"] == "WARN" && strings.HasPrefix(msg, "fleet tier skipped") && l["error"] != nil
		})
	}
	timedOut, skipped := make([]float64, 3), make([]float64, 3)
	for k, h := range f.sc {
		timedOut[k], skipped[k] = h.getCalls("timeout"), h.getCalls("skipped")
	}
	n := l.count()
	waitUntil(t, "200 requests with every tier skipped", func() bool { return l.count() >= n+200 })
	for _, h := range f.sc { // mints too: the fleet tier is only skipped
		h.mint("PEO").expect(t, "a mint while Redis is stopped", 200, "")
	}
	checkSamples(t, "Redis stopped", l.collectWithin(t, time.Minute, "they wait for Redis, which is stopped"))
	for k, h := range f.sc {
		// At most one lookup per request in flight when the tier was
		// skipped (the load has 6 goroutines) times out afterwards.
		if more := h.getCalls("timeout") - timedOut[k]; more > 6 {
			t.Errorf("sidecar %d: %v more fleet lookups timed out with its tier skipped; want them skipped, not sent", k, more)
		}
		if h.getCalls("skipped") == skipped[k] {
			t.Errorf("sidecar %d: no fleet lookup skipped while its tier was", k)
		}
	}

	f.redis.Signal(syscall.SIGCONT)
	for _, h := range f.sc {
		h.waitFleet(fleet.StateUp)
	}
	f.checkShared(unknownID(1))

	l.run()
	waitUntil(t, "100 requests before the restart", func() bool { return l.count() >= 100 })
	f.redis.Restart()
	n = l.count()
	waitUntil(t, "200 requests after the restart", func() bool { return l.count() >= n+200 })
	checkSamples(t, "Redis restarted", l.collect())
	for _, h := range f.sc {
		h.waitFleet(fleet.StateUp)
	}
	if n := f.redis.dbsize(); n == 0 { // it restarted empty
		t.Error("Redis holds no key after 200 validates since its restart: not refilled")
	}
	f.checkShared(unknownID(2))
}

// checkShared validates id, which no sidecar has seen, on the first
// sidecar (an upstream MISS), then on the others: fleet HITs, no upstream
// call; but for a fleet call that failed (checkSharing), after which a
// sidecar asks upstream itself (a MISS).
func (f *testFleet) checkShared(id string) {
	f.t.Helper()
	v0, failed := f.sim.Stats().Validate, f.failedCalls()
	for k, h := range f.sc {
		want := "HIT fleet"
		if k == 0 {
			want = "MISS"
		}
		if r := h.validate(id); r.status != 200 || (r.tier() != want && r.tier() != "MISS") {
			f.t.Errorf("%s on sidecar %d: HTTP %d, %q, want %s: %s", id, k, r.status, r.tier(), want, r.raw)
		}
	}
	f.checkSharing(f.t, "validating "+id+" on every sidecar", 1, f.sim.Stats().Validate-v0, failed)
}

// TestFleetMintLimitAcrossSidecars: rateLimit.mint.fleetPerMinute holds
// for the three sidecars together: of 45 mints sent at once across them,
// no more than the burst plus what the rate refills meanwhile go through
// (one a second), the others get 429 RATE_LIMITED with Retry-After. With
// Redis stopped, the limit falls back to the local ones.
func TestFleetMintLimitAcrossSidecars(t *testing.T) {
	t.Parallel()
	const burst = 5
	f := startFleet(t, 3, fmt.Sprintf("rateLimit: {mint: {fleetPerMinute: 60, fleetBurst: %d}}\nlimits: {maxBatch: %d}\n", burst, burst),
		250*time.Millisecond, time.Second)
	m0, failed0 := f.sim.Stats().Mint, f.failedCalls()
	start := make(chan struct{})
	results := make(chan reply, 45)
	errs := make(chan error, 45)
	for i := range 45 {
		go func() {
			<-start
			r, err := f.sc[i%3].try("POST", "/v1/mint", `{"entity":"PEO"}`)
			if err != nil {
				errs <- err
				return
			}
			results <- r
		}()
	}
	began := time.Now()
	close(start)
	allowed, refused := 0, 0
	for range 45 {
		select {
		case err := <-errs:
			t.Fatal(err)
		case r := <-results:
			switch {
			case r.status == 200:
				allowed++
			case r.status == 429 && r.body["error"] == "RATE_LIMITED" && r.header.Get("Retry-After") != "" && strings.Contains(r.raw, "fleet"):
				refused++
			default:
				t.Errorf("mint: HTTP %d %s", r.status, r.raw)
			}
		}
	}
	elapsed := time.Since(began)
	// A fleet call that failed lets its mint through on the local limits
	// alone (a machine too slow for fleet.timeout): one more each.
	failed := int(f.failedCalls() - failed0)
	if most := burst + int(elapsed/time.Second) + 1 + failed; allowed > most || allowed < burst {
		t.Errorf("%d of 45 mints went through in %v, want between the burst %d and %d (%d fleet calls failed)", allowed, elapsed, burst, most, failed)
	}
	if got := f.sim.Stats().Mint - m0; got != int64(allowed) {
		t.Errorf("%d upstream mints for %d allowed", got, allowed)
	}
	var counted int64
	for _, h := range f.sc {
		counted += h.sc.FleetStats().MintRefused
	}
	if counted != int64(refused) {
		t.Errorf("the tiers counted %d refusals, the answers %d", counted, refused)
	}

	f.redis.Signal(syscall.SIGSTOP)
	var wg sync.WaitGroup
	for _, h := range f.sc {
		wg.Go(func() {
			for range 4 { // the first ones wait fleet.timeout, then the tier is skipped
				if r, err := h.try("POST", "/v1/mint", `{"entity":"PEO"}`); err != nil || r.status != 200 {
					t.Errorf("a mint with Redis stopped and the fleet budget spent: HTTP %d %s %v", r.status, r.raw, err)
				}
			}
		})
	}
	wg.Wait()
}

// TestFleetStaleForNewSidecar: with upstream down, a sidecar started
// after the fleet tier got a verdict, which it never saw, serves it STALE
// from the fleet tier: while it tries upstream (the lock's holder fails),
// and once its lifecycle is FAILED (no upstream call at all).
func TestFleetStaleForNewSidecar(t *testing.T) {
	t.Parallel()
	const extra = "validate: {ttl: 1m, staleIfError: 1h}\nupstream:\n  retry: {maxAttempts: 1}\n" + fastHealth
	f := startFleet(t, 1, extra, 250*time.Millisecond, time.Second)
	id := mintAtSim(t, f.sim, 1)[0]
	if r := f.sc[0].validate(id); r.tier() != "MISS" {
		t.Fatalf("first validate: %s %s", r.tier(), r.raw)
	}
	f.sc[0].fault(sim.Fault{Mode: sim.ModeRefuse})

	// Two minutes later, for the newcomer: past the verdict's TTL.
	late := f.add(extra+fleetSection(f.redis, 250*time.Millisecond, time.Second), func(h *harness) { h.clock.advance(2 * time.Minute) })
	for _, when := range []string{"upstream refused", "lifecycle FAILED"} {
		if when == "lifecycle FAILED" {
			late.waitState(fsm.Failed)
		}
		r := late.validate(id)
		if r.status != 200 || r.tier() != "STALE fleet" || r.body["valid"] != true || r.body["stale"] != true {
			t.Errorf("%s: the newcomer answered HTTP %d %q %s, want a valid STALE from the fleet tier", when, r.status, r.tier(), r.raw)
		}
	}
	if got := f.sim.Stats().Validate; got != 1 {
		t.Errorf("%d upstream validates, want 1", got)
	}
}

// TestFleetReload: a reload applies fleet.timeout at once and names
// fleet.redis.addrs as needing a restart, keeping the running address.
func TestFleetReload(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	h := startFile(t, sim.Config{}, fleetSection(r, 250*time.Millisecond, time.Second))
	h.waitFleet(fleet.StateUp)
	moved := strings.Replace(fleetSection(r, 100*time.Millisecond, time.Second), r.Addr, "127.0.0.1:1", 1)
	st := h.reloadTo(configFor(h.sim, sim.Config{}, moved), 2)
	if !slices.Contains(st.RestartRequired, "fleet.redis.addrs") {
		t.Errorf("restartRequired %v, want fleet.redis.addrs", st.RestartRequired)
	}
	doc, _ := h.do("GET", "/health", "").body["fleet"].(map[string]any)
	if doc["timeout"] != "100ms" || doc["state"] != "up" || fmt.Sprint(doc["addrs"]) != fmt.Sprint([]any{r.Addr}) {
		t.Errorf("/health fleet after the reload: %v; want timeout 100ms, still up on %s", doc, r.Addr)
	}
	id := h.mustMint("PEO")
	if r := h.validate(id); r.tier() != "HIT local" {
		t.Errorf("validate after the reload: %s", r.tier())
	}
}

// TestFleetOff: without fleet.redis.addrs /health says off, and answers
// carry no X-Cache-Tier.
func TestFleetOff(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "")
	doc, _ := h.do("GET", "/health", "").body["fleet"].(map[string]any)
	if doc["enabled"] != false || doc["state"] != "off" {
		t.Errorf("/health fleet without fleet.redis: %v", doc)
	}
	id := h.mustMint("PEO")
	if r := h.validate(id); r.header.Get("X-Cache") != "HIT" || r.header.Values("X-Cache-Tier") != nil {
		t.Errorf("validate without the fleet tier: %v", r.header)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.logs.String(), "fleet tier") {
		t.Errorf("a sidecar without the fleet tier logged about it:\n%s",
			testout.Cut(t, "log.jsonl", h.logs.String(), func(l string) bool { return strings.Contains(l, "fleet tier") }))
	}
}
