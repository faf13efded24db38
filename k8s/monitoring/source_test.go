package monitoring

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// metricSources are the sidecar's files that register its metrics.
var metricSources = []string{"../../sidecar/metrics.go", "../../sidecar/snapshot.go", "../../sidecar/fleettier.go"}

// family is a metric family the sidecar registers.
type family struct {
	Name   string // full name, namespace included
	Type   string // counter, gauge, histogram or summary
	Labels map[string]bool
	// Vec: the family has variable labels (a *Vec), so it may have no
	// series, and be absent from /metrics, until a label value is first used.
	Vec bool
}

// seriesNames returns the names the family's series carry.
func (f *family) seriesNames() []string {
	if f.Type == "histogram" || f.Type == "summary" {
		names := []string{f.Name + "_sum", f.Name + "_count"}
		if f.Type == "histogram" {
			names = append(names, f.Name+"_bucket")
		}
		return names
	}
	return []string{f.Name}
}

var optsTypes = map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary"}

// promSel returns X for an expression prometheus.X, else "".
func promSel(e ast.Expr) string {
	if s, ok := e.(*ast.SelectorExpr); ok {
		if id, ok := s.X.(*ast.Ident); ok && id.Name == "prometheus" {
			return s.Sel.Name
		}
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
		s, err := strconv.Unquote(b.Value)
		return s, err == nil
	}
	return "", false
}

// labelsLitKeys returns the keys of a prometheus.Labels{...} literal.
func labelsLitKeys(e ast.Expr) ([]string, bool) {
	cl, ok := e.(*ast.CompositeLit)
	if !ok || promSel(cl.Type) != "Labels" {
		return nil, false
	}
	var keys []string
	for _, el := range cl.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if k, ok := stringLit(kv.Key); ok {
				keys = append(keys, k)
			}
		}
	}
	return keys, true
}

// exportedFamilies reads the metric families the sidecar registers from its
// source: every prometheus.*Opts literal with a literal Name, and every call
// of a local helper (counter := func(name, help string, ...) {... Name:
// name ...}) with a literal first argument. Names are prefixed with the
// Namespace (the package's const ns). Labels come from the []string of
// prometheus.New*Vec and from prometheus.Labels literals (ConstLabels, or
// passed to a helper).
func exportedFamilies(paths ...string) (map[string]*family, error) {
	fset := token.NewFileSet()
	var files []*ast.File
	consts := map[string]string{}
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if v, ok := stringLit(vs.Values[i]); ok {
								consts[n.Name] = v
							}
						}
					}
				}
			}
		}
	}
	fams := map[string]*family{}
	var errs []string
	add := func(pos token.Pos, namespace, name, typ string, labels []string, vec bool) {
		full := name
		if namespace != "" {
			full = namespace + "_" + name
		}
		f := fams[full]
		if f == nil {
			f = &family{Name: full, Type: typ, Labels: map[string]bool{}}
			fams[full] = f
		} else if f.Type != typ {
			errs = append(errs, fmt.Sprintf("%s: %s registered as %s and as %s", fset.Position(pos), full, f.Type, typ))
		}
		f.Vec = f.Vec || vec
		for _, l := range labels {
			f.Labels[l] = true
		}
	}
	// namespaceOf resolves the Namespace field of an Opts literal.
	namespaceOf := func(cl *ast.CompositeLit) string {
		for _, el := range cl.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok || kv.Key.(*ast.Ident).Name != "Namespace" {
				continue
			}
			if s, ok := stringLit(kv.Value); ok {
				return s
			}
			if id, ok := kv.Value.(*ast.Ident); ok {
				if v, ok := consts[id.Name]; ok {
					return v
				}
				errs = append(errs, fmt.Sprintf("%s: Namespace %s is no string constant of the package", fset.Position(kv.Pos()), id.Name))
			}
		}
		return ""
	}
	type helper struct {
		namespace, typ string
		constLabels    []string
	}
	helpers := map[string]helper{}
	vecLabels := map[*ast.CompositeLit][]string{}
	// Pass 1: *Vec label names, and helpers whose Name is their first parameter.
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if s := promSel(n.Fun); strings.HasPrefix(s, "New") && strings.HasSuffix(s, "Vec") && len(n.Args) == 2 {
					if cl, ok := n.Args[0].(*ast.CompositeLit); ok {
						var labels []string
						if sl, ok := n.Args[1].(*ast.CompositeLit); ok {
							for _, e := range sl.Elts {
								if v, ok := stringLit(e); ok {
									labels = append(labels, v)
								}
							}
						}
						if len(labels) == 0 {
							errs = append(errs, fmt.Sprintf("%s: %s without literal label names", fset.Position(n.Pos()), s))
						}
						vecLabels[cl] = labels
					}
				}
			case *ast.AssignStmt:
				if len(n.Lhs) != 1 || len(n.Rhs) != 1 {
					return true
				}
				fl, ok := n.Rhs[0].(*ast.FuncLit)
				lhs, ok2 := n.Lhs[0].(*ast.Ident)
				if !ok || !ok2 || len(fl.Type.Params.List) == 0 || len(fl.Type.Params.List[0].Names) == 0 {
					return true
				}
				param := fl.Type.Params.List[0].Names[0].Name
				ast.Inspect(fl.Body, func(m ast.Node) bool {
					cl, ok := m.(*ast.CompositeLit)
					if !ok || optsTypes[promSel(cl.Type)] == "" {
						return true
					}
					for _, el := range cl.Elts {
						kv, ok := el.(*ast.KeyValueExpr)
						if !ok || kv.Key.(*ast.Ident).Name != "Name" {
							continue
						}
						if id, ok := kv.Value.(*ast.Ident); ok && id.Name == param {
							h := helper{namespace: namespaceOf(cl), typ: optsTypes[promSel(cl.Type)]}
							for _, el := range cl.Elts {
								if kv, ok := el.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "ConstLabels" {
									h.constLabels, _ = labelsLitKeys(kv.Value)
								}
							}
							helpers[lhs.Name] = h
						}
					}
					return true
				})
			}
			return true
		})
	}
	// Pass 2: Opts literals with a literal Name, and helper calls.
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				typ := optsTypes[promSel(n.Type)]
				if typ == "" {
					return true
				}
				var name string
				var labels []string
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					switch kv.Key.(*ast.Ident).Name {
					case "Name":
						name, _ = stringLit(kv.Value)
					case "ConstLabels":
						labels, _ = labelsLitKeys(kv.Value)
					}
				}
				if name != "" {
					vl, vec := vecLabels[n]
					add(n.Pos(), namespaceOf(n), name, typ, append(labels, vl...), vec)
				}
			case *ast.CallExpr:
				id, ok := n.Fun.(*ast.Ident)
				if !ok || len(n.Args) == 0 {
					return true
				}
				h, ok := helpers[id.Name]
				if !ok {
					return true
				}
				name, ok := stringLit(n.Args[0])
				if !ok {
					errs = append(errs, fmt.Sprintf("%s: %s called without a literal name", fset.Position(n.Pos()), id.Name))
					return true
				}
				labels := append([]string(nil), h.constLabels...)
				for _, a := range n.Args[1:] {
					if keys, ok := labelsLitKeys(a); ok {
						labels = append(labels, keys...)
					}
				}
				add(n.Pos(), h.namespace, name, h.typ, labels, false)
			}
			return true
		})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return fams, nil
}

// seriesIndex maps every series name the sidecar exports to its family.
func seriesIndex(fams map[string]*family) map[string]*family {
	idx := map[string]*family{}
	for _, f := range fams {
		for _, n := range f.seriesNames() {
			idx[n] = f
		}
	}
	return idx
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestExportedFamilies checks the source reading itself: the families and
// labels docs/observability.md documents are found, with their types. The live test
// (-sidecar) compares the whole list with a real /metrics.
func TestExportedFamilies(t *testing.T) {
	fams, err := exportedFamilies(metricSources...)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"chittyid_sidecar_requests_total{code,family,route}":          "counter",
		"chittyid_sidecar_request_duration_seconds{route}":            "histogram",
		"chittyid_sidecar_cache_hits_total{}":                         "counter",
		"chittyid_sidecar_cache_entries{}":                            "gauge",
		"chittyid_sidecar_upstream_retries_total{op}":                 "counter",
		"chittyid_sidecar_breaker_state{state}":                       "gauge",
		"chittyid_sidecar_lifecycle_state{state}":                     "gauge",
		"chittyid_sidecar_health_polls_total{outcome}":                "counter",
		"chittyid_sidecar_build_info{goversion,version}":              "gauge",
		"chittyid_sidecar_snapshot_entries{kind}":                     "gauge",
		"chittyid_sidecar_snapshot_last_success_timestamp_seconds{}":  "gauge",
		"chittyid_sidecar_upstream_attempt_duration_seconds{op}":      "histogram",
		"chittyid_sidecar_snapshot_writes_total{outcome}":             "counter",
		"chittyid_sidecar_config_reloads_total{outcome}":              "counter",
		"chittyid_sidecar_upstream_attempts_total{op,outcome}":        "counter",
		"chittyid_sidecar_validate_answers_total{cache}":              "counter",
		"chittyid_sidecar_rate_limited_total{route}":                  "counter",
		"chittyid_sidecar_snapshot_last_write_duration_seconds{}":     "gauge",
		"chittyid_sidecar_cache_coalesced_waiters_total{}":            "counter",
		"chittyid_sidecar_lifecycle_transitions_total{}":              "counter",
		"chittyid_sidecar_config_generation{}":                        "gauge",
		"chittyid_sidecar_mints_in_flight{}":                          "gauge",
		"chittyid_sidecar_snapshot_loads_total{outcome}":              "counter",
		"chittyid_sidecar_breaker_trips_total{}":                      "counter",
		"chittyid_sidecar_cache_stale_served_total{}":                 "counter",
		"chittyid_sidecar_snapshot_last_write_bytes{}":                "gauge",
		"chittyid_sidecar_snapshot_last_write_entries{}":              "gauge",
		"chittyid_sidecar_cache_bytes{}":                              "gauge",
		"chittyid_sidecar_cache_evictions_total{}":                    "counter",
		"chittyid_sidecar_cache_misses_total{}":                       "counter",
		"chittyid_sidecar_fleet_calls_total{op,outcome}":              "counter",
		"chittyid_sidecar_fleet_call_duration_seconds{}":              "histogram",
		"chittyid_sidecar_fleet_lock_waits_total{outcome}":            "counter",
		"chittyid_sidecar_fleet_lock_wait_duration_seconds{}":         "histogram",
		"chittyid_sidecar_fleet_state{state}":                         "gauge",
		"chittyid_sidecar_upstream_attempt_duration_seconds_bucket{}": "",
	} {
		base, labels, _ := strings.Cut(strings.TrimSuffix(name, "}"), "{")
		f := fams[base]
		if want == "" {
			if f != nil {
				t.Errorf("%s: read as a family of its own", base)
			}
			continue
		}
		if f == nil {
			t.Errorf("%s: not found in %v", base, metricSources)
			continue
		}
		if f.Type != want {
			t.Errorf("%s: type %s, want %s", base, f.Type, want)
		}
		if got := strings.Join(sortedKeys(f.Labels), ","); got != labels {
			t.Errorf("%s: labels {%s}, want {%s}", base, got, labels)
		}
	}
	t.Logf("%d families read from %v", len(fams), metricSources)
}
