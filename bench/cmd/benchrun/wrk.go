package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// script writes lua/NAME.lua with the report code appended into the work
// directory and returns its path. runWrk adds the connection count.
func (b *bench) script(name string) (string, error) {
	body, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		return "", fmt.Errorf("reading script %s: %w", name, err)
	}
	report, err := luaFiles.ReadFile("lua/report.lua")
	if err != nil {
		return "", fmt.Errorf("reading the report script: %w", err)
	}
	path := filepath.Join(b.work, "conf", name+".lua")
	if err := os.WriteFile(path, append(append(body, '\n'), report...), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// load is one wrk run.
type load struct {
	label  string // for the log
	url    string // base URL of the server under test
	script string
	args   []string // script arguments
	conns  int
	dur    time.Duration
	procs  []*proc // the server under test (and what it calls), for CPU per request
}

// wrkResult is what one wrk run measured. Latencies are in microseconds.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUs int64   `json:"duration_us"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // answers other than 2xx and 3xx
	Timeout    int64   `json:"timeout"`
	Mean       float64 `json:"mean"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p999"`
	Max        float64 `json:"max"`
	WrkP99     float64 `json:"wrk_p99"`  // wrk's own p99, with its coordinated-omission correction
	RawOK      int     `json:"raw_ok"`   // 1: the latencies are the recorded ones (see report.lua)
	Uncached   int64   `json:"uncached"` // mixed.lua only

	RPS float64  `json:"-"`
	CPU cpuShare `json:"-"`
	// CPUPerReq is the CPU time the server's processes used per request, in
	// microseconds: unlike req/s it hardly moves when other processes take
	// the core away.
	CPUPerReq float64 `json:"-"`
	Attempts  int     `json:"-"` // runs made to get this one (the quietest of them)
}

// errors is the number of failed requests of any kind.
func (r wrkResult) errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

// Noise control: other users of the machine (a parallel `go test -race`)
// take CPU from the server under test or from wrk. Before a measured run
// the machine must be quiet for a second (or quietWait passes); a run during
// which other processes used more than noisyPct of a core is repeated up to
// noisyRetries times, and the quietest attempt is kept.
// The time spent waiting and repeating is capped by noiseBudget per run of
// the benchmark, so a busy machine cannot stretch it without bound.
const (
	quietPct     = 5.0
	quietWait    = 30 * time.Second
	noisyPct     = 10.0
	noisyRetries = 2
)

// overBudget reports whether waiting for quiet and repeating noisy runs
// has used up --noise-budget.
func (b *bench) overBudget() bool { return b.noiseSpent >= b.opt.noiseBudget }

// measure is runWrk with noise control. mk builds each attempt's load;
// after (if not nil) sees every attempt.
func (b *bench) measure(ctx context.Context, mk func() load, after func(wrkResult)) (wrkResult, error) {
	var best wrkResult
	for attempt := range noisyRetries + 1 {
		if err := b.waitQuiet(ctx); err != nil {
			return best, err
		}
		l := mk()
		r, err := b.runWrk(ctx, l)
		if err != nil {
			return r, err
		}
		if after != nil {
			after(r)
		}
		if attempt == 0 || r.CPU.noise() < best.CPU.noise() {
			best = r
		}
		best.Attempts = attempt + 1
		if r.CPU.noise() <= noisyPct || attempt == noisyRetries {
			break
		}
		if b.overBudget() {
			b.noisyKept++
			break
		}
		b.noiseSpent += l.dur
		b.logf("  %s: other processes used %.0f%% of a core during the run; again", l.label, r.CPU.noise())
	}
	return best, nil
}

// waitQuiet waits until both cores were less than quietPct busy for a
// second, or quietWait passes. The servers are idle between runs, so any
// load is someone else's.
func (b *bench) waitQuiet(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(quietWait)
	defer func() {
		if d := time.Since(start) - time.Second; d > 0 {
			b.noiseSpent += d
		}
	}()
	for {
		a, err := b.sampleCPU()
		if err != nil {
			return err
		}
		if err := pause(ctx, time.Second); err != nil {
			return err
		}
		z, err := b.sampleCPU()
		if err != nil {
			return err
		}
		sh := cpuBetween(a, z, 0)
		if sh.ServerBusy < quietPct && sh.LoadBusy < quietPct {
			return nil
		}
		if time.Now().After(deadline) || b.overBudget() {
			b.noisyStarts++
			return nil
		}
	}
}

// runWrk runs wrk pinned to loadCore, one thread, and measures what else
// ran on both cores meanwhile.
func (b *bench) runWrk(ctx context.Context, l load) (wrkResult, error) {
	secs := int((l.dur + time.Second - 1) / time.Second)
	script, err := withConns(l.script, l.conns)
	if err != nil {
		return wrkResult{}, err
	}
	argv := []string{"-c", strconv.Itoa(loadCore), "wrk", "-t1", "-c" + strconv.Itoa(l.conns),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "10s", "-s", script, l.url}
	if len(l.args) > 0 {
		argv = append(append(argv, "--"), l.args...)
	}
	cmd := exec.CommandContext(ctx, "taskset", argv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	before, err := b.sampleCPU()
	if err != nil {
		return wrkResult{}, err
	}
	t0 := procsTicks(l.procs)
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s%s", l.label, err, out.String(), errOut.String())
	}
	after, err := b.sampleCPU()
	if err != nil {
		return wrkResult{}, err
	}
	r, err := parseWrk(out.Bytes())
	if err != nil {
		return r, fmt.Errorf("wrk %s: %w\n%s", l.label, err, out.String())
	}
	r.CPU = cpuBetween(before, after, rusageTicks(cmd.ProcessState))
	if r.Requests > 0 && len(l.procs) > 0 {
		r.CPUPerReq = float64(procsTicks(l.procs)-t0) * (1e6 / clockTicks) / float64(r.Requests)
	}
	return r, nil
}

func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), "WRKJSON "); ok {
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return r, fmt.Errorf("parsing the report line: %w", err)
			}
			if r.DurationUs > 0 {
				r.RPS = float64(r.Requests) / (float64(r.DurationUs) / 1e6)
			}
			return r, nil
		}
	}
	return r, fmt.Errorf("no report line in the output")
}

// rusageTicks is the CPU time of an exited process in clock ticks.
func rusageTicks(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	us := ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
	return us / (1e6 / clockTicks)
}

// withConns writes a copy of script that tells report.lua the connection
// count (wrk does not expose it to Lua).
func withConns(script string, conns int) (string, error) {
	path := strings.TrimSuffix(script, ".lua") + ".c" + strconv.Itoa(conns) + ".lua"
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	body, err := os.ReadFile(script)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", script, err)
	}
	head := fmt.Sprintf("report_conns = %d\n", conns)
	if err := os.WriteFile(path, append([]byte(head), body...), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}
