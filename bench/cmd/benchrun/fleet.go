package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// fleet is what scenarios (a) to (d) run against: every server on
// serverCore, started once.
type fleet struct {
	simV, simM, simB *simProc     // upstreams: validate (latency 0), mint (latency 0), mixed (180 ms)
	scV, scM, scB    *sidecarProc // a sidecar in front of each
	scAlt            *sidecarProc // --alt build in front of simV, or nil
	nginx            *proc        // one worker, a server in front of simV and one in front of simB
	ngV, ngB         string       // its addresses
	ceiling          *proc
	ceilAddr         string
}

// simProc is a running upstream simulator.
type simProc struct {
	p            *proc
	addr, ctlURL string // API address; control base URL
}

// sidecarProc is a running sidecar.
type sidecarProc struct {
	p    *proc
	addr string
}

func (b *bench) startFleet(ctx context.Context) error {
	f := &b.fleet
	var err error
	if f.simV, err = b.startSim(ctx, "sim-validate", 0); err != nil {
		return err
	}
	if f.simM, err = b.startSim(ctx, "sim-mint", 0); err != nil {
		return err
	}
	if f.simB, err = b.startSim(ctx, "sim-mixed", b.plan.simLatencyB); err != nil {
		return err
	}
	// A cache far larger than the working set: nothing is evicted.
	if f.scV, err = b.startSidecar(ctx, "sidecar-validate", f.simV, 256); err != nil {
		return err
	}
	if err := b.recordIdle(ctx, "sidecar (bench config, cache.maxSizeMB 256)", f.scV.p); err != nil {
		return err
	}
	if b.altBin != "" {
		if f.scAlt, err = b.startSidecarBin(ctx, b.altBin, "sidecar-alt", f.simV, 256); err != nil {
			return err
		}
	}
	if f.scM, err = b.startSidecar(ctx, "sidecar-mint", f.simM, 256); err != nil {
		return err
	}
	if f.scB, err = b.startSidecar(ctx, "sidecar-mixed", f.simB, 256); err != nil {
		return err
	}
	if err := b.startNginx(ctx); err != nil {
		return err
	}
	if f.ceilAddr, err = freePort(); err != nil {
		return err
	}
	if f.ceiling, err = b.start("ceiling", serverCore, b.ceilingBin, "--listen", f.ceilAddr); err != nil {
		return err
	}
	return waitHTTP(ctx, f.ceiling, "http://"+f.ceilAddr+"/")
}

// startSim runs the simulator with the bench token and extra flags.
func (b *bench) startSim(ctx context.Context, name string, latency time.Duration, extra ...string) (*simProc, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	ctl, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := append([]string{b.sidecarBin, "upstream-sim", "--listen", api, "--control", ctl, "--token", b.token, "--latency", latency.String()}, extra...)
	p, err := b.start(name, serverCore, argv...)
	if err != nil {
		return nil, err
	}
	s := &simProc{p: p, addr: api, ctlURL: "http://" + ctl}
	return s, waitHTTP(ctx, p, s.ctlURL+"/sim/stats")
}

// sidecarConfig is the bench's config: the simulator as upstream with the
// token in a file, a cache of maxSizeMB, log level warn (so no access
// lines), batches of up to 1000 for populating caches. Everything else is
// the default.
func sidecarConfig(listen, simAddr, tokenFile string, maxSizeMB int) string {
	return fmt.Sprintf(`listen: %q
upstream:
  url: "http://%s/v1"
  tokenFile: %q
format: official
cache:
  maxSizeMB: %d
log:
  level: warn
  format: json
limits:
  maxBatch: 1000
`, listen, simAddr, tokenFile, maxSizeMB)
}

func (b *bench) startSidecar(ctx context.Context, name string, sim *simProc, maxSizeMB int) (*sidecarProc, error) {
	return b.startSidecarBin(ctx, b.sidecarBin, name, sim, maxSizeMB)
}

func (b *bench) startSidecarBin(ctx context.Context, bin, name string, sim *simProc, maxSizeMB int) (*sidecarProc, error) {
	tokenFile := filepath.Join(b.work, "conf", "token")
	if err := os.WriteFile(tokenFile, []byte(b.token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing the token file: %w", err)
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(b.work, "conf", name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(sidecarConfig(addr, sim.addr, tokenFile, maxSizeMB)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfgPath, err)
	}
	p, err := b.start(name, serverCore, bin, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	return &sidecarProc{p: p, addr: addr}, waitHTTP(ctx, p, "http://"+addr+"/readyz")
}

// recordIdle notes p's RSS after two quiet seconds.
func (b *bench) recordIdle(ctx context.Context, label string, p *proc) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	m, err := readMem(p.pid())
	if err != nil {
		return err
	}
	b.res.Idle = append(b.res.Idle, idleRSS{Label: label, Mem: m})
	b.logf("idle RSS of %s: %.1f MB", label, mb(m.RSS))
	return nil
}

// nginxConfig is a production-style caching proxy: one worker, proxy_cache
// with cache lock, 10 minutes for 200s, keep-alive to the upstream, no
// access log, open_file_cache for the cache files (one cache for both
// servers, large enough for (a)'s working set, within the descriptor limit
// nofile). Nothing is turned down.
func nginxConfig(work, listenV, listenB, simV, simB, token string, nofile uint64) string {
	server := func(listen, zone, upstream string) string {
		return fmt.Sprintf(`
    server {
        listen %s;
        location = /healthz { return 200 "ok\n"; }
        location /v1/validate/ {
            proxy_pass http://%s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer %s";
            proxy_connect_timeout 2s;
            proxy_read_timeout 5s;
            proxy_cache %s;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            add_header X-Cache $upstream_cache_status;
        }
    }
`, listen, upstream, token, zone)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `worker_processes 1;
user www-data;
pid %[1]s/nginx/nginx.pid;
error_log %[1]s/logs/nginx-error.log warn;
worker_rlimit_nofile %[4]d;
events {
    worker_connections 8192;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    default_type application/json;
    client_body_temp_path %[1]s/nginx/body;
    proxy_temp_path %[1]s/nginx/proxy;
    fastcgi_temp_path %[1]s/nginx/fastcgi;
    uwsgi_temp_path %[1]s/nginx/uwsgi;
    scgi_temp_path %[1]s/nginx/scgi;
    open_file_cache max=12000 inactive=10m;
    open_file_cache_valid 60s;
    proxy_cache_path %[1]s/nginx/cache-validate levels=1:2 keys_zone=validate:32m max_size=1g inactive=60m use_temp_path=off;
    proxy_cache_path %[1]s/nginx/cache-mixed levels=1:2 keys_zone=mixed:32m max_size=1g inactive=60m use_temp_path=off;
    upstream sim_validate {
        server %[2]s;
        keepalive 64;
    }
    upstream sim_mixed {
        server %[3]s;
        keepalive 64;
    }
`, work, simV, simB, nofile)
	sb.WriteString(server(listenV, "validate", "sim_validate"))
	sb.WriteString(server(listenB, "mixed", "sim_mixed"))
	sb.WriteString("}\n")
	return sb.String()
}

func (b *bench) startNginx(ctx context.Context) error {
	f := &b.fleet
	var err error
	if f.ngV, err = freePort(); err != nil {
		return err
	}
	if f.ngB, err = freePort(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(b.work, "nginx"), 0o755); err != nil {
		return fmt.Errorf("making the nginx directory: %w", err)
	}
	conf := filepath.Join(b.work, "conf", "nginx.conf")
	// nginx cannot raise its descriptor limit above the hard limit without
	// CAP_SYS_RESOURCE; ask for what it can get.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the descriptor limit: %w", err)
	}
	if lim.Max < 16384 {
		return fmt.Errorf("the descriptor hard limit is %d; nginx needs 16384 (ulimit -Hn)", lim.Max)
	}
	text := nginxConfig(b.work, f.ngV, f.ngB, f.simV.addr, f.simB.addr, b.token, min(lim.Max, 65536))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", conf, err)
	}
	f.nginx, err = b.start("nginx", serverCore, "nginx", "-p", filepath.Join(b.work, "nginx"),
		"-e", filepath.Join(b.work, "logs", "nginx-error.log"), "-c", conf, "-g", "daemon off;")
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, f.nginx, "http://"+f.ngV+"/healthz"); err != nil {
		return err
	}
	return waitHTTP(ctx, f.nginx, "http://"+f.ngB+"/healthz")
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
