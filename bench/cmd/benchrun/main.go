// Command benchrun is the sidecar's load benchmark (bench/README.md). It builds the
// sidecar and the ceiling server, starts the upstream simulators, the
// sidecars, nginx and the ceiling on loopback with every server pinned to
// core 0, drives them with wrk pinned to core 1, and writes a Markdown report.
// bench/run installs wrk and nginx first and starts it pinned to core 1; see
// bench/README.md for what each scenario measures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Cores: every server under test (and the simulators behind them) runs on
// serverCore, the load generator and this program on loadCore.
const (
	serverCore = 0
	loadCore   = 1
)

// options are the command-line flags.
type options struct {
	quick bool
	rev   string // "" builds the working tree, else a git revision
	out   string
	work  string
	keep  bool
	only  string
	src   string // build the sidecar from this directory
	alt   string // also build this tree and add it to (a) as "sidecar-alt"
	// noiseBudget caps the time spent waiting for a quiet machine and
	// repeating noisy runs.
	noiseBudget time.Duration
}

// plan is how long and how hard each scenario runs.
type plan struct {
	mode          string
	roundsA       int           // interleaved rounds of (a), per pass
	rounds        int           // interleaved rounds of (b) and (c)
	dur, warm     time.Duration // one measured wrk run, and the unmeasured run before it
	connsA        int           // (a) connections
	connsB        int           // (b) connections
	connsMint     int           // (c) throughput connections
	workingSet    int           // (a), (b) cached IDs
	memIDs        int           // (e) cached IDs
	concurrentReq int           // (d)
	repeatA       bool          // run (a) again at the end
	simLatencyB   time.Duration // (b) upstream latency
	fleetIDs      int           // (f) IDs validated through every sidecar
}

func planFor(quick bool) plan {
	p := plan{
		mode: "full", roundsA: 5, rounds: 3, dur: 10 * time.Second, warm: 2 * time.Second,
		connsA: 64, connsB: 100, connsMint: 32, workingSet: 10_000, memIDs: 1_000_000,
		concurrentReq: 1000, repeatA: true, simLatencyB: 180 * time.Millisecond, fleetIDs: 10_000,
	}
	if quick {
		p.mode, p.roundsA, p.dur, p.warm, p.repeatA = "quick", 3, 3*time.Second, time.Second, false
		p.fleetIDs = 2_000
	}
	return p
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "short runs (3 rounds of 3 s), no repeat of (a) at the end")
	flag.StringVar(&o.rev, "rev", "", "build the sidecar from this git revision (git archive) instead of the working tree")
	flag.StringVar(&o.out, "out", "bench/RESULTS.md", "report file")
	flag.StringVar(&o.work, "work", "", "work directory (default: a new one under /tmp)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, configs, wrk output)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios to run (a,b,c,d,t,f,m,e,alloc); default all")
	flag.StringVar(&o.src, "src", "", "build the sidecar from this source tree (e.g. a patched copy) instead of the working tree")
	flag.StringVar(&o.alt, "alt", "", "also build the sidecar from this source tree and run it in (a) as a fourth contender, sidecar-alt (A/B a patch)")
	flag.DurationVar(&o.noiseBudget, "noise-budget", 0, "most time to spend waiting for other processes to go quiet and repeating noisy runs (default 2m30s, 90s with --quick)")
	flag.Parse()
	if o.noiseBudget == 0 {
		o.noiseBudget = 150 * time.Second
		if o.quick {
			o.noiseBudget = 90 * time.Second
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	for _, tool := range []string{"wrk", "nginx", "taskset", "go", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (bench/run installs wrk and nginx): %w", tool, err)
		}
	}
	b, err := newBench(o, planFor(o.quick))
	if err != nil {
		return err
	}
	defer b.cleanup()
	if err := b.build(ctx); err != nil {
		return err
	}
	runErr := b.runScenarios(ctx)
	if runErr != nil {
		b.res.Failures = append(b.res.Failures, runErr.Error())
	}
	b.stopAll()
	if err := b.writeReport(); err != nil {
		return errors.Join(runErr, err)
	}
	b.logf("report written to %s", o.out)
	return runErr
}

// wants reports whether scenario s is selected by --only.
func (o options) wants(s string) bool {
	if o.only == "" {
		return true
	}
	for _, w := range strings.Split(o.only, ",") {
		if strings.TrimSpace(w) == s {
			return true
		}
	}
	return false
}

func (b *bench) runScenarios(ctx context.Context) error {
	if b.opt.wants("a") || b.opt.wants("b") || b.opt.wants("c") || b.opt.wants("d") {
		if err := b.startFleet(ctx); err != nil {
			return fmt.Errorf("starting the servers: %w", err)
		}
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"d", b.scenarioD},
		{"a", func(ctx context.Context) error { return b.scenarioA(ctx, &b.res.A) }},
		{"b", b.scenarioB},
		{"c", b.scenarioC},
		{"t", b.scenarioT},
		{"f", b.scenarioF},
		{"m", b.scenarioM},
	}
	for _, s := range steps {
		if !b.opt.wants(s.name) {
			continue
		}
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("scenario (%s): %w", s.name, err)
		}
	}
	if b.plan.repeatA && b.opt.wants("a") {
		b.res.ARepeat = &scenarioAResult{}
		if err := b.scenarioA(ctx, b.res.ARepeat); err != nil {
			return fmt.Errorf("scenario (a) repeated: %w", err)
		}
	}
	b.stopAll() // (e) and the Go benchmarks get the machine to themselves
	if b.opt.wants("e") {
		if err := b.scenarioE(ctx); err != nil {
			return fmt.Errorf("scenario (e): %w", err)
		}
	}
	if b.opt.wants("alloc") {
		if err := b.goBench(ctx); err != nil {
			return fmt.Errorf("go benchmarks: %w", err)
		}
	}
	return nil
}

// newBench makes the work directory and the token.
func newBench(o options, p plan) (*bench, error) {
	work := o.work
	var err error
	if work == "" {
		if work, err = os.MkdirTemp("", "chittyid-bench-"); err != nil {
			return nil, fmt.Errorf("making the work directory: %w", err)
		}
	}
	// nginx workers run as an unprivileged user and must reach their dirs.
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, fmt.Errorf("opening up the work directory: %w", err)
	}
	for _, d := range []string{"logs", "bin", "conf", "data"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return nil, fmt.Errorf("making %s: %w", d, err)
		}
	}
	b := &bench{opt: o, plan: p, work: work, token: "bench-token-not-secret", started: time.Now()}
	b.res.Plan = p
	return b, nil
}

func (b *bench) logf(format string, a ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, a...))
}

func (b *bench) cleanup() {
	b.stopAll()
	if b.opt.keep || b.opt.work != "" {
		b.logf("work directory kept: %s", b.work)
		return
	}
	_ = os.RemoveAll(b.work)
}
