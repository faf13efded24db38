package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"time"
)

// contender is one server a scenario drives.
type contender struct {
	name  string
	url   string
	args  []string // extra script arguments
	procs []*proc  // the server's processes, for its CPU time per request
}

// series is the runs of one contender.
type series struct {
	Name string
	Runs []wrkResult
}

// rounds runs every contender once per round, the order rotating each
// round, each measured run preceded by an unmeasured warm-up run.
func (b *bench) rounds(ctx context.Context, n int, cs []contender, mk func(c contender, d time.Duration) load, after func(wrkResult)) ([]series, error) {
	out := make([]series, len(cs))
	for i, c := range cs {
		out[i].Name = c.name
	}
	for r := range n {
		for k := range cs {
			i := (k + r) % len(cs)
			c := cs[i]
			if b.plan.warm > 0 {
				w, err := b.runWrk(ctx, mk(c, b.plan.warm))
				if err != nil {
					return out, err
				}
				if after != nil {
					after(w)
				}
			}
			res, err := b.measure(ctx, func() load { return mk(c, b.plan.dur) }, after)
			if err != nil {
				return out, err
			}
			b.logf("  round %d %-8s %9.0f req/s  p50 %7.0f µs  p99 %7.0f µs  errors %d  core0 %3.0f%%  foreign %2.0f%%/%2.0f%%  attempts %d",
				r+1, c.name, res.RPS, res.P50, res.P99, res.errors(), res.CPU.ServerBusy, res.CPU.Foreign[0], res.CPU.Foreign[1], res.Attempts)
			out[i].Runs = append(out[i].Runs, res)
		}
	}
	return out, nil
}

// scenarioAResult is (a): cached validate.
type scenarioAResult struct {
	Series            []series
	UpstreamValidates int64 // simulator validates during the runs (want 0)
	SidecarMisses     int64 // sidecar cache misses during the runs (want 0)
}

// scenarioA: cached validate over the working set, sidecar vs nginx vs
// ceiling. The working set is minted through the sidecar (which caches what
// it mints), nginx is warmed by validating each ID once, and both must then
// answer every ID from their cache.
func (b *bench) scenarioA(ctx context.Context, res *scenarioAResult) error {
	f := b.fleet
	idsPath := filepath.Join(b.work, "data", "ids-validate.txt")
	sc, ng := "http://"+f.scV.addr, "http://"+f.ngV
	// A new working set for every pass: verdicts are fresh for
	// validate.ttl (and nginx's proxy_cache_valid), 10 minutes, and a pass
	// must not outlive them.
	b.logf("(a) minting %d IDs through the sidecar", b.plan.workingSet)
	ids, err := mintMany(ctx, sc, "", b.plan.workingSet, 1000, 4)
	if err != nil {
		return err
	}
	if err := writeIDs(idsPath, ids); err != nil {
		return err
	}
	b.idsV = ids
	bases := []string{sc, ng}
	if f.scAlt != nil {
		bases = append(bases, "http://"+f.scAlt.addr)
	}
	if err := b.warm(ctx, b.idsV, 64, bases...); err != nil {
		return err
	}
	script, err := b.script("validate")
	if err != nil {
		return err
	}
	up0, err := f.simV.stats(ctx)
	if err != nil {
		return err
	}
	cs0, err := f.scV.cacheStats(ctx)
	if err != nil {
		return err
	}
	b.logf("(a) cached validate: %d rounds of %s, %d connections", b.plan.roundsA, b.plan.dur, b.plan.connsA)
	cs := []contender{{"sidecar", sc, nil, []*proc{f.scV.p}}, {"nginx", ng, nil, []*proc{f.nginx}},
		{"ceiling", "http://" + f.ceilAddr, nil, []*proc{f.ceiling}}}
	if f.scAlt != nil {
		cs = append(cs, contender{"sidecar-alt", "http://" + f.scAlt.addr, nil, []*proc{f.scAlt.p}})
	}
	res.Series, err = b.rounds(ctx, b.plan.roundsA, cs, func(c contender, d time.Duration) load {
		return load{label: "(a) " + c.name, url: c.url, script: script, args: []string{idsPath}, conns: b.plan.connsA, dur: d, procs: c.procs}
	}, nil)
	if err != nil {
		return err
	}
	up1, err := f.simV.stats(ctx)
	if err != nil {
		return err
	}
	cs1, err := f.scV.cacheStats(ctx)
	if err != nil {
		return err
	}
	res.UpstreamValidates = up1.Validate - up0.Validate
	res.SidecarMisses = cs1.Misses - cs0.Misses
	return nil
}

// warm validates every ID once through each base (nginx then stores what
// it has not), then again, and checks that the second pass was all hits.
func (b *bench) warm(ctx context.Context, ids []string, conc int, bases ...string) error {
	for _, base := range bases {
		if _, err := validateAll(ctx, base, ids, conc); err != nil {
			return fmt.Errorf("warming %s: %w", base, err)
		}
		seen, err := validateAll(ctx, base, ids, 64)
		if err != nil {
			return fmt.Errorf("checking %s: %w", base, err)
		}
		if seen["HIT"] != len(ids) {
			return fmt.Errorf("%s: second pass over %d IDs was not all cache hits: X-Cache %v", base, len(ids), seen)
		}
		b.logf("  %s: all %d IDs cached", base, len(ids))
	}
	return nil
}

// scenarioBResult is (b): mixed validate against a slow upstream.
type scenarioBResult struct {
	Series []series
}

// scenarioB: 70 % cached, 30 % never-seen IDs, upstream latency 180 ms.
func (b *bench) scenarioB(ctx context.Context) error {
	f := b.fleet
	sc, ng := "http://"+f.scB.addr, "http://"+f.ngB
	b.logf("(b) minting %d cached IDs through the sidecar and an uncached pool at the simulator", b.plan.workingSet)
	ids, err := mintMany(ctx, sc, "", b.plan.workingSet, 1000, 4)
	if err != nil {
		return err
	}
	cachedPath := filepath.Join(b.work, "data", "ids-mixed-cached.txt")
	if err := writeIDs(cachedPath, ids); err != nil {
		return err
	}
	// A connection can send at most one uncached request per upstream
	// latency; every run takes fresh IDs after those the last runs used.
	perRun := func(d time.Duration) int {
		return int(math.Ceil(float64(b.plan.connsB)*(d.Seconds()/b.plan.simLatencyB.Seconds()+1))) + 100
	}
	n := b.plan.rounds * 2 * (perRun(b.plan.dur) + perRun(b.plan.warm))
	pool, err := mintMany(ctx, "http://"+f.simB.addr, b.token, n, 10_000, 2)
	if err != nil {
		return err
	}
	poolPath := filepath.Join(b.work, "data", "ids-mixed-pool.txt")
	if err := writeIDs(poolPath, pool); err != nil {
		return err
	}
	if err := b.warm(ctx, ids, 500, sc, ng); err != nil {
		return err
	}
	script, err := b.script("mixed")
	if err != nil {
		return err
	}
	b.logf("(b) mixed validate, upstream latency %s: %d rounds of %s, %d connections", b.plan.simLatencyB, b.plan.rounds, b.plan.dur, b.plan.connsB)
	used := 0
	cs := []contender{{"sidecar", sc, nil, []*proc{f.scB.p}}, {"nginx", ng, nil, []*proc{f.nginx}}}
	b.res.B.Series, err = b.rounds(ctx, b.plan.rounds, cs, func(c contender, d time.Duration) load {
		left := len(pool) - used
		return load{label: "(b) " + c.name, url: c.url, script: script, conns: b.plan.connsB, dur: d, procs: c.procs,
			args: []string{cachedPath, poolPath, fmt.Sprint(used), fmt.Sprint(left)}}
	}, func(r wrkResult) { used += int(r.Uncached) })
	return err
}

// scenarioCResult is (c): mint.
type scenarioCResult struct {
	Latency    []series // one connection
	Throughput []series // connsMint connections
}

// scenarioC: mint through the sidecar vs directly at the simulator
// (latency 0): p50 at one connection, then throughput.
func (b *bench) scenarioC(ctx context.Context) error {
	f := b.fleet
	script, err := b.script("mint")
	if err != nil {
		return err
	}
	cs := []contender{{"sidecar", "http://" + f.scM.addr, nil, []*proc{f.scM.p, f.simM.p}},
		{"direct", "http://" + f.simM.addr, []string{b.token}, []*proc{f.simM.p}}}
	mk := func(conns int) func(c contender, d time.Duration) load {
		return func(c contender, d time.Duration) load {
			return load{label: "(c) " + c.name, url: c.url, script: script, args: c.args, conns: conns, dur: d, procs: c.procs}
		}
	}
	b.logf("(c) mint latency: %d rounds of %s, 1 connection", b.plan.rounds, b.plan.dur)
	if b.res.C.Latency, err = b.rounds(ctx, b.plan.rounds, cs, mk(1), nil); err != nil {
		return err
	}
	b.logf("(c) mint throughput: %d rounds of %s, %d connections", b.plan.rounds, b.plan.dur, b.plan.connsMint)
	b.res.C.Throughput, err = b.rounds(ctx, b.plan.rounds, cs, mk(b.plan.connsMint), nil)
	return err
}

// burstResult is one target of (d).
type burstResult struct {
	Label         string
	UpstreamCalls int64
	Burst         burst
}

// scenarioD: n simultaneous validates of one ID the server has not seen;
// the simulator counts the validates it got.
func (b *bench) scenarioD(ctx context.Context) error {
	f := b.fleet
	targets := []struct {
		label string
		sim   *simProc
		addr  string
	}{
		{"sidecar, upstream latency 0", f.simV, f.scV.addr},
		{fmt.Sprintf("sidecar, upstream latency %s", b.plan.simLatencyB), f.simB, f.scB.addr},
		{"nginx (cache lock), upstream latency 0", f.simV, f.ngV},
		{fmt.Sprintf("nginx (cache lock), upstream latency %s", b.plan.simLatencyB), f.simB, f.ngB},
	}
	b.logf("(d) %d concurrent validates of one uncached ID", b.plan.concurrentReq)
	for _, t := range targets {
		ids, err := mintMany(ctx, "http://"+t.sim.addr, b.token, 1, 1, 1)
		if err != nil {
			return err
		}
		s0, err := t.sim.stats(ctx)
		if err != nil {
			return err
		}
		bu, err := concurrentGet(ctx, t.addr, "/v1/validate/"+ids[0], b.plan.concurrentReq)
		if err != nil {
			return fmt.Errorf("%s: %w", t.label, err)
		}
		s1, err := t.sim.stats(ctx)
		if err != nil {
			return err
		}
		r := burstResult{Label: t.label, UpstreamCalls: s1.Validate - s0.Validate, Burst: bu}
		b.res.D = append(b.res.D, r)
		b.logf("  %s: %d upstream validates; %d of %d answered 200 valid; X-Cache %v; requests sent within %s",
			t.label, r.UpstreamCalls, bu.Valid, b.plan.concurrentReq, bu.XCache, bu.Spread.Round(time.Microsecond))
	}
	return nil
}

// scenarioEResult is (e): memory with a million cached IDs.
type scenarioEResult struct {
	MaxSizeMB        int
	Entries          int64
	Evictions        int64
	CacheBytes       int64
	AfterPopulate    memInfo
	AfterSweep       memInfo
	Sweep            wrkResult
	SweepMisses      int64
	PopulateDuration time.Duration
}

// memMaxSizeMB is cache.maxSizeMB for (e): the valid part (3/4 of it) holds
// a million entries without eviction.
const memMaxSizeMB = 128

// scenarioE: idle RSS of fresh sidecars, then RSS with memIDs cached
// (minted through the sidecar in batches, which caches them), after a GC
// settle and after a validate sweep over them all.
func (b *bench) scenarioE(ctx context.Context) error {
	sim, err := b.startSim(ctx, "sim-memory", 0)
	if err != nil {
		return err
	}
	def, err := b.startSidecar(ctx, "sidecar-idle-default", sim, 64)
	if err != nil {
		return err
	}
	if err := b.recordIdle(ctx, "sidecar (default cache.maxSizeMB 64)", def.p); err != nil {
		return err
	}
	def.p.stop()
	sc, err := b.startSidecar(ctx, "sidecar-memory", sim, memMaxSizeMB)
	if err != nil {
		return err
	}
	if err := b.recordIdle(ctx, fmt.Sprintf("sidecar (cache.maxSizeMB %d)", memMaxSizeMB), sc.p); err != nil {
		return err
	}
	res := &scenarioEResult{MaxSizeMB: memMaxSizeMB}
	b.res.E = res
	b.logf("(e) caching %d IDs (batch mints through the sidecar)", b.plan.memIDs)
	t0 := time.Now()
	ids, err := mintMany(ctx, "http://"+sc.addr, "", b.plan.memIDs, 1000, 4)
	if err != nil {
		return err
	}
	res.PopulateDuration = time.Since(t0)
	st, err := sc.cacheStats(ctx)
	if err != nil {
		return err
	}
	res.Entries, res.Evictions, res.CacheBytes = st.Size, st.Evictions, st.Bytes
	if err := pause(ctx, 3*time.Second); err != nil { // let the GC return what populating left behind
		return err
	}
	if res.AfterPopulate, err = readMem(sc.p.pid()); err != nil {
		return err
	}
	b.logf("  %d entries, %d evictions, RSS %.1f MB", res.Entries, res.Evictions, mb(res.AfterPopulate.RSS))
	return b.sweep(ctx, sc, ids, res)
}

// sweep validates the cached IDs with wrk and reads the RSS again.
func (b *bench) sweep(ctx context.Context, sc *sidecarProc, ids []string, res *scenarioEResult) error {
	path := filepath.Join(b.work, "data", "ids-memory.txt")
	if err := writeIDs(path, ids); err != nil {
		return err
	}
	script, err := b.script("validate")
	if err != nil {
		return err
	}
	st0, err := sc.cacheStats(ctx)
	if err != nil {
		return err
	}
	res.Sweep, err = b.runWrk(ctx, load{label: "(e) sweep", url: "http://" + sc.addr, script: script,
		args: []string{path}, conns: b.plan.connsA, dur: b.plan.dur})
	if err != nil {
		return err
	}
	st1, err := sc.cacheStats(ctx)
	if err != nil {
		return err
	}
	res.SweepMisses = st1.Misses - st0.Misses
	if res.AfterSweep, err = readMem(sc.p.pid()); err != nil {
		return err
	}
	b.logf("  sweep: %.0f req/s over the %d IDs, %d misses; RSS %.1f MB, peak %.1f MB",
		res.Sweep.RPS, len(ids), res.SweepMisses, mb(res.AfterSweep.RSS), mb(res.AfterSweep.HWM))
	return nil
}
