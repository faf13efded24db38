package sidecar_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// Redis failover under load, on the deployments users run the fleet tier
// on, of real redis-server processes: a Redis Cluster of three masters with
// a replica each, and Sentinel (a master, a replica, three sentinels).
// Three sidecars validate and mint through one simulator while a master is
// killed (SIGKILL), the deployment fails over, and the old master comes
// back. CI runs a short count of requests per phase; the figures in
// bench/RESULTS.md come from
//
//	go test ./sidecar/ -run TestFleetFailover -count=1 -v -timeout 30m -failover.requests=20000
var failoverRequests = flag.Int("failover.requests", 300, "requests of the failover tests' load in each phase")

// failoverFleet is the sidecars' config beside the fleet.redis section:
// the fleet mint limit is on, far above the load, so that mints ask Redis
// and must fail open while it fails over.
const failoverFleet = `  timeout: 100ms
  lockTtl: 1s
rateLimit: {mint: {fleetPerMinute: 600000, fleetBurst: 100}}
log: {access: false}
`

// deployment is a Redis deployment under a failover test.
type deployment struct {
	redis string // the fleet.redis section's lines
	// kill kills a master holding keys and returns its server.
	kill func() *redistest.Server
	// failedOver says whether the deployment serves again without the
	// killed master, and what it sees.
	failedOver func() (bool, string)
	// rejoined says whether the old master, started again, is a replica.
	rejoined func(old *redistest.Server) (bool, string)
}

func TestFleetFailoverCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1, time.Second)
	var addrs []string
	for _, a := range c.Addrs() {
		addrs = append(addrs, fmt.Sprintf("%q", a))
	}
	var victim *redistest.Server
	runFailover(t, deployment{
		redis: fmt.Sprintf("  redis: {addrs: [%s]}\n", strings.Join(addrs, ", ")),
		kill: func() *redistest.Server { // the master of the fleet mint limit's key, so that the limit fails too
			for _, n := range c.Nodes {
				// The others answer MOVED.
				if _, err := redistest.Do(n.Addr, "GET", "chittyid:limit:mint"); err == nil {
					victim = n
					break
				}
			}
			if victim == nil {
				t.Fatal("no master serves the fleet mint limit's key")
			}
			victim.Kill()
			return victim
		},
		failedOver: func() (bool, string) { // the victim's replica is a master, and the cluster whole
			var seen []string
			masters, ok := 0, true
			for _, n := range c.Nodes {
				if n == victim {
					continue
				}
				info, err := redistest.Do(n.Addr, "CLUSTER", "INFO")
				role, _ := redistest.Role(n.Addr)
				if role == "master" {
					masters++
				}
				state := redistest.Field(info, "cluster_state")
				ok = ok && err == nil && state == "ok"
				seen = append(seen, fmt.Sprintf("%s %s %s %v", n.Addr, role, state, err))
			}
			return ok && masters == 3, strings.Join(seen, "; ")
		},
		rejoined: func(old *redistest.Server) (bool, string) {
			role, err := redistest.Role(old.Addr)
			if err != nil || role != "slave" {
				return false, fmt.Sprintf("role %q, %v", role, err)
			}
			repl, err := redistest.Do(old.Addr, "INFO", "replication")
			return err == nil && redistest.Field(repl, "master_link_status") == "up", repl
		},
	})
}

func TestFleetFailoverSentinel(t *testing.T) {
	const name = "fleet-master"
	d := redistest.StartSentinels(t, name, time.Second)
	var addrs []string
	for _, a := range d.Addrs() {
		addrs = append(addrs, fmt.Sprintf("%q", a))
	}
	runFailover(t, deployment{
		redis: fmt.Sprintf("  redis: {addrs: [%s], sentinel: {masterName: %s}}\n", strings.Join(addrs, ", "), name),
		kill: func() *redistest.Server {
			d.Master.Kill()
			return d.Master
		},
		failedOver: func() (bool, string) {
			addr, err := d.MasterAddr()
			return err == nil && addr == d.Replica.Addr, fmt.Sprintf("master %s, %v", addr, err)
		},
		rejoined: func(old *redistest.Server) (bool, string) {
			role, err := redistest.Role(old.Addr)
			if err != nil || role != "slave" {
				return false, fmt.Sprintf("role %q, %v", role, err)
			}
			repl, err := redistest.Do(old.Addr, "INFO", "replication")
			return err == nil && redistest.Field(repl, "master_link_status") == "up", repl
		},
	})
}

// failoverSample is one request of the failover load.
type failoverSample struct {
	at     time.Time // when it was sent
	op     string    // "new" (first validates of an ID), "known" (an ID validated or minted before), "mint"
	d      time.Duration
	status int
	tier   string // X-Cache and X-Cache-Tier
	bad    string // why it failed, if it did
}

// failoverLoad validates and mints through the fleet's sidecars from a
// few goroutines, each pausing 5ms between requests: a known ID (minted at
// the simulator, or through a sidecar) on one sidecar, answered valid; a
// new ID (well-formed, never minted, seen by no sidecar) on every sidecar
// in turn, answered invalid, which the fleet tier shares as it does a
// valid verdict; a mint on one sidecar.
type failoverLoad struct {
	f    *testFleet
	stop atomic.Bool
	wg   sync.WaitGroup

	mu      sync.Mutex
	known   []string
	samples []failoverSample
	newIDs  int // new IDs validated
}

func (l *failoverLoad) run(workers int) {
	for w := range workers {
		l.wg.Go(func() {
			for i := w; !l.stop.Load(); i++ {
				switch i % 10 {
				case 0, 1, 2:
					l.validateNew()
				case 3, 4, 5, 6, 7:
					l.mu.Lock()
					id := l.known[rand.IntN(len(l.known))]
					l.mu.Unlock()
					l.validate("known", rand.IntN(len(l.f.sc)), id, true)
				default:
					l.mint(rand.IntN(len(l.f.sc)))
				}
				time.Sleep(5 * time.Millisecond) // a steady load, not a flood
			}
		})
	}
}

// validateNew validates a new ID on every sidecar, in a random order.
func (l *failoverLoad) validateNew() {
	l.mu.Lock()
	n := l.newIDs
	l.newIDs++
	l.mu.Unlock()
	// The simulator mints CT-A… to CT-J…: CT-Z… is never minted.
	id := fmt.Sprintf("CT-Z-%c%c%c-%04d-P-26-Z-9", 'A'+n/260000%26, 'A'+n/10000%26, 'A'+n/1000%10, n%10000)
	for _, k := range rand.Perm(len(l.f.sc)) {
		l.validate("new", k, id, false)
	}
}

func (l *failoverLoad) validate(op string, k int, id string, valid bool) {
	s := failoverSample{at: time.Now(), op: op}
	r, err := l.f.sc[k].try("GET", "/v1/validate/"+id, "")
	s.d, s.status, s.tier = time.Since(s.at), r.status, r.tier()
	switch {
	case err != nil:
		s.bad = err.Error()
	case r.status != 200 || r.body["valid"] != valid:
		s.bad = fmt.Sprintf("%s on sidecar %d: HTTP %d %s, want valid %v", id, k, r.status, r.raw, valid)
	}
	l.add(s)
}

func (l *failoverLoad) mint(k int) {
	s := failoverSample{at: time.Now(), op: "mint"}
	r, err := l.f.sc[k].try("POST", "/v1/mint", `{"entity":"PEO"}`)
	s.d, s.status = time.Since(s.at), r.status
	id, _ := r.body["chittyId"].(string)
	switch {
	case err != nil:
		s.bad = err.Error()
	case r.status != 200 || id == "":
		s.bad = fmt.Sprintf("mint on sidecar %d: HTTP %d %s", k, r.status, r.raw)
	default:
		l.mu.Lock()
		l.known = append(l.known, id)
		l.mu.Unlock()
	}
	l.add(s)
}

func (l *failoverLoad) add(s failoverSample) {
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
}

func (l *failoverLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.samples)
}

// waitCount waits until the load has made n more requests than now.
func (l *failoverLoad) waitCount(t *testing.T, n int) {
	t.Helper()
	from := l.count()
	waitUntilFor(t, fmt.Sprintf("%d requests", n), 10*time.Minute, func() bool { return l.count() >= from+n })
}

func (l *failoverLoad) finish() []failoverSample {
	l.stop.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.samples
}

// waitUntilFor polls cond every 20ms until it holds, or fails the test
// after limit.
func waitUntilFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tierEvents records each sidecar's fleet tier state changes from its log.
type tierEvents struct {
	mu     sync.Mutex
	states map[int][]tierEvent
}

type tierEvent struct {
	at    time.Time
	state string
}

// tap keeps sidecar k's fleet tier state changes and drops every other
// line.
func (e *tierEvents) tap(k int) func([]byte) {
	return func(line []byte) {
		if !bytes.Contains(line, []byte(`"msg":"fleet tier`)) {
			return
		}
		var l struct {
			Time  time.Time `json:"time"`
			State string    `json:"state"`
		}
		if json.Unmarshal(line, &l) != nil || l.State == "" {
			return
		}
		e.mu.Lock()
		e.states[k] = append(e.states[k], tierEvent{l.Time, l.State})
		e.mu.Unlock()
	}
}

// runFailover runs the load on three sidecars sharing dep, kills a master
// and waits until the fleet shares verdicts again, brings the old master
// back, and checks and reports what the load saw.
func runFailover(t *testing.T, dep deployment) {
	s, err := sim.Start(sim.Config{Token: testToken}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := &testFleet{t: t, sim: s}
	events := &tierEvents{states: map[int][]tierEvent{}}
	extra := "fleet:\n" + dep.redis + failoverFleet
	for k := range 3 {
		f.add(extra, func(h *harness) { h.logs.tap = events.tap(k) })
	}
	n := *failoverRequests
	l := &failoverLoad{f: f, known: mintAtSim(t, s, 20)}
	for _, id := range l.known {
		f.sc[0].validate(id).expect(t, "validating a known ID", 200, "")
	}

	type mark struct {
		name  string
		at    time.Time
		stats []fleet.Stats
	}
	var marks []mark
	note := func(name string) {
		m := mark{name: name, at: time.Now()}
		for _, h := range f.sc {
			m.stats = append(m.stats, h.sc.FleetStats())
		}
		marks = append(marks, m)
	}

	l.run(6)
	note("before")
	l.waitCount(t, n)
	note("failover")
	old := dep.kill()
	// Recovered: the deployment serves again, every tier is up, and a new
	// ID validated on one sidecar is a fleet HIT on the others.
	var failedOverAt time.Time
	canaries := 0
	waitUntilFor(t, "the fleet shares verdicts again after the failover", 2*time.Minute, func() bool {
		if failedOverAt.IsZero() {
			if ok, _ := dep.failedOver(); !ok {
				return false
			}
			failedOverAt = time.Now()
		}
		for _, h := range f.sc {
			if h.sc.FleetStatus().State != fleet.StateUp {
				return false
			}
		}
		canaries++
		id := fmt.Sprintf("CT-Y-CAN-%04d-P-26-Y-9", canaries) // never minted
		for k, h := range f.sc {
			r := h.validate(id)
			if r.status != 200 || r.body["valid"] != false {
				t.Errorf("canary %s on sidecar %d: HTTP %d %s", id, k, r.status, r.raw)
			}
			if k > 0 && r.tier() != "HIT fleet" {
				return false
			}
		}
		return true
	})
	note("after")
	l.waitCount(t, n)
	note("old master restarted")
	if err := old.Start(); err != nil {
		t.Fatalf("starting the old master again: %v", err)
	}
	waitUntilFor(t, "the old master is a replica again", 2*time.Minute, func() bool { ok, _ := dep.rejoined(old); return ok })
	note("old master a replica")
	l.waitCount(t, n)
	samples := l.finish()
	note("end")

	// Every request answered: every known ID valid, every new one
	// invalid, every mint through (the fleet mint limit failed open).
	failed, sent := map[string]int{}, map[string]int{}
	var bad []string
	for _, x := range samples {
		sent[x.op]++
		if x.bad != "" {
			failed[x.op]++
			bad = append(bad, x.bad)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d requests failed (%v), the first: %v", len(bad), len(samples), failed, bad[:min(len(bad), 5)])
	}
	// Each tier was skipped (degraded) after the kill, and every tier came
	// back up by itself (the wait above): requests skipped the tier instead
	// of waiting on Redis.
	events.mu.Lock()
	defer events.mu.Unlock()
	kill, recovered := marks[1].at, marks[2].at
	for k := range f.sc {
		skipped := slices.ContainsFunc(events.states[k], func(e tierEvent) bool { return e.state == string(fleet.StateSkipped) && !e.at.Before(kill) })
		if !skipped {
			t.Errorf("sidecar %d's fleet tier was never skipped after the kill: %v", k, events.states[k])
		}
		if n := marks[2].stats[k].Skipped - marks[1].stats[k].Skipped; n == 0 {
			t.Errorf("sidecar %d sent every call to Redis during the failover: none skipped", k)
		}
	}
	// A request that meets a failing call goes on without the tier: at most
	// one failed call (each bounded by fleet.timeout) per request.
	during := 0
	for _, x := range samples {
		if !x.at.Before(kill) && x.at.Before(recovered) {
			during++
		}
	}
	var failedCalls int64
	for k := range f.sc {
		failedCalls += marks[2].stats[k].Errors - marks[1].stats[k].Errors
	}
	if failedCalls > int64(during) {
		t.Errorf("%d failed Redis calls for %d requests during the failover: some request waited on Redis more than once", failedCalls, during)
	}

	// The fleet mint limit failed open: mints went through that it did not
	// allow.
	mints := 0
	for _, x := range samples {
		if x.op == "mint" && x.bad == "" && !x.at.Before(kill) && x.at.Before(recovered) {
			mints++
		}
	}
	var allowed int64
	for k := range f.sc {
		allowed += marks[2].stats[k].MintAllowed - marks[1].stats[k].MintAllowed
	}
	if allowed >= int64(mints) {
		t.Errorf("during the failover the fleet mint limit allowed %d of %d mints: it never failed open", allowed, mints)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n| phase | requests | failed | validate p50 | p99 | max | mint p99 | upstream validates per new ID | Redis calls failed | skipped |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var maxBefore, maxDuring time.Duration
	totalNew, totalMisses := 0, 0
	for i := 0; i+1 < len(marks); i++ {
		from, to := marks[i], marks[i+1]
		var vd, md []time.Duration
		failed, newValidates, newMisses := 0, 0, 0
		for _, x := range samples {
			if x.at.Before(from.at) || !x.at.Before(to.at) {
				continue
			}
			if x.bad != "" {
				failed++
			}
			switch x.op {
			case "mint":
				md = append(md, x.d)
			case "new":
				newValidates++
				if x.tier == "MISS" { // answered by this sidecar's upstream validate
					newMisses++
				}
				fallthrough
			default:
				vd = append(vd, x.d)
			}
		}
		switch i {
		case 0:
			maxBefore = quantile(vd, 1)
		case 1:
			maxDuring = quantile(vd, 1)
		}
		totalNew, totalMisses = totalNew+newValidates/len(f.sc), totalMisses+newMisses
		var errs, skipped int64
		for k := range f.sc {
			errs += to.stats[k].Errors - from.stats[k].Errors
			skipped += to.stats[k].Skipped - from.stats[k].Skipped
		}
		perID := "-"
		if ids := newValidates / len(f.sc); ids > 0 {
			perID = fmt.Sprintf("%.3f (%d for %d)", float64(newMisses)/float64(ids), newMisses, ids)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %v | %v | %v | %v | %s | %d | %d |\n", from.name, len(vd)+len(md), failed,
			quantile(vd, 0.5), quantile(vd, 0.99), quantile(vd, 1), quantile(md, 0.99), perID, errs, skipped)
	}
	fmt.Fprintf(&b, "- %d requests, failed: %d of %d validates of known IDs, %d of %d of new IDs, %d of %d mints\n", len(samples),
		failed["known"], sent["known"], failed["new"], sent["new"], failed["mint"], sent["mint"])
	fmt.Fprintf(&b, "- killed a master at +0s; the deployment failed over at +%.1fs; every tier up and the fleet sharing verdicts again at +%.1fs\n",
		failedOverAt.Sub(kill).Seconds(), recovered.Sub(kill).Seconds())
	fmt.Fprintf(&b, "- %d mints during the failover, %d allowed by the fleet mint limit, the rest through as it failed open\n", mints, allowed)
	fmt.Fprintf(&b, "- slowest validate during the failover %v, before it %v (fleet.timeout 100ms)\n", maxDuring, maxBefore)
	fmt.Fprintf(&b, "- upstream validates per new ID over the whole run: %.3f (%d for %d, three sidecars)\n", float64(totalMisses)/float64(max(totalNew, 1)), totalMisses, totalNew)
	for k := range f.sc {
		var seen []string
		for _, e := range events.states[k] {
			if !e.at.Before(kill) {
				seen = append(seen, fmt.Sprintf("%s at +%.1fs", e.state, e.at.Sub(kill).Seconds()))
			}
		}
		fmt.Fprintf(&b, "- sidecar %d's fleet tier after the kill: %s\n", k, strings.Join(seen, ", "))
	}
	t.Log(b.String())
}

// quantile is the q-quantile of ds (1: the largest), rounded to 0.1ms.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(int(q*float64(len(s))), len(s)-1)].Round(100 * time.Microsecond)
}
