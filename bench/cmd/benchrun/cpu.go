package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat.
const clockTicks = 100

// cpuSample is a reading of both cores and of the benchmark's processes.
type cpuSample struct {
	cores [2]coreTimes
	ours  [2]int64 // CPU ticks of the benchmark's processes pinned to each core
}

// coreTimes are one core's /proc/stat counters, in ticks.
type coreTimes struct {
	task  int64 // user + nice + system: time spent running tasks
	busy  int64 // task + irq + softirq + steal
	total int64
}

// cpuShare is how busy the cores were during a run, in percent of the run.
type cpuShare struct {
	ServerBusy float64 // core 0: the server under test (and idle neighbours)
	LoadBusy   float64 // core 1: wrk
	// Foreign is CPU used on each core by processes the benchmark did not
	// start (other users of the machine): the noise.
	Foreign [2]float64
}

// sampleCPU reads /proc/stat and the CPU time of every process the
// benchmark started (by process group) and of itself (pinned to loadCore).
func (b *bench) sampleCPU() (cpuSample, error) {
	var s cpuSample
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("reading /proc/stat: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || (f[0] != "cpu0" && f[0] != "cpu1") {
			continue
		}
		var v [8]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq steal
		c := coreTimes{task: v[0] + v[1] + v[2]}
		c.busy = c.task + v[5] + v[6] + v[7]
		c.total = c.busy + v[3] + v[4]
		s.cores[f[0][3]-'0'] = c
	}
	groups := map[int]int{} // pgid -> core
	for _, p := range b.procs {
		groups[p.pid()] = p.core
	}
	for pgid, ticks := range groupTicks(groups) {
		s.ours[groups[pgid]] += ticks
	}
	if self, _, err := procTicks("/proc/self/stat"); err == nil {
		s.ours[loadCore] += self
	}
	return s, nil
}

// groupTicks sums the CPU ticks of every process in each process group.
func groupTicks(groups map[int]int) map[int]int64 {
	out := map[int]int64{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		ticks, pgid, err := procTicks(path)
		if err != nil {
			continue
		}
		if _, ok := groups[pgid]; ok {
			out[pgid] += ticks
		}
	}
	return out
}

// procTicks reads utime+stime and the process group from a /proc stat file.
func procTicks(path string) (ticks int64, pgid int, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed %s", path)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("malformed %s", path)
	}
	pgid, _ = strconv.Atoi(f[2])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, pgid, nil
}

// cpuBetween turns two samples into shares; extraLoad is CPU of processes
// on loadCore that exited in between (wrk).
func cpuBetween(a, b cpuSample, extraLoad int64) cpuShare {
	var sh cpuShare
	for c := range 2 {
		total := b.cores[c].total - a.cores[c].total
		if total <= 0 {
			continue
		}
		ours := b.ours[c] - a.ours[c]
		if c == loadCore {
			ours += extraLoad
		}
		busy := float64(b.cores[c].busy-a.cores[c].busy) / float64(total) * 100
		foreign := float64(b.cores[c].task-a.cores[c].task-ours) / float64(total) * 100
		sh.Foreign[c] = max(foreign, 0)
		if c == serverCore {
			sh.ServerBusy = busy
		} else {
			sh.LoadBusy = busy
		}
	}
	return sh
}

// noise is the larger foreign share of the two cores.
func (c cpuShare) noise() float64 { return max(c.Foreign[0], c.Foreign[1]) }

// procsTicks is the CPU time of the process groups of ps, in ticks.
func procsTicks(ps []*proc) int64 {
	groups := map[int]int{}
	for _, p := range ps {
		groups[p.pid()] = p.core
	}
	var n int64
	for _, t := range groupTicks(groups) {
		n += t
	}
	return n
}
