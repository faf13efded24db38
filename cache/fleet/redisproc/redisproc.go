// Package redisproc runs a redis-server process of its own on a loopback
// port, without persistence: the one `chittyid-sidecar dev --fleet`
// starts, and the ones the tests of the fleet tier and the sidecar start.
// The sidecar itself never starts Redis in production.
package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultReady is the line redis-server logs once it accepts connections.
const DefaultReady = "Ready to accept connections"

// startTimeout bounds how long Start waits for the ready line.
const startTimeout = 10 * time.Second

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Options say how to run redis-server.
type Options struct {
	Bin  string // redis-server's path
	Port int    // the loopback port to listen on
	Dir  string // its working directory (must exist)
	// Conf is a config file given before every flag, if set (a
	// Sentinel's, which must be writable).
	Conf string
	// Args follow the port, bind and persistence flags.
	Args []string
	// Ready is the log line that says it is ready; DefaultReady if empty.
	Ready string
}

// Process is a running redis-server.
type Process struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process is reaped

	mu  sync.Mutex
	log strings.Builder // its output up to the ready line
}

// Start runs redis-server and waits until it logs its ready line, 10s at
// most or until ctx ends; on failure the process is stopped and the error
// carries its output.
func Start(ctx context.Context, o Options) (*Process, error) {
	ready := o.Ready
	if ready == "" {
		ready = DefaultReady
	}
	var args []string
	if o.Conf != "" {
		args = append(args, o.Conf)
	}
	args = append(args, "--port", strconv.Itoa(o.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", o.Dir, "--logfile", "")
	args = append(args, o.Args...)
	cmd := exec.Command(o.Bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.Bin, err)
	}
	p := &Process{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)), exited: make(chan struct{})}
	readyCh := make(chan struct{})
	go p.watch(out, ready, readyCh)
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-readyCh:
		return p, nil
	case <-p.exited:
		err = errors.New("it exited")
	case <-timer.C:
		err = fmt.Errorf("no %q within %s", ready, startTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.Stop()
	return nil, fmt.Errorf("redis-server on port %d did not become ready (%w); its output:\n%s", o.Port, err, p.output())
}

// watch keeps the output up to the ready line, then discards the rest
// until the process closes it, and reaps the process.
func (p *Process) watch(out io.Reader, ready string, readyCh chan<- struct{}) {
	defer close(p.exited)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		p.mu.Lock()
		p.log.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
		if strings.Contains(sc.Text(), ready) {
			close(readyCh)
			break
		}
	}
	_, _ = io.Copy(io.Discard, out)
	_ = p.cmd.Wait()
}

func (p *Process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Addr is host:port to connect to.
func (p *Process) Addr() string { return p.addr }

// Signal sends sig (SIGSTOP, SIGCONT, SIGKILL) to the process.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling redis-server (pid %d): %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// Stop ends the process, resuming it first if it was stopped (SIGTERM,
// SIGKILL after 5s), and waits until it is reaped. It may be called more
// than once.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.exited }

// FreePort returns a loopback port nothing listens on now; with also > 0,
// port+also must be free too (a Cluster node's bus is at port+10000).
// Another process may take it before redis-server does: callers retry.
func FreePort(also int) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if also == 0 {
			return port, nil
		}
		if port+also > 65535 {
			continue
		}
		if l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+also))); err == nil {
			_ = l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("finding a free port: no port p with p+" + strconv.Itoa(also) + " free too")
}
