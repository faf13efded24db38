package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bench is one benchmark run: what it started and what it measured.
type bench struct {
	opt     options
	plan    plan
	work    string
	token   string
	started time.Time

	sidecarBin, ceilingBin, srcDir string
	altBin                         string // --alt build, or ""

	procs []*proc // every process started, for CPU accounting and cleanup
	fleet fleet
	idsV  []string // (a)'s working set, minted anew for every pass

	noisyStarts int           // measured runs started without a quiet second
	noisyKept   int           // noisy runs kept because the noise budget was spent
	noiseSpent  time.Duration // waiting for quiet and repeating noisy runs
	res         results
}

// proc is a process started by the benchmark in its own process group,
// pinned to one core.
type proc struct {
	name string
	core int
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs argv pinned to core, its output in logs/NAME.log.
func (b *bench) start(name string, core int, argv ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(b.work, "logs", name+".log"))
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(core)}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, core: core, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	b.procs = append(b.procs, p)
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// stopAll stops every process still running, newest first.
func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	b.procs = nil
	b.fleet = fleet{}
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// waitHTTP polls url until it answers 200, p exits or 20 s pass.
func waitHTTP(ctx context.Context, p *proc, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited during start (see logs/%s.log)", p.name, p.name)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", p.name, err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s after 20s", p.name, url)
}

// memInfo is a process's resident memory from /proc/PID/status, in bytes.
type memInfo struct {
	RSS, HWM int64
}

func readMem(pid int) (memInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, fmt.Errorf("reading the status of pid %d: %w", pid, err)
	}
	var m memInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "VmHWM:":
			m.HWM = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

// build builds the sidecar (from the working tree or --rev) and the ceiling.
func (b *bench) build(ctx context.Context) error {
	b.srcDir = "."
	if b.opt.src != "" {
		b.srcDir = b.opt.src
	}
	if b.opt.rev != "" {
		b.srcDir = filepath.Join(b.work, "src")
		if err := os.MkdirAll(b.srcDir, 0o755); err != nil {
			return fmt.Errorf("making the source directory: %w", err)
		}
		script := "git archive " + shellQuote(b.opt.rev) + " | tar -x -C " + shellQuote(b.srcDir)
		if out, err := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script).CombinedOutput(); err != nil {
			return fmt.Errorf("extracting %s: %w\n%s", b.opt.rev, err, out)
		}
	}
	b.res.Source = describeSource(ctx, b.opt.rev)
	if b.opt.src != "" {
		b.res.Source = "source tree " + b.opt.src
	}
	b.sidecarBin = filepath.Join(b.work, "bin", "chittyid-sidecar")
	b.ceilingBin = filepath.Join(b.work, "bin", "ceiling")
	b.logf("building the sidecar (%s) and the ceiling", b.res.Source)
	if err := goBuild(ctx, b.srcDir, b.sidecarBin, "./cmd/chittyid-sidecar"); err != nil {
		return err
	}
	if b.opt.alt != "" {
		b.altBin = filepath.Join(b.work, "bin", "chittyid-sidecar-alt")
		b.res.AltSource = "source tree " + b.opt.alt
		if err := goBuild(ctx, b.opt.alt, b.altBin, "./cmd/chittyid-sidecar"); err != nil {
			return err
		}
	}
	return goBuild(ctx, ".", b.ceilingBin, "./bench/cmd/ceiling")
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return nil
}

// describeSource names what was built: the revision and whether the working
// tree had changes.
func describeSource(ctx context.Context, rev string) string {
	name := rev
	if name == "" {
		name = "HEAD"
	}
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", name).Output()
	if err != nil {
		return name
	}
	s := strings.TrimSpace(string(out))
	if rev != "" {
		return "git " + rev + " (" + s + ")"
	}
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		return "working tree at " + s + " with uncommitted changes"
	}
	return "working tree at " + s
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// cleanEnv is the environment without the sidecar's overrides
// (CHITTYID_SERVICE_URL, CHITTY_ID_TOKEN, CHITTYID_SIDECAR_LISTEN), so the
// generated config is what runs.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHITTYID_") && !strings.HasPrefix(kv, "CHITTY_ID_") {
			env = append(env, kv)
		}
	}
	return env
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
