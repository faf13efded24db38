package sidecar_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc/jaegertest"
)

const (
	appTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	appSpanID  = "00f067aa0ba902b7"
	appSampled = "00-" + appTraceID + "-" + appSpanID + "-01"
)

// startTraced runs a sidecar with tracing on (its collector a closed port,
// so spans are dropped after the recorder saw them) and sampleRatio ratio.
func startTraced(t *testing.T, ratio string, extra string) (*harness, *tracing.Recorder) {
	t.Helper()
	rec := tracing.NewRecorder()
	h := launch(t, sim.Config{}, "tracing: {endpoint: \"http://"+closedAddr(t)+"\", sampleRatio: "+ratio+"}\n"+extra,
		nil, false, sidecar.Timeouts{}, func(o *sidecar.Options) { o.TraceRecorder = rec })
	return h, rec
}

func spansNamed(rec *tracing.Recorder, name string) []tracing.SpanRecord {
	var out []tracing.SpanRecord
	for _, s := range rec.Ended() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// A sampled mint that upstream fails once: the server span in the app's
// trace with the attempts and the backoff under it; upstream sees the
// app's trace ID.
func TestTracedMint(t *testing.T) {
	t.Parallel()
	h, rec := startTraced(t, "0", "upstream:\n  retry: {baseDelay: 1ms, maxDelay: 2ms}\n")
	h.fault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"mint"}, Count: 1})
	r := h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "traceparent", appSampled, "tracestate", "app=1")
	r.expect(t, "mint", 200, "")
	srv := spansNamed(rec, "POST /v1/mint")
	var server tracing.SpanRecord
	attempts := 0
	for _, s := range srv {
		switch s.Kind {
		case "server":
			server = s
		case "client":
			attempts++
		}
	}
	if server.TraceID != appTraceID || server.ParentID != appSpanID || server.Attrs["http.response.status_code"] != "200" ||
		server.Attrs["http.route"] != "/v1/mint" || attempts != 2 || len(spansNamed(rec, "backoff")) != 1 {
		t.Fatalf("spans %+v: want the server span in the app's trace, two attempts and a backoff", rec.Ended())
	}
	for _, req := range h.sim.Requests() {
		if req.Route == "mint" && (!strings.HasPrefix(req.TraceParent, "00-"+appTraceID+"-") || req.TraceState != "app=1") {
			t.Errorf("upstream got traceparent %q tracestate %q: want the app's trace", req.TraceParent, req.TraceState)
		}
	}
	// The request histogram keeps the trace as an exemplar, in OpenMetrics.
	req, _ := http.NewRequest("GET", h.base+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"chittyid_sidecar_request_duration_seconds_bucket", "chittyid_sidecar_upstream_attempt_duration_seconds_bucket"} {
		if !strings.Contains(string(body), `trace_id="`+appTraceID+`"`) || !hasExemplar(string(body), m) {
			t.Errorf("/metrics (OpenMetrics) has no exemplar with the trace ID on %s", m)
		}
	}
}

func hasExemplar(page, metric string) bool {
	for l := range strings.SplitSeq(page, "\n") {
		if strings.HasPrefix(l, metric) && strings.Contains(l, `# {trace_id="`+appTraceID+`"}`) {
			return true
		}
	}
	return false
}

// A validate miss: the server span, the caller's wait, the flight and the
// attempt under it; a cached validate makes a span only when the app's
// traceparent is sampled.
func TestTracedValidate(t *testing.T) {
	t.Parallel()
	h, rec := startTraced(t, "1", "")
	id := h.mustMint("PEO")
	h.sim.Reset() // forgets the minted ID: the sidecar still has it cached
	before := len(rec.Ended())
	h.validate(id).expect(t, "cached validate", 200, "")
	h.do("GET", "/v1/validate/"+id, "", "traceparent", "00-"+appTraceID+"-"+appSpanID+"-00").expect(t, "cached validate", 200, "")
	if n := len(rec.Ended()); n != before {
		t.Errorf("cached validates without a sampled traceparent made %d spans", n-before)
	}
	h.do("GET", "/v1/validate/"+id, "", "traceparent", appSampled).expect(t, "cached validate", 200, "")
	cached := spansNamed(rec, "GET /v1/validate/{id}")
	if len(cached) != 1 || cached[0].TraceID != appTraceID || cached[0].Attrs["chittyid.cache"] != "HIT" {
		t.Errorf("a sampled cached validate: spans %+v, want one server span, HIT", cached)
	}

	other := unknownID(1) // not cached: goes upstream
	h.do("GET", "/v1/validate/"+other, "", "traceparent", appSampled)
	byName := map[string]tracing.SpanRecord{}
	for _, s := range rec.Ended() {
		if s.TraceID == appTraceID {
			byName[s.Name+"/"+s.Kind] = s
		}
	}
	var server tracing.SpanRecord
	for _, s := range spansNamed(rec, "GET /v1/validate/{id}") {
		if s.Attrs["url.path"] == "/v1/validate/"+other {
			server = s
		}
	}
	wait, flight, attempt := byName["validate flight wait/internal"], byName["validate flight/internal"], byName["GET /v1/validate/{id}/client"]
	if server.SpanID == "" || wait.ParentID != server.SpanID || flight.ParentID != wait.SpanID || attempt.ParentID != flight.SpanID {
		t.Fatalf("spans %+v: want server > flight wait > flight > attempt", rec.Ended())
	}
	found := false
	for _, r := range h.sim.Requests() {
		found = found || (r.Route == "validate" && r.TraceParent == "00-"+appTraceID+"-"+attempt.SpanID+"-01")
	}
	if !found {
		t.Errorf("upstream got %+v: want the attempt's span as parent", h.sim.Requests())
	}
}

// With tracing off a validate miss forwards the app's trace context
// unchanged, and a malformed one not at all.
func TestValidateMissForwardsTraceContext(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "")
	id := h.mustMint("PEO")
	h.do("GET", "/v1/validate/"+id+"x", "", "traceparent", appSampled) // a bad ID: answered locally
	for i, tp := range []string{appSampled, "00-" + appTraceID + "-" + appSpanID + "-0"} {
		h.sim.Reset()
		other := unknownID(i)
		h.do("GET", "/v1/validate/"+other, "", "traceparent", tp, "tracestate", "app=1")
		var got []sim.Request
		for _, r := range h.sim.Requests() {
			if r.Route == "validate" {
				got = append(got, r)
			}
		}
		want, wantState := tp, "app=1"
		if i == 1 {
			want, wantState = "", ""
		}
		if len(got) != 1 || got[0].TraceParent != want || got[0].TraceState != wantState {
			t.Errorf("app sent %q: upstream got %+v, want %q %q", tp, got, want, wantState)
		}
	}
}

// The spans reach a real trace backend: a sampled mint that upstream fails
// once is one trace in Jaeger with the app's trace ID, the server span,
// two attempt spans and the backoff, and upstream saw that trace ID.
func TestTracesInJaeger(t *testing.T) {
	t.Parallel()
	j := jaegertest.Start(t)
	h := launch(t, sim.Config{}, "tracing: {endpoint: \""+j.OTLPEndpoint()+"\", sampleRatio: 0}\nupstream:\n  retry: {baseDelay: 1ms, maxDelay: 2ms}\n",
		nil, false, sidecar.Timeouts{}, envOf(map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "50"}))
	h.fault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"mint"}, Count: 1})
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "traceparent", appSampled).expect(t, "mint", 200, "")

	var spans []jaegerproc.Span
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if spans, err = j.Trace(context.Background(), appTraceID); err != nil {
			t.Fatal(err)
		}
		if len(spans) >= 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var server jaegerproc.Span
	var attempts, backoffs []jaegerproc.Span
	for _, s := range spans {
		switch {
		case s.OperationName == "POST /v1/mint" && s.Tags["span.kind"] == "server":
			server = s
		case s.OperationName == "POST /v1/mint" && s.Tags["span.kind"] == "client":
			attempts = append(attempts, s)
		case s.OperationName == "backoff":
			backoffs = append(backoffs, s)
		}
	}
	if server.SpanID == "" || server.ParentID != appSpanID || server.Service != "chittyid-sidecar" || len(attempts) != 2 || len(backoffs) != 1 {
		t.Fatalf("Jaeger holds %d spans of trace %s: %+v; want the server span (child of the app's %s), two attempts and a backoff", len(spans), appTraceID, spans, appSpanID)
	}
	for _, s := range spans {
		for k, v := range s.Tags {
			if strings.Contains(v, testToken) {
				t.Errorf("span %s tag %s holds the upstream token", s.OperationName, k)
			}
		}
	}
	for _, s := range append(attempts, backoffs...) {
		if s.ParentID != server.SpanID {
			t.Errorf("span %s %s: parent %s, want the server span %s", s.OperationName, s.SpanID, s.ParentID, server.SpanID)
		}
	}
	var seen []string
	for _, r := range h.sim.Requests() {
		if r.Route == "mint" {
			seen = append(seen, r.TraceParent)
		}
	}
	if len(seen) != 2 || !strings.HasPrefix(seen[0], "00-"+appTraceID+"-") || !strings.HasPrefix(seen[1], "00-"+appTraceID+"-") {
		t.Errorf("upstream got traceparents %q: want the app's trace ID on both attempts", seen)
	}
}

// With the collector down, requests are answered as ever and the spans
// are dropped and counted.
func TestCollectorDown(t *testing.T) {
	t.Parallel()
	h := launch(t, sim.Config{}, "tracing: {endpoint: \"http://"+closedAddr(t)+"\"}\n",
		nil, false, sidecar.Timeouts{}, envOf(map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "20"}))
	for range 5 {
		h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "traceparent", appSampled).expect(t, "mint", 200, "")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		page := h.metricsText()
		if n := metricValue(page, `chittyid_sidecar_trace_spans_dropped_total{reason="export_failed"}`); n >= 5 {
			if metricValue(page, "chittyid_sidecar_trace_spans_exported_total") != 0 {
				t.Errorf("spans exported to a collector that is down")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drop counter did not reach 5 spans: %q", metricLine(page, "chittyid_sidecar_trace_spans_dropped_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(h.logs.String(), "trace export failed") {
		t.Error("the failed export was not logged")
	}
}

// metricValue is the value of the sample named series (name and labels
// as the text format writes them) on a /metrics page; -1 if absent.
func metricValue(page, series string) float64 {
	l := metricLine(page, series)
	if l == "" {
		return -1
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, series)), 64)
	if err != nil {
		return -1
	}
	return v
}

func metricLine(page, series string) string {
	for l := range strings.SplitSeq(page, "\n") {
		if strings.HasPrefix(l, series+" ") {
			return l
		}
	}
	return ""
}

// Tracing follows a reload: an endpoint added turns spans on, a new ratio
// samples new traces at once, the endpoint removed turns them off.
func TestTracingReload(t *testing.T) {
	t.Parallel()
	rec := tracing.NewRecorder()
	h := launch(t, sim.Config{}, "", nil, true, sidecar.Timeouts{}, func(o *sidecar.Options) { o.TraceRecorder = rec })
	base := mustRead(t, h.file)
	servers := func() int {
		n := 0
		for _, s := range rec.Ended() {
			if s.Kind == "server" {
				n++
			}
		}
		return n
	}
	h.mustMint("PEO")
	if n := servers(); n != 0 {
		t.Fatalf("%d server spans with tracing off", n)
	}
	collector := "http://" + closedAddr(t)
	h.reloadTo(base+"tracing: {endpoint: \""+collector+"\", sampleRatio: 0}\n", 2)
	h.mustMint("PEO")
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "traceparent", appSampled).expect(t, "mint", 200, "")
	if n := servers(); n != 1 {
		t.Fatalf("%d server spans after turning tracing on at ratio 0, want 1 (the app's sampled one)", n)
	}
	h.reloadTo(base+"tracing: {endpoint: \""+collector+"\", sampleRatio: 1}\n", 3)
	h.mustMint("PEO")
	if n := servers(); n != 2 {
		t.Fatalf("%d server spans after raising the ratio to 1, want 2", n)
	}
	h.reloadTo(base, 4)
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "traceparent", appSampled).expect(t, "mint", 200, "")
	if n := servers(); n != 2 {
		t.Fatalf("%d server spans after turning tracing off, want still 2", n)
	}
}

// Callers that miss the same ID at once share one flight: the upstream
// call carries the trace of the caller that started it, and the others'
// waits link to its flight.
func TestSharedFlightTraces(t *testing.T) {
	t.Parallel()
	h, rec := startTraced(t, "0", "")
	h.fault(sim.Fault{Mode: sim.ModeSlow, Latency: "300ms", Routes: []string{"validate"}})
	id := unknownID(7)
	leader := "00-11111111111111111111111111111111-1111111111111111-01"
	waiter := "00-22222222222222222222222222222222-2222222222222222-01"
	done := make(chan error, 1)
	go func() {
		_, err := h.try("GET", "/v1/validate/"+id, "", "traceparent", leader)
		done <- err
	}()
	// The waiter comes once the leader's flight is under way upstream.
	deadline := time.Now().Add(10 * time.Second)
	for h.sim.Stats().Validate == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h.do("GET", "/v1/validate/"+id, "", "traceparent", waiter)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var calls []sim.Request
	for _, r := range h.sim.Requests() {
		if r.Route == "validate" {
			calls = append(calls, r)
		}
	}
	if len(calls) != 1 || !strings.HasPrefix(calls[0].TraceParent, "00-11111111111111111111111111111111-") {
		t.Fatalf("upstream validates %+v: want one, in the leader's trace", calls)
	}
	var flight, wait tracing.SpanRecord
	for _, s := range rec.Ended() {
		switch {
		case s.Name == "validate flight" && s.TraceID == "11111111111111111111111111111111":
			flight = s
		case s.Name == "validate flight wait" && s.TraceID == "22222222222222222222222222222222":
			wait = s
		}
	}
	if flight.SpanID == "" || len(wait.Links) != 1 || wait.Links[0] != flight.SpanID || wait.Attrs["chittyid.flight.coalesced"] != "true" {
		t.Errorf("the waiter's wait %+v: want a link to the leader's flight %q", wait, flight.SpanID)
	}
}
