package monitoring

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

var sidecarBin = flag.String("sidecar", "", "a chittyid-sidecar binary: TestLiveMetrics runs it in dev mode and checks the source reading, the rules and the dashboard against its /metrics")

// liveFamily is a family as a real /metrics shows it.
type liveFamily struct {
	Type   string
	Labels map[string]map[string]bool // label name -> values seen
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\S+)?$`)

// parseExposition reads the Prometheus text format, enough for client_golang's
// output: # TYPE lines and samples with quoted label values.
func parseExposition(text string) (map[string]*liveFamily, error) {
	fams := map[string]*liveFamily{}
	for i, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			fams[name] = &liveFamily{Type: typ, Labels: map[string]map[string]bool{}}
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: cannot read %q", i+1, line)
		}
		f := fams[m[1]]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m[1], suffix); f == nil && ok {
				if bf := fams[base]; bf != nil && (bf.Type == "histogram" || bf.Type == "summary") {
					f = bf
				}
			}
		}
		if f == nil {
			return nil, fmt.Errorf("line %d: sample %s before its # TYPE", i+1, m[1])
		}
		labels, err := parseLabels(m[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		for k, v := range labels {
			if k == "le" || k == "quantile" {
				continue
			}
			if f.Labels[k] == nil {
				f.Labels[k] = map[string]bool{}
			}
			f.Labels[k][v] = true
		}
	}
	return fams, nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ",")) {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			return nil, fmt.Errorf("bad labels %q", s)
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		if i == len(rest) {
			return nil, fmt.Errorf("unterminated label value in %q", s)
		}
		out[strings.TrimSpace(name)] = v.String()
		s = rest[i+1:]
	}
	return out, nil
}

// startDev runs `chittyid-sidecar dev` on a free port and returns its URL.
func startDev(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "dev", "--listen", "127.0.0.1:0")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\s*sidecar:\s+(http://\S+)`)
	u := startProcess(t, "dev mode", cmd, out, io.Discard, stderr, func(line string) string {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[1]
		}
		return ""
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(u + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return u
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev mode at %s: /healthz not 200 within 10s (%v)\n%s", u, err, testout.Cut(t, "dev.log", stderr.String(), nil))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fetch(t *testing.T, method, url, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("%s %s: HTTP %d: %s", method, url, res.StatusCode, b)
	}
	return string(b)
}

var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)*$`)

// featurePrefixes name the families of the features that can be off: the
// fleet tier, snapshots, an https upstream and tracing. Off, a sidecar
// serves none of them.
var featurePrefixes = []string{"chittyid_sidecar_fleet_", "chittyid_sidecar_snapshot_", "chittyid_sidecar_upstream_tls_", "chittyid_sidecar_trace_"}

// fromZero are the label values served from the start, before their first
// use (with their feature on): the ones the shipped alerts and the
// dashboard need at 0 (an alert on increase() misses a counter created at
// 1; the dashboard draws a state from all its values). Every other label
// value is served from its first use on. The metric reference (README.md,
// Metrics) names the same.
var fromZero = map[string]map[string][]string{
	"chittyid_sidecar_lifecycle_state":               {"state": {"CONNECTING", "CONNECTED", "RECONNECTING", "FAILED", "DISCONNECTED"}},
	"chittyid_sidecar_breaker_state":                 {"state": {"closed", "open", "half-open"}},
	"chittyid_sidecar_health_polls_total":            {"outcome": {"ok", "failed"}},
	"chittyid_sidecar_config_reloads_total":          {"outcome": {"applied", "rejected"}},
	"chittyid_sidecar_snapshot_writes_total":         {"outcome": {"ok", "failed"}},
	"chittyid_sidecar_fleet_state":                   {"state": {"off", "connecting", "up", "skipped", "closed"}},
	"chittyid_sidecar_upstream_tls_handshakes_total": {"outcome": {"ok", "unknown_authority", "name_mismatch", "expired", "bad_certificate", "refused", "timeout", "error"}},
}

// TestLiveMetrics runs the sidecar (-sidecar) and reads its /metrics:
//
//   - in dev mode (fleet tier, snapshots, TLS and tracing off): none of their
//     families is served, and the process and Go runtime ones are;
//   - as a pod with every feature on, before any API request: every family
//     read from the source without variable labels is served, with the
//     same type and label names (one with variable labels may be absent
//     until first used), and every fromZero value is served;
//   - after traffic (two such pods sharing Redis): every label value the
//     rules and the dashboard match exactly (=, or =~ a|b|c) is one the
//     sidecar serves: a misspelt state="half_open" would make an alert
//     silently never fire.
func TestLiveMetrics(t *testing.T) {
	if *sidecarBin == "" {
		t.Skip("no -sidecar binary (bash .ci/monitoring builds and passes one)")
	}
	dev, err := parseExposition(fetch(t, "GET", startDev(t, *sidecarBin)+"/metrics", ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(dev) {
		for _, p := range featurePrefixes {
			if strings.HasPrefix(name, p) {
				t.Errorf("dev mode (fleet tier, snapshots, TLS and tracing off) serves %s", name)
			}
		}
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines", "go_gc_duration_seconds"} {
		if dev[name] == nil {
			t.Errorf("dev mode does not serve %s", name)
		}
	}

	u := startUpstream(t)
	// Tracing on, towards a collector that is not there: its families are
	// served (its spans dropped and counted).
	extra := "validate: {ttl: 1s, negativeTtl: 1s, staleIfError: 1h}\nlimits: {maxBatch: 2}\nrateLimit: {mint: {fleetPerMinute: 1, fleetBurst: 3}}\n" +
		"tracing: {endpoint: \"http://" + closedAddr(t) + "\"}\n"
	pod := startPod(t, *sidecarBin, "a", u.config(filepath.Join(t.TempDir(), "snapshots", "a.snap"), extra))
	peer := startPod(t, *sidecarBin, "b", u.config(filepath.Join(t.TempDir(), "snapshots", "b.snap"), extra))
	for _, p := range []*livePod{pod, peer} {
		waitFor(t, "the fleet tier of pod "+p.name+" up", func() bool { return p.fleetState() == "up" })
	}
	fresh, err := parseExposition(pod.scrape())
	if err != nil {
		t.Fatal(err)
	}
	fams, err := exportedFamilies(metricSources...)
	if err != nil {
		t.Fatal(err)
	}
	checkFamilies(t, "a fresh pod", fams, fresh)
	for _, name := range sortedKeys(fromZero) {
		for label, values := range fromZero[name] {
			for _, v := range values {
				if l := fresh[name]; l == nil || !l.Labels[label][v] {
					t.Errorf("a fresh pod does not serve %s{%s=%q} (it must from the start)", name, label, v)
				}
			}
		}
	}

	podTraffic(t, u, pod, peer)
	live, err := parseExposition(pod.scrape())
	if err != nil {
		t.Fatal(err)
	}
	checkFamilies(t, "after traffic", fams, live)
	idx := seriesIndex(fams)
	checked := 0
	for _, e := range append(ruleExprs(t), dashboardExprs(t, loadDashboard(t))...) {
		r, err := parseRefs(e.expr)
		if err != nil {
			continue // TestMetricNames reports it
		}
		for _, s := range r.Selectors {
			f := idx[s.Metric]
			if f == nil {
				continue // TestMetricNames reports it
			}
			for _, m := range s.Matchers {
				if !f.Labels[m.Name] || (m.Op != "=" && m.Op != "=~") || (m.Op == "=~" && !literalAlternation.MatchString(m.Value)) {
					continue
				}
				l := live[f.Name]
				for _, v := range strings.Split(m.Value, "|") {
					checked++
					if l == nil || !l.Labels[m.Name][v] {
						var seen []string
						if l != nil {
							seen = sortedKeys(l.Labels[m.Name])
						}
						t.Errorf("%s: %s{%s%s%q}: the sidecar serves no %s=%q (seen: %v; a value created on first use needs podTraffic to create it)",
							e.where, s.Metric, m.Name, m.Op, m.Value, m.Name, v, seen)
					}
				}
			}
		}
	}
	t.Logf("%d families served; %d matched label values found in them", len(live), checked)
}

// checkFamilies compares the families read from the source with those a
// pod with every feature on serves: the same types and label names, every
// family without variable labels served, nothing served that the source
// reading missed.
func checkFamilies(t *testing.T, when string, fams map[string]*family, live map[string]*liveFamily) {
	t.Helper()
	for _, name := range sortedKeys(fams) {
		f, l := fams[name], live[name]
		if l == nil {
			if !f.Vec {
				t.Errorf("%s: %s: read from the source but not served", when, name)
			} else {
				t.Logf("%s: %s: not served yet (labels %v, first use creates it)", when, name, sortedKeys(f.Labels))
			}
			continue
		}
		if l.Type != f.Type {
			t.Errorf("%s: %s: served as a %s, read from the source as a %s", when, name, l.Type, f.Type)
		}
		if got, want := strings.Join(sortedKeys(l.Labels), ","), strings.Join(sortedKeys(f.Labels), ","); got != want {
			t.Errorf("%s: %s: served with labels {%s}, read from the source with {%s}", when, name, got, want)
		}
	}
	for _, name := range sortedKeys(live) {
		if strings.HasPrefix(name, "chittyid_sidecar_") && fams[name] == nil {
			t.Errorf("%s: %s: served but not found in %v (the source reading missed it)", when, name, metricSources)
		}
	}
}

// podTraffic makes pod create the label values the rules and the
// dashboard match that are created at first use: the API routes, and the
// fleet tier's calls (a hit on a verdict the peer fetched, a miss, a
// stale verdict, Redis stopped and gone, the fleet mint limit).
func podTraffic(t *testing.T, u *upstreamEnv, pod, peer *livePod) {
	t.Helper()
	var minted struct{ ChittyID string }
	if err := json.Unmarshal([]byte(pod.expect("POST", "/v1/mint", `{"entity":"PEO"}`, 200)), &minted); err != nil {
		t.Fatal(err)
	}
	pod.expect("GET", "/v1/validate/"+minted.ChittyID, "", 200)
	pod.expect("POST", "/v1/validate", `{"chittyId":"`+minted.ChittyID+`"}`, 200)
	pod.expect("POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"EVNT"}]}`, 200)
	pod.expect("POST", "/v1/mint", `{"entity":"PEO"}`, 429) // over the fleet mint limit's burst of 3

	unknown := func(n int) string { return fmt.Sprintf("CT-Z-QQQ-%04d-P-26-Z-9", n) }
	pod.expect("GET", "/v1/validate/"+unknown(3), "", 200) // nobody has it
	peer.expect("GET", "/v1/validate/"+unknown(1), "", 200)
	if _, tier, b := pod.do("GET", "/v1/validate/"+unknown(1), ""); tier != "HIT fleet" {
		t.Errorf("a verdict the peer fetched: %q, want HIT fleet: %s", tier, b)
	}
	peer.expect("GET", "/v1/validate/"+unknown(2), "", 200)
	time.Sleep(1100 * time.Millisecond) // past validate.negativeTtl
	if err := u.sim.SetFault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"validate"}}); err != nil {
		t.Fatal(err)
	}
	if _, tier, b := pod.do("GET", "/v1/validate/"+unknown(2), ""); !strings.HasPrefix(tier, "STALE") {
		t.Errorf("an expired verdict the peer fetched, upstream failing: %q, want STALE: %s", tier, b)
	}
	if err := u.sim.SetFault(sim.Fault{Mode: sim.ModeOK}); err != nil {
		t.Fatal(err)
	}

	n := 100
	skip := func(what string) {
		waitFor(t, "the fleet tier skipped with Redis "+what, func() bool {
			n++
			pod.expect("GET", "/v1/validate/"+unknown(n), "", 200)
			return pod.fleetState() == "skipped"
		})
		n++
		pod.expect("GET", "/v1/validate/"+unknown(n), "", 200) // a call not sent
	}
	u.redis.Signal(syscall.SIGSTOP) // calls time out
	skip("stopped")
	u.redis.Signal(syscall.SIGCONT)
	waitFor(t, "the fleet tier up again", func() bool { return pod.fleetState() == "up" })
	u.redis.Stop() // calls fail
	skip("gone")
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
