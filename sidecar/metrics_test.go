package sidecar_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape parses /metrics with client_golang's own text parser.
func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	resp, err := h.http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		h.t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels include
// every pair in labels (name=value, …), or -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestMetricsFamiliesAndScenario(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  retry: {maxAttempts: 2, baseDelay: 1ms, maxDelay: 1ms}\n  breaker: {failures: 2, openTimeout: 1h}\nhealth: {interval: 1h, timeout: 1s}\n")
	h.waitState(fsm.Connected)
	// Before any request (but this scrape): the families served from the
	// start, and none of those a first use creates.
	checkTypes := func(fams map[string]*dto.MetricFamily, types map[string]dto.MetricType) {
		t.Helper()
		for name, typ := range types {
			f, ok := fams[name]
			if !ok {
				t.Errorf("/metrics lacks %s", name)
				continue
			}
			if f.GetType() != typ {
				t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
			}
		}
	}
	fams := h.scrape()
	checkTypes(fams, map[string]dto.MetricType{
		"chittyid_sidecar_cache_hits_total":              dto.MetricType_COUNTER,
		"chittyid_sidecar_cache_misses_total":            dto.MetricType_COUNTER,
		"chittyid_sidecar_cache_stale_served_total":      dto.MetricType_COUNTER,
		"chittyid_sidecar_cache_evictions_total":         dto.MetricType_COUNTER,
		"chittyid_sidecar_cache_entries":                 dto.MetricType_GAUGE,
		"chittyid_sidecar_cache_bytes":                   dto.MetricType_GAUGE,
		"chittyid_sidecar_cache_coalesced_waiters_total": dto.MetricType_COUNTER,
		"chittyid_sidecar_breaker_state":                 dto.MetricType_GAUGE,
		"chittyid_sidecar_breaker_trips_total":           dto.MetricType_COUNTER,
		"chittyid_sidecar_lifecycle_state":               dto.MetricType_GAUGE,
		"chittyid_sidecar_lifecycle_transitions_total":   dto.MetricType_COUNTER,
		"chittyid_sidecar_health_polls_total":            dto.MetricType_COUNTER,
		"chittyid_sidecar_mints_in_flight":               dto.MetricType_GAUGE,
		"chittyid_sidecar_config_reloads_total":          dto.MetricType_COUNTER,
		"chittyid_sidecar_config_generation":             dto.MetricType_GAUGE,
		"chittyid_sidecar_build_info":                    dto.MetricType_GAUGE,
		"process_resident_memory_bytes":                  dto.MetricType_GAUGE,
		"process_open_fds":                               dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                      dto.MetricType_COUNTER,
		"go_goroutines":                                  dto.MetricType_GAUGE,
		"go_gc_duration_seconds":                         dto.MetricType_SUMMARY,
		"go_gc_heap_live_bytes":                          dto.MetricType_GAUGE,
		"go_gc_gomemlimit_bytes":                         dto.MetricType_GAUGE,
	})
	for _, name := range []string{"chittyid_sidecar_requests_total", "chittyid_sidecar_request_duration_seconds",
		"chittyid_sidecar_validate_answers_total", "chittyid_sidecar_rate_limited_total", "chittyid_sidecar_upstream_attempts_total",
		"chittyid_sidecar_upstream_tls_handshakes_total", "chittyid_sidecar_fleet_state", "chittyid_sidecar_snapshot_writes_total"} {
		if fams[name] != nil {
			t.Errorf("/metrics serves %s before any request, or with its feature off", name)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{ // what the shipped alerts need from zero
		{"chittyid_sidecar_health_polls_total", []string{"outcome=failed"}},
		{"chittyid_sidecar_config_reloads_total", []string{"outcome=rejected"}},
		{"chittyid_sidecar_lifecycle_state", []string{"state=FAILED"}},
		{"chittyid_sidecar_breaker_state", []string{"state=half-open"}},
	} {
		if got := value(fams, c.name, c.labels...); got != 0 {
			t.Errorf("%s%v = %v before any failure, want 0", c.name, c.labels, got)
		}
	}
	if v := value(fams, "chittyid_sidecar_lifecycle_state", "state=CONNECTED"); v != 1 {
		t.Errorf("lifecycle_state{CONNECTED} = %v, want 1", v)
	}

	ids := []string{h.mustMint("PEO"), h.mustMint("EVNT"), h.mustMint("INFO")}
	for _, id := range ids {
		h.validate(id)
	}
	h.validate("nope")
	h.fault(sim.Fault{Mode: "status", Status: 503, Routes: []string{"mint"}})
	h.mint("PEO") // two failed attempts: the breaker opens
	h.mint("PEO").expect(t, "with the breaker open", 503, "CIRCUIT_OPEN")
	h.waitState(fsm.Reconnecting)

	fams = h.scrape()
	checkTypes(fams, map[string]dto.MetricType{
		"chittyid_sidecar_requests_total":           dto.MetricType_COUNTER,
		"chittyid_sidecar_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"chittyid_sidecar_validate_answers_total":   dto.MetricType_COUNTER,
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64 // -1: not served
	}{
		{"chittyid_sidecar_requests_total", []string{"route=mint", "family=v1", "code=200"}, 3},
		{"chittyid_sidecar_requests_total", []string{"route=mint", "family=v1", "code=503"}, 2},
		{"chittyid_sidecar_requests_total", []string{"route=validate", "family=v1", "code=200"}, 4},
		{"chittyid_sidecar_requests_total", []string{"route=validate", "family=worker", "code=200"}, -1},
		{"chittyid_sidecar_requests_total", []string{"route=metrics", "family=root", "code=200"}, 1},
		{"chittyid_sidecar_request_duration_seconds", []string{"route=mint"}, 5},
		{"chittyid_sidecar_request_duration_seconds", []string{"route=metrics"}, -1}, // answered from memory: counted, not timed
		{"chittyid_sidecar_validate_answers_total", []string{"cache=STALE"}, -1},
		{"chittyid_sidecar_rate_limited_total", []string{"route=mint"}, -1},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=HIT"}, 3},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=LOCAL"}, 1},
		{"chittyid_sidecar_cache_hits_total", nil, 3},
		{"chittyid_sidecar_cache_entries", nil, 3},
		{"chittyid_sidecar_upstream_attempts_total", []string{"op=mint", "outcome=ok"}, 3},
		{"chittyid_sidecar_upstream_attempts_total", []string{"op=mint", "outcome=unavailable"}, 2},
		{"chittyid_sidecar_upstream_retries_total", []string{"op=mint"}, 1},
		{"chittyid_sidecar_breaker_trips_total", nil, 1},
		{"chittyid_sidecar_breaker_state", []string{"state=open"}, 1},
		{"chittyid_sidecar_breaker_state", []string{"state=closed"}, 0},
		{"chittyid_sidecar_lifecycle_state", []string{"state=RECONNECTING"}, 1},
		{"chittyid_sidecar_lifecycle_transitions_total", nil, 2},
		{"chittyid_sidecar_health_polls_total", []string{"outcome=ok"}, 1},
		{"chittyid_sidecar_config_generation", nil, 1},
		{"chittyid_sidecar_build_info", []string{"version=test"}, 1},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestOpsListener serves /metrics and the probes on metrics.listen and
// nothing else, while the API stays on listen.
func TestOpsListener(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "metrics: {listen: 127.0.0.1:0}\n")
	h.waitState(fsm.Connected)
	ops := "http://" + h.sc.OpsAddr()
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/health": 200, "/v1/mint": 404, "/v1/validate/CT-A-CHI-1234-I-24-A-0": 404} {
		resp, err := h.http.Get(ops + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("ops %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	h.mint("PEO").expect(t, "mint on the API listener", 200, "")
	// The operations listener answers whoever reaches the pod: its /health
	// says only whether the sidecar is ready, never the upstream URL or the
	// config. (It checks Host as the API does, accepting the address it was
	// reached at: TestOpsListenerChecksHost.)
	resp, err := h.http.Get(ops + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(doc) != 3 || doc["status"] != "ready" || doc["ready"] != true || doc["state"] != "CONNECTED" {
		t.Errorf("ops /health: HTTP %d %v; want 200 and only status, ready and state", resp.StatusCode, doc)
	}
}

// TestEachAnswerCountedOnce: one HIT, one MISS, one STALE and one LOCAL
// answer, and every cache counter, answer counter and /health figure is
// exactly what those four requests make: a request looks the cache up
// once, so a miss is counted once, whether it is then fetched, served
// stale or answered with an error.
func TestEachAnswerCountedOnce(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "validate: {ttl: 1m, negativeTtl: 1m, staleIfError: 1h}\nupstream:\n  retry: {maxAttempts: 1}\n")
	h.waitState(fsm.Connected)
	old := h.mustMint("PEO") // stored by the mint, not looked up
	h.clock.advance(2 * time.Minute)
	fresh := h.mustMint("EVNT")
	for _, tc := range []struct {
		id, xcache string
		fault      *sim.Fault
	}{
		{fresh, "HIT", nil},
		{"CT-Z-ZZZ-0001-P-26-Z-0", "MISS", nil}, // unknown upstream: a "not valid" verdict
		{old, "STALE", &sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"validate"}}},
		{"not-an-id", "LOCAL", nil},
	} {
		if tc.fault != nil {
			h.fault(*tc.fault)
		}
		r := h.validate(tc.id)
		if r.status != 200 || r.header.Get("X-Cache") != tc.xcache {
			t.Fatalf("validate %s: HTTP %d X-Cache %q, want 200 %s: %s", tc.id, r.status, r.header.Get("X-Cache"), tc.xcache, r.raw)
		}
	}
	fams := h.scrape()
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"chittyid_sidecar_cache_hits_total", nil, 1},
		{"chittyid_sidecar_cache_misses_total", nil, 2}, // MISS and STALE; LOCAL never reaches the cache
		{"chittyid_sidecar_cache_stale_served_total", nil, 1},
		{"chittyid_sidecar_cache_coalesced_waiters_total", nil, 0},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=HIT"}, 1},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=MISS"}, 1},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=STALE"}, 1},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=LOCAL"}, 1},
		{"chittyid_sidecar_upstream_attempts_total", []string{"op=validate", "outcome=ok"}, 1},
		{"chittyid_sidecar_upstream_attempts_total", []string{"op=validate", "outcome=unavailable"}, 1},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	doc := cacheDoc(h)
	for k, want := range map[string]any{"hits": 1.0, "misses": 2.0, "staleServed": 1.0, "coalesced": 0.0, "hitRate": "33.33%"} {
		if doc[k] != want {
			t.Errorf("/health resilience.cache.%s = %v, want %v", k, doc[k], want)
		}
	}
}

// TestRegistryWithRuntimeCollectors: an embedding program's registry
// (Options.Registry) that has client_golang's process and Go collectors
// already, with their default options, keeps them: the sidecar starts, and
// serves each runtime series once, the embedder's.
func TestRegistryWithRuntimeCollectors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	h := launch(t, sim.Config{}, "", nil, false, sidecar.Timeouts{}, func(o *sidecar.Options) { o.Registry = reg })
	fams := h.scrape()
	for _, name := range []string{"process_start_time_seconds", "go_goroutines", "go_memstats_alloc_bytes", "chittyid_sidecar_cache_hits_total"} {
		if f := fams[name]; f == nil || len(f.GetMetric()) != 1 {
			t.Errorf("%s: %v, want one series", name, f)
		}
	}
	if fams["go_gc_heap_live_bytes"] != nil {
		t.Error("the sidecar's own Go collector registered beside the embedder's")
	}
}
