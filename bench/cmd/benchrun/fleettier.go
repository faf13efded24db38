package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// (f) The fleet tier: sidecars sharing verdicts through a redis-server
// (docs/fleet.md). Not to be confused with fleet.go, the set of
// servers the other scenarios share.

// Targets of (f).
const (
	targetFleetPerID     = 1.00 // upstream validates per unique ID, with the fleet tier
	targetNewcomerShare  = 99.0 // % of a new sidecar's first pass answered without upstream
	targetFleetHitAddUs  = 250  // a fleet hit's p50 over a local hit's
	targetStopSlackMs    = 5    // misses with Redis stopped: within fleet.timeout + this, at p99
	targetSkippedAddUs   = 50   // misses once the tier is skipped, p50 over a sidecar without the tier
	fleetSidecars        = 4
	benchFleetTimeout    = 25 * time.Millisecond // the default fleet.timeout
	fleetStopSamples     = 750                   // IDs nobody has seen for the Redis stop: 150 before, 2 × 300 during
	fleetSkippedMinIndex = 20                    // misses with Redis stopped from this one on: the tier is skipped by then
)

// scenarioFResult is (f).
type scenarioFResult struct {
	IDs      int
	Sidecars int
	// Upstream validates for IDs validated through every sidecar, with
	// and without the fleet tier, and the answers by X-Cache (and tier).
	FleetValidates, LocalValidates int64
	FleetAnswers                   map[string]int
	FleetDuration, LocalDuration   time.Duration
	// FleetCalls sums the four sidecars' /health fleet.stats after that
	// pass: what made an ID reach upstream more than once (a Redis call
	// that failed or missed fleet.timeout, the tier skipped after it, a
	// lock taken over or a peer's fetch that failed).
	FleetCalls fleetCalls
	// A fifth sidecar's first pass over the IDs (sequential, one
	// connection): upstream validates, answers; then its second pass.
	NewcomerValidates int64
	NewcomerAnswers   map[string]int
	// Latency in µs of the newcomer's fleet hits (first pass) and local
	// hits (second pass), one connection.
	FleetHit, LocalHit latencies
	// Redis SIGSTOPped, sequential requests alternating locally cached
	// IDs and IDs no sidecar has seen, against the same before the stop,
	// and misses of a sidecar without the fleet tier.
	BaseLocal, StopLocal       latencies
	BaseMiss, StopMiss         latencies // StopMiss: every miss while Redis was stopped
	SkippedMiss, NoFleetMiss   latencies // misses once the tier was skipped; a sidecar without the tier
	StopState                  string    // the newcomer's fleet state at the end of the stop
	StopErrors, NewcomerErrors int
}

// latencies summarises request times in µs.
type latencies struct {
	N             int
	P50, P99, Max float64
}

func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 { return float64(s[min(int(q*float64(len(s))), len(s)-1)].Nanoseconds()) / 1e3 }
	return latencies{N: len(s), P50: at(0.5), P99: at(0.99), Max: float64(s[len(s)-1].Nanoseconds()) / 1e3}
}

// scenarioF: four sidecars with the fleet tier validate the same IDs
// (upstream validates per ID, against four without it); a fifth started
// afterwards validates them all from the fleet tier (share without
// upstream, and a fleet hit's latency over a local hit's); then Redis is
// SIGSTOPped under sequential load.
func (b *bench) scenarioF(ctx context.Context) error {
	res := &b.res.F
	res.IDs, res.Sidecars = b.plan.fleetIDs, fleetSidecars
	redisAddr, redis, err := b.startRedis(ctx)
	if err != nil {
		return err
	}
	sim, err := b.startSim(ctx, "sim-fleet", 0)
	if err != nil {
		return err
	}
	b.logf("(f) minting %d IDs at the simulator", res.IDs+fleetStopSamples)
	all, err := mintMany(ctx, "http://"+sim.addr, b.token, res.IDs+fleetStopSamples, 1000, 2)
	if err != nil {
		return err
	}
	ids, spare := all[:res.IDs], all[res.IDs:]

	fleetCfg := fmt.Sprintf("fleet:\n  redis: {addrs: [%q]}\n", redisAddr)
	var withTier, without []*sidecarProc
	for i := range fleetSidecars {
		sc, err := b.startFleetSidecar(ctx, fmt.Sprintf("sidecar-fleet-%d", i+1), sim, fleetCfg)
		if err != nil {
			return err
		}
		withTier = append(withTier, sc)
		sc, err = b.startFleetSidecar(ctx, fmt.Sprintf("sidecar-nofleet-%d", i+1), sim, "")
		if err != nil {
			return err
		}
		without = append(without, sc)
	}

	b.logf("(f) %d IDs through each of %d sidecars with the fleet tier", res.IDs, fleetSidecars)
	if res.FleetValidates, res.FleetAnswers, res.FleetDuration, err = b.throughEvery(ctx, sim, withTier, ids); err != nil {
		return err
	}
	b.logf("  %d upstream validates (%.2f per ID) in %s; answers %s", res.FleetValidates, float64(res.FleetValidates)/float64(res.IDs),
		res.FleetDuration.Round(time.Millisecond), fmtCounts(res.FleetAnswers))
	for _, sc := range withTier {
		c, err := fleetStats(ctx, sc.addr)
		if err != nil {
			return err
		}
		res.FleetCalls.add(c)
	}
	b.logf("  fleet tier calls: %s", res.FleetCalls)
	b.logf("(f) the same through %d sidecars without it", fleetSidecars)
	if res.LocalValidates, _, res.LocalDuration, err = b.throughEvery(ctx, sim, without, ids); err != nil {
		return err
	}
	b.logf("  %d upstream validates (%.2f per ID) in %s", res.LocalValidates, float64(res.LocalValidates)/float64(res.IDs), res.LocalDuration.Round(time.Millisecond))
	for _, sc := range without[1:] { // one stays: misses without the tier, below
		sc.p.stop()
	}

	newcomer, err := b.startFleetSidecar(ctx, "sidecar-fleet-newcomer", sim, fleetCfg)
	if err != nil {
		return err
	}
	b.logf("(f) a fifth sidecar's first pass over the %d IDs, then its second, one connection", res.IDs)
	c := oneConn()
	s0, err := sim.stats(ctx)
	if err != nil {
		return err
	}
	first, err := sequential(ctx, c, visits(newcomer.addr, ids))
	if err != nil {
		return err
	}
	s1, err := sim.stats(ctx)
	if err != nil {
		return err
	}
	second, err := sequential(ctx, c, visits(newcomer.addr, ids))
	if err != nil {
		return err
	}
	res.NewcomerValidates = s1.Validate - s0.Validate
	res.NewcomerAnswers = map[string]int{}
	var fleetHits, localHits []time.Duration
	for _, a := range first {
		res.NewcomerAnswers[a.tier]++
		res.NewcomerErrors += a.failed()
		if a.tier == "HIT fleet" {
			fleetHits = append(fleetHits, a.d)
		}
	}
	for _, a := range second {
		res.NewcomerErrors += a.failed()
		if a.tier == "HIT local" {
			localHits = append(localHits, a.d)
		}
	}
	res.FleetHit, res.LocalHit = summarize(fleetHits), summarize(localHits)
	b.logf("  first pass: %d upstream validates, answers %s; fleet hit p50 %.0f µs, local hit p50 %.0f µs",
		res.NewcomerValidates, fmtCounts(res.NewcomerAnswers), res.FleetHit.P50, res.LocalHit.P50)

	return b.fleetStop(ctx, c, redis, newcomer, without[0], ids, spare)
}

// fleetStop measures the newcomer with Redis up, then SIGSTOPped:
// alternately an ID it has cached and one nobody has seen, each followed,
// while Redis is stopped, by an ID nobody has seen on a sidecar without
// the fleet tier, for reference at the same moments.
func (b *bench) fleetStop(ctx context.Context, c *http.Client, redis *proc, newcomer, noFleet *sidecarProc, cached, spare []string) error {
	res := &b.res.F
	n := len(spare) / 5
	var base, stop []visit
	for i := range n {
		base = append(base, visit{newcomer.addr, cached[(i*7919)%len(cached)]}, visit{newcomer.addr, spare[i]})
	}
	for i := range 2 * n {
		stop = append(stop, visit{newcomer.addr, cached[(i*104729)%len(cached)]}, visit{newcomer.addr, spare[n+2*i]}, visit{noFleet.addr, spare[n+2*i+1]})
	}
	before, err := sequential(ctx, c, base)
	if err != nil {
		return err
	}
	b.logf("(f) Redis SIGSTOPped: %d sequential validates on the fifth sidecar, half of IDs nobody has seen, and %d on one without the tier", 4*n, 2*n)
	if err := syscall.Kill(redis.pid(), syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stopping redis-server: %w", err)
	}
	stopped, err := sequential(ctx, c, stop)
	res.StopState = fleetState(ctx, newcomer.addr)
	if cerr := syscall.Kill(redis.pid(), syscall.SIGCONT); cerr != nil && err == nil {
		err = fmt.Errorf("resuming redis-server: %w", cerr)
	}
	if err != nil {
		return err
	}
	var nf, bl, bm, sl, sm, sk []time.Duration
	for i, a := range before {
		if i%2 == 0 {
			bl = append(bl, a.d)
		} else {
			bm = append(bm, a.d)
		}
	}
	for i, a := range stopped {
		res.StopErrors += a.failed()
		switch i % 3 {
		case 0:
			sl = append(sl, a.d)
		case 1:
			sm = append(sm, a.d)
			if i/3 >= fleetSkippedMinIndex {
				sk = append(sk, a.d)
			}
		case 2:
			nf = append(nf, a.d)
		}
	}
	res.NoFleetMiss, res.BaseLocal, res.BaseMiss = summarize(nf), summarize(bl), summarize(bm)
	res.StopLocal, res.StopMiss, res.SkippedMiss = summarize(sl), summarize(sm), summarize(sk)
	b.logf("  local hits p50/p99 %.0f/%.0f µs (before %.0f/%.0f); misses p99 %.0f µs, max %.0f µs (before: p99 %.0f µs); once skipped p50 %.0f µs, without the tier %.0f µs; %d errors; tier %s",
		res.StopLocal.P50, res.StopLocal.P99, res.BaseLocal.P50, res.BaseLocal.P99, res.StopMiss.P99, res.StopMiss.Max, res.BaseMiss.P99,
		res.SkippedMiss.P50, res.NoFleetMiss.P50, res.StopErrors, res.StopState)
	return nil
}

// startRedis runs redis-server pinned to the server core on a free port,
// without persistence, and waits until it answers PING.
func (b *bench) startRedis(ctx context.Context) (string, *proc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("(f) needs redis-server (bench/run installs it): %w", err)
	}
	addr, err := freePort()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(b.work, "data", "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("making %s: %w", dir, err)
	}
	p, err := b.start("redis", serverCore, bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return "", nil, fmt.Errorf("redis-server exited during start (see logs/redis.log)")
		}
		if pingRedis(addr) == nil {
			return addr, p, nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("redis-server not answering on %s after 20s", addr)
}

// pingRedis sends PING in RESP and expects +PONG.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// startFleetSidecar starts a sidecar with the bench config plus extra
// (the fleet section, or nothing) and, with a fleet section, waits until
// its tier is up.
func (b *bench) startFleetSidecar(ctx context.Context, name string, sim *simProc, extra string) (*sidecarProc, error) {
	tokenFile := filepath.Join(b.work, "conf", "token")
	if err := os.WriteFile(tokenFile, []byte(b.token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing the token file: %w", err)
	}
	sc, err := b.startSidecarConfig(ctx, b.sidecarBin, name, sidecarConfig("%s", sim.addr, tokenFile, 256)+extra)
	if err != nil || extra == "" {
		return sc, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if fleetState(ctx, sc.addr) == "up" {
			return sc, nil
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: the fleet tier is not up after 20s (see logs/%s.log)", name, name)
}

// fleetCalls are the counters of /health fleet.stats that explain an
// upstream validate beyond the first for an ID.
type fleetCalls struct {
	Errors       int64 `json:"errors"`
	Skipped      int64 `json:"skipped"`
	Takeovers    int64 `json:"takeovers"`
	PeerFailures int64 `json:"peerFailures"`
}

func (c *fleetCalls) add(o fleetCalls) {
	c.Errors += o.Errors
	c.Skipped += o.Skipped
	c.Takeovers += o.Takeovers
	c.PeerFailures += o.PeerFailures
}

func (c fleetCalls) String() string {
	return fmt.Sprintf("%d failed, %d skipped, %d locks taken over, %d peer fetches failed", c.Errors, c.Skipped, c.Takeovers, c.PeerFailures)
}

// fleetHealth is the fleet section of the sidecar's /health: the tier's
// state and its call counters (nil while the tier is off).
type fleetHealth struct {
	State string      `json:"state"`
	Stats *fleetCalls `json:"stats"`
}

func readFleetHealth(ctx context.Context, addr string) (fleetHealth, error) {
	var doc struct {
		Fleet fleetHealth `json:"fleet"`
	}
	if _, err := call(ctx, http.MethodGet, "http://"+addr+"/health", "", nil, &doc); err != nil {
		return fleetHealth{}, fmt.Errorf("reading %s's /health: %w", addr, err)
	}
	return doc.Fleet, nil
}

// fleetStats is the sidecar's /health fleet.stats.
func fleetStats(ctx context.Context, addr string) (fleetCalls, error) {
	h, err := readFleetHealth(ctx, addr)
	if err != nil {
		return fleetCalls{}, err
	}
	if h.Stats == nil {
		return fleetCalls{}, fmt.Errorf("%s's /health has no fleet.stats", addr)
	}
	return *h.Stats, nil
}

// fleetState is the sidecar's /health fleet.state, or "" if unknown.
func fleetState(ctx context.Context, addr string) string {
	h, _ := readFleetHealth(ctx, addr)
	return h.State
}

// throughEvery validates every ID through every sidecar, the sidecars at
// once, each in its own random order, 8 requests at a time each; it
// returns the upstream validates, the answers by X-Cache and tier, and
// the time it took.
func (b *bench) throughEvery(ctx context.Context, sim *simProc, scs []*sidecarProc, ids []string) (int64, map[string]int, time.Duration, error) {
	s0, err := sim.stats(ctx)
	if err != nil {
		return 0, nil, 0, err
	}
	var mu sync.Mutex
	answers := map[string]int{}
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for _, sc := range scs {
		order := slices.Clone(ids)
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		g.Go(func() error {
			sg, sctx := errgroup.WithContext(gctx)
			sg.SetLimit(8)
			for _, id := range order {
				sg.Go(func() error {
					h, err := call(sctx, http.MethodGet, "http://"+sc.addr+"/v1/validate/"+id, "", nil, nil)
					if err != nil {
						return err
					}
					mu.Lock()
					answers[tierOf(h)]++
					mu.Unlock()
					return nil
				})
			}
			return sg.Wait()
		})
	}
	if err := g.Wait(); err != nil {
		return 0, nil, 0, err
	}
	took := time.Since(began)
	s1, err := sim.stats(ctx)
	return s1.Validate - s0.Validate, answers, took, err
}

// tierOf is an answer's X-Cache and X-Cache-Tier, e.g. "HIT fleet".
func tierOf(h http.Header) string {
	return strings.TrimSpace(h.Get("X-Cache") + " " + h.Get("X-Cache-Tier"))
}

// oneConn is a client with a single keep-alive connection per host, so
// that sequential requests measure the server, not connection setup.
func oneConn() *http.Client {
	return &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}}
}

// timed is one sequential request: its X-Cache and tier, and time.
type timed struct {
	tier   string
	status int
	valid  bool
	d      time.Duration
}

func (a timed) failed() int {
	if a.status != http.StatusOK || !a.valid {
		return 1
	}
	return 0
}

// visit is one validate of id at the sidecar at addr.
type visit struct{ addr, id string }

// visits are validates of every ID at addr.
func visits(addr string, ids []string) []visit {
	vs := make([]visit, len(ids))
	for i, id := range ids {
		vs[i] = visit{addr, id}
	}
	return vs
}

// sequential sends the validates one after the other on c and times each.
func sequential(ctx context.Context, c *http.Client, vs []visit) ([]timed, error) {
	out := make([]timed, 0, len(vs))
	for _, v := range vs {
		addr, id := v.addr, v.id
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/validate/"+id, nil)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("validating %s on %s: %w", id, addr, err)
		}
		var ans struct {
			Valid bool `json:"valid"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ans)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("decoding the answer for %s: %w", id, err)
		}
		out = append(out, timed{tier: tierOf(resp.Header), status: resp.StatusCode, valid: ans.Valid, d: d})
	}
	return out, nil
}

// fleetTargets adds (f)'s rows to the targets table.
func (w *report) fleetTargets() {
	f := w.r.F
	if f.IDs == 0 || f.FleetAnswers == nil {
		return
	}
	perID := float64(f.FleetValidates) / float64(f.IDs)
	w.f("| (f) upstream validates per unique ID, %d sidecars with the fleet tier = %.2f | %.2f (%.2f without it) | %s |\n",
		f.Sidecars, targetFleetPerID, perID, float64(f.LocalValidates)/float64(f.IDs), passFail(f.FleetValidates == int64(f.IDs)))
	if f.NewcomerAnswers != nil {
		share := 100 * (1 - float64(f.NewcomerValidates)/float64(f.IDs))
		w.f("| (f) a new sidecar's first pass answered without upstream ≥ %.0f %% | %.2f %% | %s |\n", targetNewcomerShare, share,
			passFail(share >= targetNewcomerShare && f.NewcomerErrors == 0))
		add := f.FleetHit.P50 - f.LocalHit.P50
		w.f("| (f) a fleet hit adds ≤ %d µs at p50 over a local hit | %+.0f µs (%.0f vs %.0f µs) | %s |\n", targetFleetHitAddUs, add,
			f.FleetHit.P50, f.LocalHit.P50, passFail(add <= targetFleetHitAddUs))
	}
	if f.StopMiss.N > 0 {
		limit := float64(benchFleetTimeout.Microseconds()) + targetStopSlackMs*1000
		w.f("| (f) Redis stopped: misses within fleet.timeout + %d ms at p99 | p99 %s, max %s (limit %s); %d errors | %s |\n", targetStopSlackMs,
			us(f.StopMiss.P99), us(f.StopMiss.Max), us(limit), f.StopErrors, passFail(f.StopMiss.P99 <= limit && f.StopErrors == 0))
		timeout := float64(benchFleetTimeout.Microseconds())
		w.f("| (f) Redis stopped: local hits unaffected (none waits for Redis: max < fleet.timeout) | p50 %s, p99 %s, max %s (before: %s, %s) | %s |\n",
			us(f.StopLocal.P50), us(f.StopLocal.P99), us(f.StopLocal.Max), us(f.BaseLocal.P50), us(f.BaseLocal.P99), passFail(f.StopLocal.Max < timeout))
		w.f("| (f) Redis stopped: no added latency once the tier is skipped (p50 within %d µs of a sidecar without the tier; max < fleet.timeout) | miss p50 %s vs %s, max %s | %s |\n",
			targetSkippedAddUs, us(f.SkippedMiss.P50), us(f.NoFleetMiss.P50), us(f.SkippedMiss.Max),
			passFail(f.SkippedMiss.P50 <= f.NoFleetMiss.P50+targetSkippedAddUs && f.SkippedMiss.Max < timeout))
	}
}

func (w *report) scenarioF() {
	f := w.r.F
	if f.IDs == 0 || f.FleetAnswers == nil {
		return
	}
	w.f("\n## (f) Fleet tier: %d sidecars sharing verdicts in one redis-server\n\n", f.Sidecars)
	w.f("Sidecars, simulator (latency 0) and Redis on core %d; fleet.timeout %s (the default). ", serverCore, benchFleetTimeout)
	w.f("%d IDs minted at the simulator are validated through every sidecar at once (each in its own random order, 8 at a time).\n\n", f.IDs)
	w.f("| Measure | Value |\n|---|---:|\n")
	w.f("| upstream validates, with the fleet tier | %d (%.2f per ID, %s) |\n", f.FleetValidates, float64(f.FleetValidates)/float64(f.IDs), f.FleetDuration.Round(time.Millisecond))
	w.f("| answers, with the fleet tier | %s |\n", fmtCounts(f.FleetAnswers))
	w.f("| fleet tier calls in that pass (an ID past 1.00 per ID is one of these) | %s |\n", f.FleetCalls)
	w.f("| upstream validates, without it | %d (%.2f per ID, %s) |\n", f.LocalValidates, float64(f.LocalValidates)/float64(f.IDs), f.LocalDuration.Round(time.Millisecond))
	if f.NewcomerAnswers != nil {
		w.f("| a fifth sidecar's first pass: upstream validates | %d of %d (%d failed answers) |\n", f.NewcomerValidates, f.IDs, f.NewcomerErrors)
		w.f("| its answers | %s |\n", fmtCounts(f.NewcomerAnswers))
		w.f("| fleet hit (first pass), one connection: p50 / p99 | %s / %s |\n", us(f.FleetHit.P50), us(f.FleetHit.P99))
		w.f("| local hit (second pass), one connection: p50 / p99 | %s / %s |\n", us(f.LocalHit.P50), us(f.LocalHit.P99))
	}
	if f.StopMiss.N > 0 {
		w.f("| Redis up: local hit p50 / p99; miss p50 / p99 | %s / %s; %s / %s |\n", us(f.BaseLocal.P50), us(f.BaseLocal.P99), us(f.BaseMiss.P50), us(f.BaseMiss.P99))
		w.f("| Redis SIGSTOPped: local hit p50 / p99 (%d) | %s / %s |\n", f.StopLocal.N, us(f.StopLocal.P50), us(f.StopLocal.P99))
		w.f("| Redis SIGSTOPped: miss p50 / p99 / max (%d) | %s / %s / %s |\n", f.StopMiss.N, us(f.StopMiss.P50), us(f.StopMiss.P99), us(f.StopMiss.Max))
		w.f("| … the misses after the first %d (tier %s by the end) p50 / p99 / max | %s / %s / %s |\n", fleetSkippedMinIndex, f.StopState,
			us(f.SkippedMiss.P50), us(f.SkippedMiss.P99), us(f.SkippedMiss.Max))
		w.f("| a sidecar without the fleet tier: miss p50 / p99 | %s / %s |\n", us(f.NoFleetMiss.P50), us(f.NoFleetMiss.P99))
	}
	w.f("\nWith Redis stopped, only the misses sent before the tier is skipped (3 failed calls) wait for fleet.timeout; local hits never touch Redis.\n")
}
