package monitoring

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite prometheusrule.yaml from rules.yaml")

const (
	rulesPath          = "rules.yaml"
	prometheusRulePath = "prometheusrule.yaml"
	testsPath          = "tests.yaml"
	dashboardPath      = "dashboard.json"
	readmePath         = "README.md"
	baseConfigPath     = "../components/chittyid-sidecar/config.yaml"
)

// targetLabels are the labels a Kubernetes scrape adds to every series; the
// sidecar exports none of them.
var targetLabels = map[string]bool{"namespace": true, "pod": true, "instance": true, "job": true, "container": true}

// requiredAlerts are the alerts k8s/monitoring/README.md promises, with their severity.
var requiredAlerts = map[string]string{
	"ChittyIDSidecarLifecycleFailed":       "critical", // state FAILED
	"ChittyIDSidecarBreakerOpen":           "critical", // breaker open > 5m
	"ChittyIDSidecarErrorRatioHigh":        "critical", // 5xx > 5%
	"ChittyIDSidecarHealthPollsFailing":    "critical", // health-poll success < 90%
	"ChittyIDSidecarReconnecting":          "warning",  // RECONNECTING
	"ChittyIDSidecarBreakerHalfOpen":       "warning",  // half-open
	"ChittyIDSidecarCacheHitRatioLow":      "warning",  // hit ratio < 50%
	"ChittyIDSidecarLatencyHigh":           "warning",  // p95 > 500ms
	"ChittyIDSidecarSnapshotStale":         "warning",
	"ChittyIDSidecarSnapshotWritesFailing": "warning",
	"ChittyIDSidecarConfigReloadRejected":  "warning",
}

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func decodeStrict(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func loadAlerts(t *testing.T) []rule {
	t.Helper()
	var rf ruleFile
	if err := decodeStrict(rulesPath, &rf); err != nil {
		t.Fatal(err)
	}
	var alerts []rule
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is no alert (record %q): this file holds alerts only", g.Name, r.Record)
				continue
			}
			alerts = append(alerts, r)
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("%s: no alerts", rulesPath)
	}
	return alerts
}

// TestRules checks the alerts' conventions: the ones the issue asks for are
// there with their severity, every alert is per (namespace, pod), and its
// annotations name the pod and point to a README section.
func TestRules(t *testing.T) {
	alerts := loadAlerts(t)
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range alerts {
		if seen[a.Alert] {
			t.Errorf("%s: defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if !strings.HasPrefix(a.Alert, "ChittyIDSidecar") {
			t.Errorf("%s: alert names start with ChittyIDSidecar", a.Alert)
		}
		if want, ok := requiredAlerts[a.Alert]; ok && a.Labels["severity"] != want {
			t.Errorf("%s: severity %q, want %q", a.Alert, a.Labels["severity"], want)
		}
		if s := a.Labels["severity"]; s != "critical" && s != "warning" || len(a.Labels) != 1 {
			t.Errorf("%s: labels %v: want exactly severity: critical or warning", a.Alert, a.Labels)
		}
		if a.For != "" {
			if _, err := time.ParseDuration(a.For); err != nil {
				t.Errorf("%s: for %q: %v", a.Alert, a.For, err)
			}
		}
		if got := sortedKeys(a.Annotations); !reflect.DeepEqual(got, []string{"description", "runbook", "summary"}) {
			t.Errorf("%s: annotations %v, want description, runbook, summary", a.Alert, got)
		}
		if d := a.Annotations["description"]; !strings.HasPrefix(d, "{{ $labels.namespace }}/{{ $labels.pod }}: ") {
			t.Errorf("%s: description must start with {{ $labels.namespace }}/{{ $labels.pod }}: , got %q", a.Alert, d)
		}
		anchor := strings.ToLower(a.Alert)
		if want := "k8s/monitoring/README.md#" + anchor; a.Annotations["runbook"] != want {
			t.Errorf("%s: runbook %q, want %q", a.Alert, a.Annotations["runbook"], want)
		}
		if !bytes.Contains(readme, []byte("\n### "+a.Alert+"\n")) {
			t.Errorf("%s: README.md has no section \"### %s\" (the runbook annotation points there)", a.Alert, a.Alert)
		}
		r, err := parseRefs(a.Expr)
		if err != nil {
			t.Errorf("%s: %v", a.Alert, err)
			continue
		}
		if len(r.Grouping) == 0 {
			t.Errorf("%s: expression does not aggregate by (namespace, pod)", a.Alert)
		}
		// Every grouping clause must keep namespace and pod (the alert's
		// identity); `without` would keep scrape labels.
		for _, clause := range groupingClauses(a.Expr) {
			if clause.kw == "without" || !clause.has("namespace") || !clause.has("pod") {
				t.Errorf("%s: %s (%s): every aggregation and match is by (namespace, pod, ...)", a.Alert, clause.kw, strings.Join(clause.labels, ", "))
			}
		}
	}
	for name := range requiredAlerts {
		if !seen[name] {
			t.Errorf("%s: missing (k8s/monitoring/README.md promises it)", name)
		}
	}
}

type clause struct {
	kw     string
	labels []string
}

func (c clause) has(l string) bool {
	for _, x := range c.labels {
		if x == l {
			return true
		}
	}
	return false
}

var clauseRE = regexp.MustCompile(`\b(by|without|on|ignoring)\s*\(([^)]*)\)`)

func groupingClauses(expr string) []clause {
	var cs []clause
	for _, m := range clauseRE.FindAllStringSubmatch(expr, -1) {
		c := clause{kw: m[1]}
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				c.labels = append(c.labels, l)
			}
		}
		cs = append(cs, c)
	}
	return cs
}

// renderPrometheusRule wraps rules.yaml, comments and all, in a
// PrometheusRule: its header comments are dropped and the rest is indented
// under spec.
func renderPrometheusRule(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# GENERATED from rules.yaml: do not edit. After changing rules.yaml run
#   cd k8s && go test ./monitoring -run TestPrometheusRule -update
# The same alerts as a Prometheus Operator PrometheusRule. The Operator loads
# it when its Prometheus's ruleSelector and ruleNamespaceSelector match it:
# add the label yours selects (kube-prometheus-stack: release: <release>)
# with kubectl label or a Kustomize overlay, not here.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: chittyid-sidecar
  labels:
    app.kubernetes.io/name: chittyid-sidecar
    app.kubernetes.io/component: alerting
spec:
`)
	lines := strings.Split(strings.TrimRight(string(rules), "\n"), "\n")
	i := 0
	for i < len(lines) && (strings.HasPrefix(lines[i], "#") || strings.TrimSpace(lines[i]) == "") {
		i++
	}
	for _, l := range lines[i:] {
		if l != "" {
			b.WriteString("  ")
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestPrometheusRule: prometheusrule.yaml is rules.yaml, byte for byte
// inside its spec (regenerate with -update), and decodes to the same
// groups.
func TestPrometheusRule(t *testing.T) {
	rules, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	want := renderPrometheusRule(rules)
	if *update {
		if err := os.WriteFile(prometheusRulePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRulePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not generated from the current %s: run cd k8s && go test ./monitoring -run TestPrometheusRule -update", prometheusRulePath, rulesPath)
	}
	var plain any
	if err := yaml.Unmarshal(rules, &plain); err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec any `yaml:"spec"`
	}
	if err := decodeStrict(prometheusRulePath, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Errorf("%s: %s %s %q: want a named monitoring.coreos.com/v1 PrometheusRule", prometheusRulePath, pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	if !reflect.DeepEqual(pr.Spec, plain) {
		t.Errorf("%s: spec differs from %s", prometheusRulePath, rulesPath)
	}
	// The PrometheusRule's spec, strictly decoded, holds the same alerts.
	specYAML, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(specYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil || len(rf.Groups) == 0 {
		t.Errorf("%s: spec is no rule file (%v)", prometheusRulePath, err)
	}
}

type unitTests struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Name        string `yaml:"name"`
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestUnitTestsCoverEveryAlert: tests.yaml loads rules.yaml and, for every
// alert, has a case where it does not fire followed, one evaluation later in
// the same test, by a case where it fires: the threshold (or the `for`) is
// pinned from both sides. promtool runs the cases themselves.
func TestUnitTestsCoverEveryAlert(t *testing.T) {
	var ut unitTests
	if err := decodeStrict(testsPath, &ut); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ut.RuleFiles, []string{rulesPath}) {
		t.Errorf("rule_files %v, want [%s]", ut.RuleFiles, rulesPath)
	}
	step, err := time.ParseDuration(ut.EvaluationInterval)
	if err != nil {
		t.Fatalf("evaluation_interval: %v", err)
	}
	pinned := map[string]bool{}
	fires := map[string]bool{}
	for _, tc := range ut.Tests {
		quiet := map[string][]time.Duration{}
		firing := map[string][]time.Duration{}
		for _, c := range tc.AlertRuleTest {
			at, err := time.ParseDuration(c.EvalTime)
			if err != nil {
				t.Errorf("%s: eval_time %q: %v", tc.Name, c.EvalTime, err)
				continue
			}
			if len(c.ExpAlerts) == 0 {
				quiet[c.Alertname] = append(quiet[c.Alertname], at)
				continue
			}
			fires[c.Alertname] = true
			firing[c.Alertname] = append(firing[c.Alertname], at)
			for _, a := range c.ExpAlerts {
				if a.ExpLabels["severity"] == "" || a.ExpLabels["namespace"] == "" || a.ExpLabels["pod"] == "" {
					t.Errorf("%s: %s at %s: expected labels %v lack severity, namespace or pod", tc.Name, c.Alertname, c.EvalTime, a.ExpLabels)
				}
				if len(a.ExpAnnotations) == 0 {
					t.Errorf("%s: %s at %s: no expected annotations", tc.Name, c.Alertname, c.EvalTime)
				}
			}
		}
		for name, qs := range quiet {
			for _, q := range qs {
				for _, f := range firing[name] {
					if f-q == step {
						pinned[name] = true
					}
				}
			}
		}
	}
	for _, a := range loadAlerts(t) {
		switch {
		case !fires[a.Alert]:
			t.Errorf("%s: no case in %s where it fires", a.Alert, testsPath)
		case !pinned[a.Alert]:
			t.Errorf("%s: no case in %s where it does not fire one evaluation (%s) before a case where it does", a.Alert, testsPath, step)
		}
	}
}

// TestSnapshotStaleThreshold: the stale-snapshot threshold is 3 x
// snapshot.interval of the base's config.
func TestSnapshotStaleThreshold(t *testing.T) {
	var cfg struct {
		Snapshot struct {
			Interval string `yaml:"interval"`
		} `yaml:"snapshot"`
	}
	data, err := os.ReadFile(baseConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	interval := time.Minute // the sidecar's default
	if cfg.Snapshot.Interval != "" {
		if interval, err = time.ParseDuration(cfg.Snapshot.Interval); err != nil {
			t.Fatal(err)
		}
	}
	secs := int((3 * interval).Seconds())
	for _, a := range loadAlerts(t) {
		if a.Alert != "ChittyIDSidecarSnapshotStale" {
			continue
		}
		if !strings.Contains(a.Expr, fmt.Sprintf("> %d)", secs)) {
			t.Errorf("%s: threshold is not %d s, 3 x snapshot.interval (%s in %s):\n%s", a.Alert, secs, interval, baseConfigPath, a.Expr)
		}
		short := strings.TrimSuffix(strings.TrimSuffix((3*interval).String(), "0s"), "0m")
		if want := "3 x snapshot.interval = " + short; !strings.Contains(a.Annotations["description"], want) {
			t.Errorf("%s: description does not say %q", a.Alert, want)
		}
		return
	}
	t.Fatal("no ChittyIDSidecarSnapshotStale alert")
}

// exprSource is an expression and where it came from.
type exprSource struct {
	where, expr string
	dashboard   bool
}

func ruleExprs(t *testing.T) []exprSource {
	var out []exprSource
	for _, a := range loadAlerts(t) {
		out = append(out, exprSource{where: rulesPath + " " + a.Alert, expr: a.Expr})
	}
	return out
}

// TestMetricNames: every metric the alerts and the dashboard refer to is one
// the sidecar registers (read from its source), histograms only through
// _bucket, _sum and _count, and every label they match or group on is one
// of the metric's own or a scrape's target labels.
func TestMetricNames(t *testing.T) {
	fams, err := exportedFamilies(metricSources...)
	if err != nil {
		t.Fatal(err)
	}
	idx := seriesIndex(fams)
	allLabels := map[string]bool{"le": true}
	for _, f := range fams {
		for l := range f.Labels {
			allLabels[l] = true
		}
	}
	exprs := append(ruleExprs(t), dashboardExprs(t, loadDashboard(t))...)
	n := 0
	for _, e := range exprs {
		r, err := parseRefs(e.expr)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		if len(r.Selectors) == 0 {
			t.Errorf("%s: no metric in %q", e.where, e.expr)
		}
		for _, s := range r.Selectors {
			n++
			f := idx[s.Metric]
			if f == nil {
				hint := ""
				if fams[s.Metric] != nil {
					hint = fmt.Sprintf(" (a %s: use %s)", fams[s.Metric].Type, strings.Join(fams[s.Metric].seriesNames(), ", "))
				}
				t.Errorf("%s: %q is no metric the sidecar exports%s", e.where, s.Metric, hint)
				continue
			}
			for _, m := range s.Matchers {
				ok := f.Labels[m.Name] || targetLabels[m.Name] || m.Name == "__name__" ||
					m.Name == "le" && s.Metric == f.Name+"_bucket"
				if !ok {
					t.Errorf("%s: %s has no label %q (it has %v)", e.where, s.Metric, m.Name, sortedKeys(f.Labels))
				}
			}
		}
		for _, l := range r.Grouping {
			if !allLabels[l] && !targetLabels[l] {
				t.Errorf("%s: groups by %q, a label no sidecar metric has", e.where, l)
			}
		}
	}
	t.Logf("%d selectors in %d expressions checked against %d families", n, len(exprs), len(fams))
}

// promtoolPath finds promtool, or skips the test without it
// (MONITORING_REQUIRE_PROMTOOL=1 makes its absence a failure).
func promtoolPath(t *testing.T) string {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("MONITORING_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not found (bash .ci/monitoring installs it)")
		}
		t.Skip("promtool not installed: apt-get install prometheus, or bash .ci/monitoring")
	}
	return promtool
}

// TestPromtool runs Prometheus's own checks when promtool is installed
// (MONITORING_REQUIRE_PROMTOOL=1 makes its absence a failure): check rules
// on rules.yaml, the unit tests, and every dashboard query, Grafana
// variables filled in, parsed as a recording rule.
func TestPromtool(t *testing.T) {
	promtool := promtoolPath(t)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "rules", rulesPath)
	run("test", "rules", testsPath)

	vars := regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var recs []rec
	for i, e := range dashboardExprs(t, loadDashboard(t)) {
		expr := vars.ReplaceAllStringFunc(e.expr, func(v string) string {
			if strings.HasPrefix(strings.TrimLeft(v, "${"), "__") {
				return "5m" // $__rate_interval, $__interval, $__range
			}
			return ".*" // $pod, $namespace: inside a regex matcher
		})
		recs = append(recs, rec{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: expr})
	}
	file, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": recs}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	run("check", "rules", path)
}

// ---- dashboard

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Query      any         `json:"query"`
			Datasource *datasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Panels     []panel                  `json:"panels"` // a collapsed row's
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := bytes.Count(data[:se.Offset], []byte("\n")) + 1
			t.Fatalf("%s: invalid JSON at line %d: %v", dashboardPath, line, err)
		}
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*(\w+)\s*\)\s*$`)

// dashboardExprs returns the PromQL of every panel target and of every
// label_values() variable query (its metric selector).
func dashboardExprs(t *testing.T, d *dashboard) []exprSource {
	var out []exprSource
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, exprSource{where: fmt.Sprintf("%s panel %d %q target %s", dashboardPath, p.ID, p.Title, tg.RefID), expr: tg.Expr, dashboard: true})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		m := labelValuesRE.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(<selector>, <label>)", dashboardPath, v.Name, q)
			continue
		}
		out = append(out, exprSource{where: dashboardPath + " variable " + v.Name, expr: m[1], dashboard: true})
	}
	return out
}

// TestDashboard: valid JSON, schemaVersion >= 36, a Prometheus datasource
// variable that every panel and query uses, namespace and pod variables
// that every query filters on, a sane layout, and a panel for every metric
// the sidecar exports.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want >= 36", d.SchemaVersion)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: both needed", d.Title, d.UID)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || v.Query != "prometheus" {
				t.Errorf("variable datasource: type %q query %v, want a datasource variable of type prometheus", v.Type, v.Query)
			}
		default:
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
				t.Errorf("variable %s: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
			}
		}
	}
	for _, v := range []string{"datasource", "namespace", "pod"} {
		if !vars[v] {
			t.Errorf("no %s variable", v)
		}
	}

	fams, err := exportedFamilies(metricSources...)
	if err != nil {
		t.Fatal(err)
	}
	idx := seriesIndex(fams)
	shown := map[string]bool{}
	ids := map[int]bool{}
	type rect struct {
		id         int
		x, y, w, h int
	}
	var rects []rect
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d %q: gridPos %+v outside the 24-column grid", p.ID, p.Title, g)
		}
		for _, r := range rects {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panel %d %q overlaps panel %d", p.ID, p.Title, r.id)
			}
		}
		rects = append(rects, rect{p.ID, g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q: datasource %+v, want {prometheus ${datasource}}", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q: no query", p.ID, p.Title)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if refIDs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %d %q: refId %q empty or used twice", p.ID, p.Title, tg.RefID)
			}
			refIDs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %d %q target %s: datasource %+v, want uid ${datasource}", p.ID, p.Title, tg.RefID, tg.Datasource)
			}
			r, err := parseRefs(tg.Expr)
			if err != nil {
				continue // TestMetricNames reports it
			}
			for _, s := range r.Selectors {
				if f := idx[s.Metric]; f != nil {
					shown[f.Name] = true
				}
				var ns, pod bool
				for _, m := range s.Matchers {
					ns = ns || m.Name == "namespace" && m.Op == "=~" && m.Value == "$namespace"
					pod = pod || m.Name == "pod" && m.Op == "=~" && m.Value == "$pod"
				}
				if !ns || !pod {
					t.Errorf("panel %d %q target %s: %s does not filter on namespace=~\"$namespace\", pod=~\"$pod\"", p.ID, p.Title, tg.RefID, s.Metric)
				}
			}
		}
	}
	for _, name := range sortedKeys(fams) {
		if !shown[name] {
			t.Errorf("%s: exported but on no dashboard panel", name)
		}
	}
}
