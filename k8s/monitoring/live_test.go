package monitoring

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
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
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`^\s*sidecar:\s+(http://\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case u := <-urls:
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
				t.Fatalf("dev mode at %s: /healthz not 200 within 10s (%v)\n%s", u, err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	case <-done:
		t.Fatalf("dev mode exited before printing its URL:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("dev mode printed no URL within 30s:\n%s", stderr.String())
	}
	return ""
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

// TestLiveMetrics runs the sidecar (-sidecar) in dev mode against its
// upstream simulator, mints and validates once, and reads /metrics. The
// families read from the source must be the ones served, with the same
// types and label names (a family with variable labels may be absent until
// first used), and every label value the rules and the dashboard match
// exactly (=, or =~ a|b|c) must be one the sidecar serves: a misspelt
// state="half_open" would make an alert silently never fire.
func TestLiveMetrics(t *testing.T) {
	if *sidecarBin == "" {
		t.Skip("no -sidecar binary (bash .ci/monitoring builds and passes one)")
	}
	base := startDev(t, *sidecarBin)
	minted := fetch(t, "POST", base+"/v1/mint", `{"entity":"EVNT"}`)
	id := regexp.MustCompile(`"chittyId":"([^"]+)"`).FindStringSubmatch(minted)
	if id == nil {
		t.Fatalf("no chittyId in the mint answer %s", minted)
	}
	fetch(t, "GET", base+"/v1/validate/"+id[1], "")
	live, err := parseExposition(fetch(t, "GET", base+"/metrics", ""))
	if err != nil {
		t.Fatal(err)
	}

	fams, err := exportedFamilies(metricSources...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(fams) {
		f, l := fams[name], live[name]
		if l == nil {
			if !f.Vec {
				t.Errorf("%s: read from the source but not served", name)
			} else {
				t.Logf("%s: not served yet (labels %v, first use creates it)", name, sortedKeys(f.Labels))
			}
			continue
		}
		if l.Type != f.Type {
			t.Errorf("%s: served as a %s, read from the source as a %s", name, l.Type, f.Type)
		}
		if got, want := strings.Join(sortedKeys(l.Labels), ","), strings.Join(sortedKeys(f.Labels), ","); got != want {
			t.Errorf("%s: served with labels {%s}, read from the source with {%s}", name, got, want)
		}
	}
	for _, name := range sortedKeys(live) {
		if strings.HasPrefix(name, "chittyid_sidecar_") && fams[name] == nil {
			t.Errorf("%s: served but not found in %v (the source reading missed it)", name, metricSources)
		}
	}

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
						t.Errorf("%s: %s{%s%s%q}: the sidecar serves no %s=%q (seen: %v; a value created on first use needs the traffic above to create it)",
							e.where, s.Metric, m.Name, m.Op, m.Value, m.Name, v, seen)
					}
				}
			}
		}
	}
	t.Logf("%d families served; %d matched label values found in them", len(live), checked)
}
