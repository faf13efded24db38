package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc"
)

// devToken is the token the dev simulator requires and the dev sidecar holds.
const devToken = "dev-token-not-secret"

// noEnv keeps the environment out of dev mode, so it behaves the same everywhere.
func noEnv(string) (string, bool) { return "", false }

// dev runs the simulator and a sidecar pointed at it until ctx ends.
func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	var sf simFlags
	sf.register(fs)
	listen := fs.String("listen", "127.0.0.1:8787", "sidecar address")
	simListen := fs.String("sim-listen", "127.0.0.1:0", "simulator API address (port 0: any free port)")
	simControl := fs.String("sim-control", "127.0.0.1:0", "simulator control address")
	useTLS := fs.Bool("tls", false, "run the pair over TLS: a throwaway CA and certificates in a temporary directory, removed at exit; the simulator requires the sidecar's client certificate")
	fleetN := fs.Int("fleet", 0, "run N sidecars sharing the fleet tier on a redis-server that dev starts on a free loopback port and stops at exit (sidecar i listens on --listen's port + i)")
	redisBin := fs.String("redis-server", "redis-server", "the redis-server binary for --fleet (a name looked up on PATH, or a path)")
	tracing := fs.Bool("tracing", false, "start Jaeger ($"+jaegerproc.EnvBinary+", the one bash .ci/jaeger-tool built, or jaeger on PATH) on free loopback ports, send it the spans of every request that goes upstream and print its UI address; stopped at exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	scfg, err := sf.config(devToken)
	if err != nil {
		return err
	}
	var plan devFleetPlan
	if *fleetN != 0 {
		if plan, err = planDevFleet(*fleetN, *redisBin, *listen); err != nil {
			return err
		}
	}
	var pki *devPKI
	if *useTLS {
		if pki, err = newDevPKI(); err != nil {
			return err
		}
		defer pki.remove()
		scfg.TLS = pki.server
	}
	var jaeger *devJaeger
	if *tracing {
		if jaeger, err = startDevJaeger(ctx, stderr); err != nil {
			return err
		}
		defer jaeger.stop()
	}
	s, err := sim.Start(scfg, *simListen, *simControl)
	if err != nil {
		return fmt.Errorf("starting the simulator: %w", err)
	}
	defer s.Close()
	if *fleetN > 0 {
		if err := devFleet(ctx, plan, s, sf, pki, jaeger, stdout, stderr); err != nil {
			return err
		}
		return s.Close()
	}
	stderr = sidecar.SyncWriter(stderr)
	defaultGC(os.LookupEnv)
	d, err := newDevSidecar(append(devConfig(*listen, s.URL(), sf, pki), jaeger.config()...), sidecar.Options{LogOutput: stderr}, stderr)
	if err != nil {
		return err
	}
	ran := make(chan error, 1)
	warm, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	go func() {
		ran <- d.Run(ctx, d.ln)
		cancel() // a sidecar that stopped answers no warm-up request
	}()
	minted, mintErr := warmUp(warm, d.url(), d.url())
	printDev(stdout, devPrint{base: d.url(), sim: s, dialect: sf.dialect, format: sf.format, minted: minted, mintErr: mintErr})
	if pki != nil {
		pki.print(stdout)
	}
	jaeger.print(stdout)
	if err := <-ran; err != nil {
		return err
	}
	d.log.Info("dev mode stopped cleanly")
	return s.Close()
}

// devSidecar is a sidecar of dev mode with its listener open.
type devSidecar struct {
	*sidecar.Sidecar
	ln  net.Listener
	log *slog.Logger
}

// newDevSidecar parses a dev config, opens its listener and builds the
// sidecar with opts, logging to stderr with logAttrs; on error it releases
// what it made.
func newDevSidecar(text []byte, opts sidecar.Options, stderr io.Writer, logAttrs ...any) (*devSidecar, error) {
	cfg, err := config.Parse(text, noEnv)
	if err != nil {
		return nil, &exitError{2, err}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %q: %w", cfg.Listen, err)
	}
	log, level := newLogger(stderr, cfg.Log)
	opts.Logger, opts.LogLevel, opts.Version = log.With(logAttrs...), level, version
	sc, err := sidecar.New(cfg, opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	return &devSidecar{Sidecar: sc, ln: ln, log: opts.Logger}, nil
}

// url is the sidecar's base URL.
func (d *devSidecar) url() string { return "http://" + d.ln.Addr().String() }

func devConfig(listen, upstreamURL string, sf simFlags, pki *devPKI) []byte {
	tls := ""
	if pki != nil {
		tls = fmt.Sprintf("  tls: {caFile: %q, certFile: %q, keyFile: %q}\n", pki.caFile, pki.certFile, pki.keyFile)
	}
	return fmt.Appendf(nil, `listen: %q
upstream:
  url: %q
  dialect: %q
  token: %q
  timeout: 2s
  mintTimeout: 5s
  validateTimeout: 2s
  breaker: {failures: 5, openTimeout: 5s}
%sformat: %q
log: {level: info, format: text}
shutdown: {drainTimeout: 5s}
`, listen, upstreamURL, sf.dialect, devToken, tls, sf.format)
}

// devPKI is dev --tls's throwaway CA, the simulator's certificate and the
// sidecar's client certificate, in a temporary directory.
type devPKI struct {
	dir                       string
	caFile, certFile, keyFile string // what the sidecar uses
	serverCert                string // the simulator's, for curl
	server                    *tls.Config
}

func newDevPKI() (_ *devPKI, err error) {
	dir, err := os.MkdirTemp("", "chittyid-dev-tls-")
	if err != nil {
		return nil, fmt.Errorf("making a directory for the dev certificates: %w", err)
	}
	p := &devPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem")}
	defer func() {
		if err != nil {
			p.remove()
		}
	}()
	ca, err := sim.NewCA("chittyid-sidecar dev CA (throwaway)")
	if err != nil {
		return nil, err
	}
	// Valid as long as the CA: a dev session may outlast a day.
	server, err := ca.Issue(sim.LeafSpec{Names: []string{"127.0.0.1", "localhost", "::1"}, NotAfter: ca.Cert.NotAfter})
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue(sim.LeafSpec{Names: []string{"chittyid-sidecar dev"}, Client: true, NotAfter: ca.Cert.NotAfter})
	if err != nil {
		return nil, err
	}
	if err := ca.WriteFile(p.caFile); err != nil {
		return nil, err
	}
	if p.serverCert, _, err = server.WriteFiles(dir, "simulator"); err != nil {
		return nil, err
	}
	if p.certFile, p.keyFile, err = client.WriteFiles(dir, "sidecar-client"); err != nil {
		return nil, err
	}
	p.server = server.ServerConfig(ca)
	return p, nil
}

// remove deletes the directory and everything in it.
func (p *devPKI) remove() { _ = os.RemoveAll(p.dir) }

func (p *devPKI) print(w io.Writer) {
	fmt.Fprintf(w, `
TLS: a throwaway CA and certificates in %[1]s (removed at exit):
  %[2]s  the CA (upstream.tls.caFile)
  %[3]s  the simulator's certificate (127.0.0.1, localhost, ::1)
  %[4]s, %[5]s  the sidecar's client certificate (upstream.tls.certFile/keyFile); the simulator requires it
  curl the simulator: curl --cacert %[2]s --cert %[4]s --key %[5]s ...
`, p.dir, p.caFile, p.serverCert, p.certFile, p.keyFile)
}

// devPrint is what dev prints at start.
type devPrint struct {
	base            string // the sidecar's URL
	sim             *sim.Sim
	dialect, format string
	minted          string // the ID warmUp minted, "" if it could not
	mintErr         error
}

func printDev(w io.Writer, p devPrint) {
	fmt.Fprintf(w, "chittyid-sidecar dev mode\n  sidecar:            %[1]s  (apps: serviceUrl %[1]s/v1)\n", p.base)
	printSim(w, p.sim, p.dialect, p.format)
	printTry(w, p.base, p.base, p.minted, p.mintErr, p.sim)
	fmt.Fprint(w, "\nCtrl-C stops both.\n")
}

// printSim prints the simulator's URL, token and control URL: what a
// sidecar of one's own (serve) or curl needs to talk to it.
func printSim(w io.Writer, s *sim.Sim, dialect, format string) {
	fmt.Fprintf(w, `  upstream simulator: %s  (dialect %s, format %s)
  upstream token:     %s  (the simulator's; the sidecar holds it)
  simulator control:  %s  (faults: POST /sim/faults, stats: GET /sim/stats)
`, s.URL(), dialect, format, s.Config().Token, s.ControlURL())
}

// printTry prints commands to try: a validate of the ID dev minted
// through mintBase (asked at validateBase), a mint, /health and a fault.
func printTry(w io.Writer, mintBase, validateBase, minted string, mintErr error, s *sim.Sim) {
	if minted != "" {
		fmt.Fprintf(w, "\nminted %s; try:\n  curl -si %s/v1/validate/%s\n", minted, validateBase, minted)
	} else {
		fmt.Fprintf(w, "\nno ID minted to try (%v); try:\n  curl -si %s/v1/validate/<chittyId from the mint>\n", mintErr, validateBase)
	}
	fmt.Fprintf(w, `  curl -s -X POST %[1]s/v1/mint -H 'Content-Type: application/json' -d '{"entity":"PEO"}'
  curl -s %[2]s/health
  curl -s -X POST %[3]s/sim/faults -d '{"mode":"refuse"}'    (upstream down; '{"mode":"ok"}' ends it)
`, mintBase, validateBase, s.ControlURL())
}
