package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// maxDevFleet caps dev --fleet: a fleet to try by hand, not to load-test.
const maxDevFleet = 16

// devFleetPlan is what dev --fleet needs from its flags, checked before
// anything starts.
type devFleetPlan struct {
	bin   string   // redis-server's path
	addrs []string // the sidecars' listen addresses
}

// planDevFleet checks --fleet n, --redis-server and --listen for dev --fleet.
func planDevFleet(n int, redisBin, listen string) (devFleetPlan, error) {
	if n < 0 {
		return devFleetPlan{}, usageErr("--fleet must be >= 0, got %d", n)
	}
	if n > maxDevFleet {
		return devFleetPlan{}, usageErr("--fleet: at most %d sidecars, got %d", maxDevFleet, n)
	}
	bin, err := exec.LookPath(redisBin)
	if err != nil {
		return devFleetPlan{}, &exitError{2, fmt.Errorf("dev --fleet needs redis-server, and %q is not an executable on PATH (%v): install it (Debian or Ubuntu: apt-get install redis-server; macOS: brew install redis) or name it with --redis-server", redisBin, err)}
	}
	addrs, err := fleetListenAddrs(listen, n)
	if err != nil {
		return devFleetPlan{}, usageErr("--listen: %v", err)
	}
	return devFleetPlan{bin: bin, addrs: addrs}, nil
}

// devFleet is dev --fleet: len(plan.addrs) sidecars in front of the one
// simulator s, sharing a redis-server that it starts on a free loopback
// port without persistence and stops at exit (docs/fleet.md). Sidecar i
// listens on --listen's port + i (every one on a free port when that port
// is 0).
func devFleet(ctx context.Context, plan devFleetPlan, s *sim.Sim, sf simFlags, pki *devPKI, jaeger *devJaeger, stdout, stderr io.Writer) error {
	r, err := startDevRedis(ctx, plan.bin)
	if err != nil {
		return err
	}
	defer r.stop()
	stderr = sidecar.SyncWriter(stderr)
	ds, err := newDevFleet(plan.addrs, s, sf, pki, r.Addr(), jaeger.config(), stderr)
	if err != nil {
		return err
	}
	urls := make([]string, len(ds))
	for i, d := range ds {
		urls[i] = d.url()
	}
	ran := make(chan error, 1)
	warm, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	go func() {
		ran <- runDevFleet(ctx, ds)
		cancel()
	}()
	minted, mintErr := warmUp(warm, urls[0], urls...)
	printDevFleet(stdout, urls, r.Addr(), s, sf, minted, mintErr)
	if pki != nil {
		pki.print(stdout)
	}
	jaeger.print(stdout)
	return <-ran
}

// fleetListenAddrs returns n listen addresses from listen: its port, then
// the next ones; port 0 for every one if listen's is 0.
func fleetListenAddrs(listen string, n int) ([]string, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port+n-1 > 65535 {
		return nil, fmt.Errorf("%q: need %d ports from its port on", listen, n)
	}
	addrs := make([]string, n)
	for i := range addrs {
		q := 0
		if port != 0 {
			q = port + i
		}
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(q))
	}
	return addrs, nil
}

// newDevFleet builds the sidecars and opens their listeners; on error it
// releases whatever it made.
func newDevFleet(addrs []string, s *sim.Sim, sf simFlags, pki *devPKI, redisAddr, tracing string, stderr io.Writer) (ds []*devSidecar, err error) {
	defer func() {
		if err != nil {
			for _, d := range ds {
				_ = d.Close()
				_ = d.ln.Close()
			}
		}
	}()
	defaultGC(os.LookupEnv)
	for i, addr := range addrs {
		text := append(devConfig(addr, s.URL(), sf, pki), fmt.Sprintf("fleet:\n  redis: {addrs: [%q]}\n", redisAddr)...)
		text = append(text, tracing...)
		d, err := newDevSidecar(text, sidecar.Options{}, stderr, "sidecar", i+1)
		if err != nil {
			return ds, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// runDevFleet runs every sidecar until ctx ends or one of them fails, then
// stops them all and waits for them.
func runDevFleet(ctx context.Context, ds []*devSidecar) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(ds))
	for _, d := range ds {
		go func() { errs <- d.Run(ctx, d.ln) }()
	}
	var first error
	for range ds {
		if err := <-errs; err != nil && first == nil {
			first = fmt.Errorf("a sidecar of the dev fleet stopped: %w", err)
			cancel()
		}
	}
	return first
}

// printDevFleet prints the fleet's addresses and what to try: the ID
// minted through sidecar 1, validated at the last one (X-Cache: HIT,
// X-Cache-Tier: fleet; its /health has the fleet's state and counters).
func printDevFleet(w io.Writer, urls []string, redisAddr string, s *sim.Sim, sf simFlags, minted string, mintErr error) {
	fmt.Fprintf(w, "chittyid-sidecar dev mode: a fleet of %d sidecars sharing one Redis\n", len(urls))
	for i, u := range urls {
		fmt.Fprintf(w, "  sidecar %d:          %s  (apps: serviceUrl %s/v1)\n", i+1, u, u)
	}
	fmt.Fprintf(w, "  redis:              %s  (redis-server, no persistence; stopped at exit)\n", redisAddr)
	printSim(w, s, sf.dialect, sf.format)
	printTry(w, urls[0], urls[len(urls)-1], minted, mintErr, s)
	fmt.Fprint(w, "\nCtrl-C stops them all and Redis.\n")
}

// devRedis is the redis-server dev --fleet runs: its own process on a
// free loopback port, without persistence, in a temporary directory.
type devRedis struct {
	*redisproc.Process
	dir string
}

// startDevRedis starts redis-server and waits until it is ready (10s at
// most, or until ctx ends).
func startDevRedis(ctx context.Context, bin string) (_ *devRedis, err error) {
	dir, err := os.MkdirTemp("", "chittyid-dev-redis-")
	if err != nil {
		return nil, fmt.Errorf("making a directory for redis-server: %w", err)
	}
	for range 3 { // another process may take the free port first
		var port int
		if port, err = redisproc.FreePort(0); err != nil {
			break
		}
		var p *redisproc.Process
		if p, err = redisproc.Start(ctx, redisproc.Options{Bin: bin, Port: port, Dir: dir}); err == nil {
			return &devRedis{Process: p, dir: dir}, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, err
}

// stop ends redis-server and removes its directory.
func (r *devRedis) stop() {
	r.Stop()
	_ = os.RemoveAll(r.dir)
}
