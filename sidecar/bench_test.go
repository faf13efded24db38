package sidecar_test

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/valyala/fasthttp"
)

// BenchmarkValidateCachedHandler measures a cached validate through the real
// fasthttp handler, without the network: the path the load benchmark stresses.
func BenchmarkValidateCachedHandler(b *testing.B) {
	b.Run("access log off", func(b *testing.B) { benchValidateCached(b, nil, nil, getValidate) })
	b.Run("access log via slog", func(b *testing.B) {
		benchValidateCached(b, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil, getValidate)
	})
	b.Run("access log batched", func(b *testing.B) {
		benchValidateCached(b, slog.New(slog.NewJSONHandler(io.Discard, nil)), io.Discard, getValidate)
	})
	// The worker's route: the body to parse and a timestamp in the answer.
	b.Run("POST /api/validate, access log off", func(b *testing.B) { benchValidateCached(b, nil, nil, postWorkerValidate) })
	// Tracing on (a collector that is not there: spans are queued, then
	// dropped): a cached validate makes a span only for an app's sampled
	// traceparent.
	b.Run("tracing on, no traceparent", func(b *testing.B) {
		benchValidateCachedTraced(b, "", getValidate)
	})
	b.Run("tracing on, traceparent not sampled", func(b *testing.B) {
		benchValidateCachedTraced(b, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", getValidate)
	})
	b.Run("tracing on, traceparent sampled", func(b *testing.B) {
		benchValidateCachedTraced(b, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", getValidate)
	})
}

func benchValidateCachedTraced(b *testing.B, traceparent string, ask func(*fasthttp.Request, string)) {
	withParent := func(req *fasthttp.Request, id string) {
		ask(req, id)
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
	}
	benchValidateCachedConfig(b, "tracing: {endpoint: \"http://"+closedAddr(b)+"\"}\n", nil, nil, withParent)
}

// getValidate and postWorkerValidate set req up to validate id.
func getValidate(req *fasthttp.Request, id string) {
	req.Header.SetMethod("GET")
	req.SetRequestURI("/v1/validate/" + id)
}

func postWorkerValidate(req *fasthttp.Request, id string) {
	req.Header.SetMethod("POST")
	req.SetRequestURI("/api/validate")
	req.Header.SetContentType("application/json")
	req.SetBodyString(`{"id":"` + id + `"}`)
}

func benchValidateCached(b *testing.B, log *slog.Logger, out io.Writer, ask func(*fasthttp.Request, string)) {
	benchValidateCachedConfig(b, "", log, out, ask)
}

func benchValidateCachedConfig(b *testing.B, extra string, log *slog.Logger, out io.Writer, ask func(*fasthttp.Request, string)) {
	h := benchSidecar(b, extra, sidecar.Options{Version: "bench", Logger: log, LogOutput: out})
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	mintRequest(&req, "")
	ctx.Init(&req, nil, nil)
	h(&ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("mint: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	id := string(ctx.Response.Body()[len(`{"chittyId":"`):][:22])

	req.Reset()
	ask(&req, id)
	req.Header.SetHost("127.0.0.1:8787")
	ctx.Init(&req, nil, nil)
	h(&ctx)
	if got := string(ctx.Response.Header.Peek("X-Cache")); got != "HIT" {
		b.Fatalf("X-Cache = %q: %s", got, ctx.Response.Body())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ctx.Response.Reset()
		h(&ctx)
	}
}

// BenchmarkMintTraced measures a mint through the handler to the simulator
// on loopback, with tracing off and on (the collector not there: spans
// are queued and dropped): the added latency of a sampled mint's spans
// (server, attempt) and of the trace context sent upstream.
func BenchmarkMintTraced(b *testing.B) {
	const sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b.Run("tracing off", func(b *testing.B) { benchMint(b, "", "") })
	b.Run("tracing off, traceparent forwarded", func(b *testing.B) { benchMint(b, "", sampled) })
	b.Run("tracing on, not sampled", func(b *testing.B) {
		benchMint(b, "tracing: {endpoint: \"http://"+closedAddr(b)+"\", sampleRatio: 0}\n", "")
	})
	b.Run("tracing on, sampled", func(b *testing.B) {
		benchMint(b, "tracing: {endpoint: \"http://"+closedAddr(b)+"\", sampleRatio: 0}\n", sampled)
	})
}

func benchMint(b *testing.B, extra, traceparent string) {
	h := benchSidecar(b, "log: {access: false}\n"+extra, sidecar.Options{Version: "bench"})
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	mintRequest(&req, traceparent)
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("mint: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// benchSidecar starts a simulator and a sidecar (config extra, options
// opts) in front of it, both closed when the benchmark ends, and returns
// the sidecar's handler.
func benchSidecar(b *testing.B, extra string, opts sidecar.Options) fasthttp.RequestHandler {
	s, err := sim.Start(sim.Config{Token: testToken}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	cfg, err := config.Parse([]byte("upstream: {url: "+s.URL()+", token: "+testToken+"}\n"+extra), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	sc, err := sidecar.New(cfg, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sc.Close() })
	return sc.Handler()
}

// mintRequest sets req up to mint a PEO, with traceparent if not "".
func mintRequest(req *fasthttp.Request, traceparent string) {
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/mint")
	req.Header.SetHost("127.0.0.1:8787")
	req.Header.SetContentType("application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	req.SetBodyString(`{"entity":"PEO"}`)
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
