package tracing

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

var timeZero time.Time

// newTestTracer returns a tracer on, exporting to a closed port, with a
// recorder; it is not run.
func newTestTracer(t *testing.T, ratio float64) (*Tracer, *Recorder) {
	t.Helper()
	cfg := Defaults()
	cfg.Endpoint = "http://" + closedAddr(t)
	cfg.SampleRatio = ratio
	if err := cfg.ApplyEnv(nil, func(string) bool { return true }, func(string, string) {}); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	return New(cfg, Options{Version: "test", Recorder: rec}), rec
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestServerSpanContinuesTheAppsTrace(t *testing.T) {
	t.Parallel()
	tr, rec := newTestTracer(t, 0) // ratio 0: only the app's flag samples
	ctx, srv := tr.StartServer(context.Background(), ParseRemote([]byte(goodTP), []byte(goodTS)), "POST /v1/mint", time.Now())
	actx, att := Start(ctx, "POST", KindClient)
	att.SetInt("http.request.resend_count", 1)
	tp, ts, ok := Header(actx, Remote{}, nil)
	att.End()
	srv.End()
	if !ok || !strings.HasPrefix(string(tp), "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(string(tp), "-01") {
		t.Fatalf("traceparent upstream = %q, %v; want the app's trace ID, sampled", tp, ok)
	}
	if strings.Contains(string(tp), "00f067aa0ba902b7") {
		t.Errorf("traceparent upstream %q carries the app's span ID, not the attempt's", tp)
	}
	if ts != goodTS {
		t.Errorf("tracestate upstream = %q, want %q", ts, goodTS)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("recorded %d spans, want 2: %+v", len(spans), spans)
	}
	a, s := spans[0], spans[1]
	if s.ParentID != "00f067aa0ba902b7" || s.Kind != "server" || a.ParentID != s.SpanID || a.Kind != "client" {
		t.Errorf("spans %+v, %+v: want a server span under the app's and an attempt under it", s, a)
	}
	if string(tp[36:52]) != a.SpanID {
		t.Errorf("traceparent upstream %q: parent ID is not the attempt span's %s", tp, a.SpanID)
	}
}

// An app's unsampled context is forwarded (as a child) but not recorded;
// a request without one gets none while the ratio does not sample it.
func TestUnsampledContexts(t *testing.T) {
	t.Parallel()
	tr, rec := newTestTracer(t, 0)
	unsampled := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	ctx, srv := tr.StartServer(context.Background(), ParseRemote([]byte(unsampled), nil), "x", time.Now())
	actx, att := Start(ctx, "POST", KindClient)
	tp, _, ok := Header(actx, Remote{}, nil)
	if !ok || !strings.HasPrefix(string(tp), "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(string(tp), "-00") || strings.Contains(string(tp), "00f067aa0ba902b7") {
		t.Errorf("traceparent upstream = %q, %v; want the app's trace, a new parent ID, not sampled", tp, ok)
	}
	att.End()
	srv.End()
	ctx, srv = tr.StartServer(context.Background(), Remote{}, "x", time.Now())
	if _, _, ok := Header(ctx, Remote{}, nil); ok {
		t.Error("an unsampled new trace was sent upstream")
	}
	srv.End()
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("recorded %d unsampled spans", n)
	}
}

func TestRootIgnoresTheContextsTrace(t *testing.T) {
	t.Parallel()
	tr, rec := newTestTracer(t, 1)
	ctx, srv := tr.StartServer(context.Background(), ParseRemote([]byte(goodTP), nil), "x", time.Now())
	_, root := tr.StartRoot(ctx, "health poll", KindClient)
	root.End()
	srv.End()
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].TraceID == spans[1].TraceID || spans[0].ParentID != "" {
		t.Errorf("spans %+v: want the poll in a trace of its own", spans)
	}
}

func TestStartWithoutASpanMakesNone(t *testing.T) {
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		c, s := Start(ctx, "x", KindInternal)
		s.SetInt("k", 1)
		s.End()
		_ = c
	}); n != 0 {
		t.Errorf("Start without a span allocates %v times", n)
	}
}

func TestFlightsLinkTheWaiters(t *testing.T) {
	t.Parallel()
	tr, rec := newTestTracer(t, 1)
	var f Flights
	lctx, leader := tr.StartServer(context.Background(), Remote{}, "leader", time.Now())
	fctx, flight := Start(lctx, "flight", KindInternal)
	end := f.Lead(fctx, "ID")
	wctx, waiter := tr.StartServer(context.Background(), Remote{}, "waiter", time.Now())
	_, wait := f.StartWait(wctx, "wait", "ID")
	wait.End()
	end()
	flight.End()
	_, late := f.StartWait(wctx, "wait after", "ID")
	late.End()
	waiter.End()
	leader.End()
	byName := map[string]SpanRecord{}
	for _, s := range rec.Ended() {
		byName[s.Name] = s
	}
	w := byName["wait"]
	if len(w.Links) != 1 || w.Links[0] != byName["flight"].SpanID || w.Attrs["chittyid.flight.coalesced"] != "true" {
		t.Errorf("wait span %+v: want a link to the flight %s", w, byName["flight"].SpanID)
	}
	if l := byName["wait after"]; len(l.Links) != 0 {
		t.Errorf("a wait after the flight ended links to it: %+v", l)
	}
}

// With the collector down, spans are dropped and counted, never waited on.
func TestCollectorDownCountsDrops(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.Endpoint = "http://" + closedAddr(t)
	env := map[string]string{EnvQueueSize: "4", EnvBatchSize: "2", EnvDelay: "10"}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, func(string) bool { return true }, func(string, string) {}); err != nil {
		t.Fatal(err)
	}
	var failures int
	tr := New(cfg, Options{OnExportError: func(error, int) { failures++ }})
	// Not run yet: the queue (4) fills, the rest are dropped at once.
	for range 10 {
		_, s := tr.StartServer(context.Background(), Remote{}, "x", time.Now())
		s.End()
	}
	if st := tr.Stats(); st.DroppedQueueFull != 6 {
		t.Errorf("stats %+v: want 6 dropped with the queue full", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().DroppedExportFailed < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if st := tr.Stats(); st.DroppedExportFailed != 4 || st.Exported != 0 || failures == 0 {
		t.Errorf("stats %+v, %d failures reported: want the 4 queued spans failed", st, failures)
	}
}

// TestExportErrorRedactsHeaders: a collector that refuses an export and
// echoes the headers it was sent (the API key whole, its credential in
// another letter case) in its answer, which the export's error quotes,
// never gets their values into what OnExportError hears.
func TestExportErrorRedactsHeaders(t *testing.T) {
	t.Parallel()
	const key, auth = "collector-key-0042", "Bearer Tok3n-of-the-collector"
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "bad key %q, bad auth %s", r.Header.Get("X-Api-Key"), strings.ToUpper(r.Header.Get("Authorization")))
	}))
	t.Cleanup(collector.Close)
	cfg := Defaults()
	cfg.Endpoint = collector.URL
	cfg.Headers = map[string]field.Secret{"X-Api-Key": key, "Authorization": auth}
	env := map[string]string{EnvBatchSize: "1"}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, func(string) bool { return true }, func(string, string) {}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	tr := New(cfg, Options{OnExportError: func(err error, _ int) {
		select {
		case errs <- err:
		default:
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	defer func() { cancel(); <-done }()
	_, s := tr.StartServer(context.Background(), Remote{}, "x", time.Now())
	s.End()
	select {
	case err := <-errs:
		text := strings.ToLower(err.Error())
		if strings.Contains(text, strings.ToLower(key)) || strings.Contains(text, "tok3n-of-the-collector") || !strings.Contains(text, "bad key") || strings.Count(text, field.Redacted) != 2 {
			t.Errorf("export error %q: want the collector's answer with both values [redacted]", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no export error reported")
	}
}
