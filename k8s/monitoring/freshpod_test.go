package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"gopkg.in/yaml.v3"
)

// scrapeSamples reads the chittyid_sidecar_ samples of a text exposition:
// each series (its name and labels as served) with its value.
func scrapeSamples(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "chittyid_sidecar_") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot read the sample %q", line)
		}
		out[m[1]+"{"+m[2]+"}"] = strings.Fields(line)[len(strings.Fields(line))-1]
	}
	return out
}

// promtoolSeries turns scrapes taken one interval apart into promtool
// input_series: every series seen, with the target labels of a scrape
// added, and "_" (no sample) where a scrape did not have it, so that a
// series created at its first use starts where it started.
func promtoolSeries(scrapes []map[string]string, target string) []map[string]string {
	seen := map[string]bool{}
	for _, s := range scrapes {
		for k := range s {
			seen[k] = true
		}
	}
	var out []map[string]string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	}) {
		values := make([]string, len(scrapes))
		for i, s := range scrapes {
			if v, ok := s[k]; ok {
				values[i] = v
			} else {
				values[i] = "_"
			}
		}
		name, labels, _ := strings.Cut(strings.TrimSuffix(k, "}"), "{")
		if labels != "" {
			labels += ","
		}
		out = append(out, map[string]string{"series": name + "{" + labels + target + "}", "values": strings.Join(values, " ")})
	}
	return out
}

// TestAlertsFromAFreshPod evaluates the alert rules with promtool over the
// series a real fresh pod serves (-sidecar, every feature on), scraped
// once every (virtual) minute from its start while everything fails:
// upstream answers mints and health polls with 503, a config file that
// does not validate is written after the first scrape, and the snapshot
// cannot be written. Series created at their first use (the 503 answers)
// and those served from zero (the reload and snapshot write outcomes, the
// health polls) must make the alerts fire as the unit tests say they
// would: nothing at the first scrape, then each of them. The rules are
// evaluated without their annotations (tests.yaml checks those).
func TestAlertsFromAFreshPod(t *testing.T) {
	if *sidecarBin == "" {
		t.Skip("no -sidecar binary (bash .ci/monitoring builds and passes one)")
	}
	promtool := promtoolPath(t)
	u := startUpstream(t)
	if err := u.sim.SetFault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"mint", "health"}}); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file") // the snapshot's directory is a file: every write fails
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := u.config(filepath.Join(notDir, "cache.snap"), "health: {interval: 100ms, timeout: 100ms, reconnect: {baseDelay: 100ms, maxDelay: 200ms}}\n")
	pod := startPod(t, *sidecarBin, "fresh", cfg)

	const minutes = 16
	scrapes := []map[string]string{scrapeSamples(t, pod.scrape())}
	pod.writeConfig(cfg + "nonsense: true\n")
	count := func(s map[string]string, series string) string { return s[series] }
	for len(scrapes) <= minutes {
		for range 10 { // 10 a minute: over the error ratio alert's 0.1/s guard
			if code, _, b := pod.do("POST", "/v1/mint", `{"entity":"PEO"}`); code != 503 {
				t.Fatalf("a mint with upstream failing: HTTP %d %.200s", code, b)
			}
		}
		last := scrapes[len(scrapes)-1]
		var s map[string]string
		waitFor(t, "a health poll, a snapshot write and the rejected reload since the last scrape", func() bool {
			s = scrapeSamples(t, pod.scrape())
			return count(s, `chittyid_sidecar_health_polls_total{outcome="failed"}`) != count(last, `chittyid_sidecar_health_polls_total{outcome="failed"}`) &&
				count(s, `chittyid_sidecar_snapshot_writes_total{outcome="failed"}`) != count(last, `chittyid_sidecar_snapshot_writes_total{outcome="failed"}`) &&
				count(s, `chittyid_sidecar_config_reloads_total{outcome="rejected"}`) == "1"
		})
		scrapes = append(scrapes, s)
	}

	target := `namespace="apps",pod="fresh"`
	labels := func(alert string) map[string]string {
		for _, r := range loadAlerts(t) {
			if r.Alert == alert {
				return map[string]string{"severity": r.Labels["severity"], "namespace": "apps", "pod": "fresh"}
			}
		}
		t.Fatalf("no alert %s in %s", alert, rulesPath)
		return nil
	}
	var cases []map[string]any
	for alert, at := range map[string]string{
		"ChittyIDSidecarErrorRatioHigh":        "16m",
		"ChittyIDSidecarHealthPollsFailing":    "16m",
		"ChittyIDSidecarLifecycleFailed":       "16m",
		"ChittyIDSidecarSnapshotWritesFailing": "16m",
		"ChittyIDSidecarConfigReloadRejected":  "10m", // within 15m of the rejection, between the first two scrapes
	} {
		cases = append(cases,
			map[string]any{"eval_time": "0m", "alertname": alert, "exp_alerts": []any{}},
			map[string]any{"eval_time": at, "alertname": alert, "exp_alerts": []any{map[string]any{"exp_labels": labels(alert)}}})
	}
	slices.SortFunc(cases, func(a, b map[string]any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })

	dir := t.TempDir()
	var rules ruleFile
	if err := decodeStrict(rulesPath, &rules); err != nil {
		t.Fatal(err)
	}
	for g := range rules.Groups {
		for r := range rules.Groups[g].Rules {
			rules.Groups[g].Rules[r].Annotations = nil
		}
	}
	writeYAML(t, filepath.Join(dir, "rules.yaml"), rules)
	writeYAML(t, filepath.Join(dir, "tests.yaml"), map[string]any{
		"rule_files":          []string{"rules.yaml"},
		"evaluation_interval": "1m",
		"tests": []any{map[string]any{
			"name":            "a fresh pod, everything failing from its start",
			"interval":        "1m",
			"input_series":    promtoolSeries(scrapes, target),
			"alert_rule_test": cases,
		}},
	})
	out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "tests.yaml")).CombinedOutput()
	if err != nil {
		tests, _ := os.ReadFile(filepath.Join(dir, "tests.yaml"))
		path, _ := testout.Keep(t, "tests.yaml", string(tests))
		t.Errorf("promtool test rules over the fresh pod's scrapes (the test file: %s): %v\n%s", path, err,
			testout.Cut(t, "promtool.txt", string(out), nil))
	}
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
