package upstream_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
)

const (
	appTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	appParent  = "00-" + appTraceID + "-00f067aa0ba902b7-01"
	appState   = "congo=t61rcWkgMzE"
)

// onTracer is a tracer that is on (its collector a closed port: it is not
// run) and records the spans that end.
func onTracer(t *testing.T, ratio float64) (*tracing.Tracer, *tracing.Recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := tracing.Defaults()
	cfg.Endpoint, cfg.SampleRatio = "http://"+ln.Addr().String(), ratio
	_ = ln.Close()
	if err := cfg.ApplyEnv(nil, func(string) bool { return true }, func(string, string) {}); err != nil {
		t.Fatal(err)
	}
	rec := tracing.NewRecorder()
	return tracing.New(cfg, tracing.Options{Recorder: rec}), rec
}

// A traced mint that upstream answers 503 once: one attempt span each
// (numbered, the second a resend with its reason), the backoff between
// them, all under the request's span in the app's trace; upstream sees
// the app's trace ID with each attempt's own span ID; no span holds the
// token.
func TestMintRetrySpans(t *testing.T) {
	t.Parallel()
	s, c := setup(t, sim.Config{}, nil)
	if err := s.SetFault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"mint"}, Count: 1}); err != nil {
		t.Fatal(err)
	}
	tr, rec := onTracer(t, 0) // only the app's sampled flag samples
	remote := tracing.ParseRemote([]byte(appParent), []byte(appState))
	ctx, srv := tr.StartServer(ctxFor(t, 5*time.Second), remote, "POST /v1/mint", time.Now())
	m, err := c.Mint(ctx, upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{Trace: remote})
	srv.End()
	if err != nil || m.Attempts != 2 {
		t.Fatalf("Mint = %+v, %v; want success on the second attempt", m, err)
	}
	var attempts []tracing.SpanRecord
	var backoff, server tracing.SpanRecord
	for _, sp := range rec.Ended() {
		switch {
		case sp.Name == "POST /v1/mint" && sp.Kind == "client":
			attempts = append(attempts, sp)
		case sp.Name == "backoff":
			backoff = sp
		case sp.Kind == "server":
			server = sp
		}
		for k, v := range sp.Attrs {
			if strings.Contains(v, token) {
				t.Errorf("span %s attribute %s holds the token", sp.Name, k)
			}
		}
	}
	if len(attempts) != 2 || server.TraceID != appTraceID {
		t.Fatalf("spans %+v: want two attempts in the app's trace", rec.Ended())
	}
	a1, a2 := attempts[0], attempts[1]
	for _, sp := range []tracing.SpanRecord{a1, a2, backoff} {
		if sp.ParentID != server.SpanID || sp.TraceID != appTraceID {
			t.Errorf("span %s %+v: want it under the server span %s", sp.Name, sp, server.SpanID)
		}
	}
	if a1.Attrs["chittyid.attempt"] != "1" || a1.Attrs["http.response.status_code"] != "503" || a1.Attrs["error.type"] != "unavailable" ||
		a1.Attrs["chittyid.breaker.state"] != "closed" || a1.Attrs["http.request.method"] != "POST" || a1.Attrs["url.template"] != "/v1/mint" {
		t.Errorf("first attempt %+v", a1.Attrs)
	}
	if a2.Attrs["chittyid.attempt"] != "2" || a2.Attrs["http.request.resend_count"] != "1" || a2.Attrs["chittyid.retry.reason"] != "status 503" ||
		a2.Attrs["http.response.status_code"] != "200" || a2.Status == "Error" {
		t.Errorf("second attempt %+v", a2.Attrs)
	}
	if backoff.Attrs["chittyid.retry.reason"] != "status 503" || backoff.Attrs["chittyid.backoff.ms"] == "" {
		t.Errorf("backoff span %+v", backoff)
	}
	var seen []string
	for _, r := range s.Requests() {
		if r.Route == "mint" {
			seen = append(seen, r.TraceParent)
			if r.TraceState != appState {
				t.Errorf("upstream got tracestate %q, want %q", r.TraceState, appState)
			}
		}
	}
	want := []string{"00-" + appTraceID + "-" + a1.SpanID + "-01", "00-" + appTraceID + "-" + a2.SpanID + "-01"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("upstream got traceparents %q, want each attempt's %q", seen, want)
	}
}

// With tracing off the app's trace context goes upstream unchanged, a
// malformed one not at all, and none is invented.
func TestTraceContextForwardedWithTracingOff(t *testing.T) {
	t.Parallel()
	s, c := setup(t, sim.Config{}, nil)
	for _, tc := range []struct {
		tp, ts         string
		wantTP, wantTS string
	}{
		{appParent, appState, appParent, appState},
		{"00-" + appTraceID + "-00f067aa0ba902b7-1", appState, "", ""},
		{"", "", "", ""},
	} {
		s.Reset()
		info := upstream.CallInfo{Trace: tracing.ParseRemote([]byte(tc.tp), []byte(tc.ts))}
		m, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", info)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Validate(ctxFor(t, 2*time.Second), m.ID, info); err != nil {
			t.Fatal(err)
		}
		for _, r := range s.Requests() {
			if r.TraceParent != tc.wantTP || r.TraceState != tc.wantTS {
				t.Errorf("app sent %q %q: upstream's %s got %q %q, want %q %q", tc.tp, tc.ts, r.Route, r.TraceParent, r.TraceState, tc.wantTP, tc.wantTS)
			}
		}
	}
}

// With tracing on, a health poll is a trace of its own, sent upstream
// only when sampled.
func TestHealthPollRootTrace(t *testing.T) {
	t.Parallel()
	for _, ratio := range []float64{1, 0} {
		s, cfg := startSim(t, sim.Config{})
		tr, rec := onTracer(t, ratio)
		c, err := upstream.New(cfg, chittyid.FormatOfficial, upstream.NewBreaker(cfg.Breaker, nil), upstream.Options{Tracer: tr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.Health(context.WithValue(ctxFor(t, 2*time.Second), struct{}{}, 1)); err != nil {
			t.Fatal(err)
		}
		reqs := s.Requests()
		if len(reqs) != 1 {
			t.Fatalf("upstream saw %d requests", len(reqs))
		}
		spans := rec.Ended()
		if ratio == 0 {
			if reqs[0].TraceParent != "" || len(spans) != 0 {
				t.Errorf("unsampled poll: traceparent %q, %d spans; want none", reqs[0].TraceParent, len(spans))
			}
			continue
		}
		if len(spans) != 1 || spans[0].ParentID != "" || spans[0].Name != "GET /v1/health" ||
			reqs[0].TraceParent != "00-"+spans[0].TraceID+"-"+spans[0].SpanID+"-01" {
			t.Errorf("sampled poll: spans %+v, upstream got %q; want one root span sent as the parent", spans, reqs[0].TraceParent)
		}
	}
}
