package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	scfg, err := sf.config(devToken)
	if err != nil {
		return err
	}
	s, err := sim.Start(scfg, *simListen, *simControl)
	if err != nil {
		return fmt.Errorf("starting the simulator: %w", err)
	}
	defer s.Close()
	cfg, err := config.Parse(devConfig(*listen, s.URL(), sf), noEnv)
	if err != nil {
		return &exitError{2, err}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %q: %w", cfg.Listen, err)
	}
	stderr = sidecar.SyncWriter(stderr)
	log, level := newLogger(stderr, cfg.Log)
	defaultGC(os.LookupEnv)
	sc, err := sidecar.New(cfg, sidecar.Options{Logger: log, LogLevel: level, LogOutput: stderr, Version: version})
	if err != nil {
		_ = ln.Close()
		return err
	}
	printDev(stdout, "http://"+ln.Addr().String(), s)
	if err := sc.Run(ctx, ln); err != nil {
		return err
	}
	log.Info("dev mode stopped cleanly")
	return s.Close()
}

func devConfig(listen, upstreamURL string, sf simFlags) []byte {
	return fmt.Appendf(nil, `listen: %q
upstream:
  url: %q
  dialect: %q
  token: %q
  timeout: 2s
  mintTimeout: 5s
  validateTimeout: 2s
  breaker: {failures: 5, openTimeout: 5s}
format: %q
log: {level: info, format: text}
shutdown: {drainTimeout: 5s}
`, listen, upstreamURL, sf.dialect, devToken, sf.format)
}

func printDev(w io.Writer, base string, s *sim.Sim) {
	fmt.Fprintf(w, `chittyid-sidecar dev mode
  sidecar:            %[1]s  (apps: serviceUrl %[1]s/v1)
  upstream simulator: %[2]s
  simulator control:  %[3]s  (faults: POST /sim/faults, stats: GET /sim/stats)

try:
  curl -s -X POST %[1]s/v1/mint -H 'Content-Type: application/json' -d '{"entity":"PEO"}'
  curl -s %[1]s/v1/validate/<chittyId from the mint>
  curl -s %[1]s/health

Ctrl-C stops both.
`, base, s.URL(), s.ControlURL())
}
