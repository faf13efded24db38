package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// scenarioTResult is (t): mint over a TLS upstream.
type scenarioTResult struct {
	Latency []series // "sidecar" and "direct", one connection
	// Handshakes and Resumed are the sidecar's TLS handshakes with the
	// simulator during each of its measured runs (from its own metrics),
	// and how many of them resumed a session.
	Handshakes, Resumed []int64
}

// tlsPKI writes a throwaway CA and a certificate for 127.0.0.1 to the
// work directory and returns the paths of the CA, certificate and key.
func (b *bench) tlsPKI() (caFile, certFile, keyFile string, err error) {
	ca, err := sim.NewCA("benchrun throwaway CA")
	if err != nil {
		return "", "", "", err
	}
	leaf, err := ca.Issue(sim.LeafSpec{Names: []string{"127.0.0.1"}})
	if err != nil {
		return "", "", "", err
	}
	conf := filepath.Join(b.work, "conf")
	caFile = filepath.Join(conf, "tls-ca.pem")
	if err := ca.WriteFile(caFile); err != nil {
		return "", "", "", err
	}
	certFile, keyFile, err = leaf.WriteFiles(conf, "tls-sim")
	return caFile, certFile, keyFile, err
}

// scenarioT: mint through the sidecar in front of a simulator serving
// TLS, against minting at that simulator directly over TLS (latency 0),
// one connection: the p50 the sidecar adds, and the handshakes it makes
// while measured (none, once warm: the connection is kept alive).
func (b *bench) scenarioT(ctx context.Context) error {
	caFile, certFile, keyFile, err := b.tlsPKI()
	if err != nil {
		return err
	}
	simT, err := b.startSim(ctx, "sim-mint-tls", 0, "--tls-cert", certFile, "--tls-key", keyFile)
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(b.work, "conf", "token")
	if err := os.WriteFile(tokenFile, []byte(b.token+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the token file: %w", err)
	}
	cfg := strings.Replace(sidecarConfig("%s", simT.addr, tokenFile, 256),
		fmt.Sprintf("url: \"http://%s/v1\"", simT.addr),
		fmt.Sprintf("url: \"https://%s/v1\"\n  tls: {caFile: %q}", simT.addr, caFile), 1)
	scT, err := b.startSidecarConfig(ctx, b.sidecarBin, "sidecar-mint-tls", cfg)
	if err != nil {
		return err
	}
	// Warm: the sidecar's upstream connection and TLS session exist.
	if _, err := mintMany(ctx, "http://"+scT.addr, "", 10, 1, 1); err != nil {
		return err
	}
	script, err := b.script("mint")
	if err != nil {
		return err
	}
	cs := []contender{{"sidecar", "http://" + scT.addr, nil, []*proc{scT.p, simT.p}},
		{"direct", "https://" + simT.addr, []string{b.token}, []*proc{simT.p}}}
	res := &b.res.T
	res.Latency = []series{{Name: "sidecar"}, {Name: "direct"}}
	b.logf("(t) mint over TLS: %d rounds of %s, 1 connection", b.plan.rounds, b.plan.dur)
	for r := range b.plan.rounds {
		for k := range cs {
			i := (k + r) % len(cs)
			c := cs[i]
			mk := func(d string) load {
				return load{label: "(t) " + c.name + d, url: c.url, script: script, args: c.args, conns: 1, dur: b.plan.dur, procs: c.procs}
			}
			if b.plan.warm > 0 {
				w := mk(" warm-up")
				w.dur = b.plan.warm
				if _, err := b.runWrk(ctx, w); err != nil {
					return err
				}
			}
			h0, err := scT.tlsHandshakes(ctx)
			if err != nil {
				return err
			}
			run, err := b.measure(ctx, func() load { return mk("") }, nil)
			if err != nil {
				return err
			}
			h1, err := scT.tlsHandshakes(ctx)
			if err != nil {
				return err
			}
			res.Latency[i].Runs = append(res.Latency[i].Runs, run)
			if c.name == "sidecar" {
				res.Handshakes = append(res.Handshakes, h1.ok-h0.ok)
				res.Resumed = append(res.Resumed, h1.resumed-h0.resumed)
			}
			b.logf("  round %d %-8s p50 %7.0f µs  p99 %7.0f µs  errors %d", r+1, c.name, run.P50, run.P99, run.errors())
		}
	}
	return nil
}

// handshakeCounts are a sidecar's TLS handshake counters.
type handshakeCounts struct{ ok, resumed int64 }

// tlsHandshakes reads the sidecar's handshake counters from /metrics (in
// a measured run of several seconds, a few counter reads cost nothing).
func (s *sidecarProc) tlsHandshakes(ctx context.Context) (handshakeCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/metrics", nil)
	if err != nil {
		return handshakeCounts{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return handshakeCounts{}, fmt.Errorf("reading the sidecar's metrics: %w", err)
	}
	defer resp.Body.Close()
	var c handshakeCounts
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case `chittyid_sidecar_upstream_tls_handshakes_total{outcome="ok"}`:
			c.ok, _ = strconv.ParseInt(v, 10, 64)
		case `chittyid_sidecar_upstream_tls_resumed_total`:
			c.resumed, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return c, sc.Err()
}

// startSidecarConfig starts bin serve with the config text cfg, in which
// %s stands for the listen address.
func (b *bench) startSidecarConfig(ctx context.Context, bin, name, cfg string) (*sidecarProc, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(b.work, "conf", name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(cfg, `"%s"`, strconv.Quote(addr), 1)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfgPath, err)
	}
	p, err := b.start(name, serverCore, bin, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	return &sidecarProc{p: p, addr: addr}, waitHTTP(ctx, p, "http://"+addr+"/readyz")
}

// tlsMintAdds is (t)'s p50 overhead: the median of the per-round
// differences, like (c).
func (r *results) tlsMintAdds() (float64, bool) {
	return mintAdds(r.T.Latency)
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

func (w *report) scenarioT() {
	t := w.r.T
	if len(t.Latency) == 0 || len(t.Latency[0].Runs) == 0 {
		return
	}
	w.f("\n## (t) Mint over a TLS upstream: through the sidecar vs directly at the simulator over TLS (latency 0)\n\n")
	w.f("| Path | p50, 1 conn | p99, 1 conn | CPU / mint |\n|---|---:|---:|---:|\n")
	for _, l := range t.Latency {
		w.f("| %s | %s | %s | %.1f µs |\n", l.Name, us(l.stat(p50)), us(l.stat(p99)), l.stat(func(r wrkResult) float64 { return r.CPUPerReq }))
	}
	if add, ok := w.r.tlsMintAdds(); ok {
		w.f("\nThe sidecar adds %+.0f µs at p50 (median of the per-round differences). ", add)
	}
	w.f("TLS handshakes the sidecar made with the simulator during its measured runs: %v (resumed %v); wrk opens its one connection to the simulator per run.\n",
		t.Handshakes, t.Resumed)
	w.noise(t.Latency)
}
