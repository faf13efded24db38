package sidecar_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/valyala/fasthttp"
)

// fuzzStatusOf is docs/api.md's table of error codes the handler may answer
// with, and their statuses. INTERNAL (500, a handler panic) is deliberately
// absent; PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT and HEADERS_TOO_LARGE come from
// the server's transport, which a handler test does not reach, but they are
// documented, so they are allowed.
var fuzzStatusOf = map[string]int{
	"BAD_REQUEST": 400, "UNSUPPORTED_ENTITY": 400, "INVALID_METADATA": 400,
	"PAYLOAD_TOO_LARGE": 413, "UNAUTHORIZED": 401, "RATE_LIMITED": 429,
	"CIRCUIT_OPEN": 503, "UPSTREAM_UNAVAILABLE": 503, "UPSTREAM_FALLBACK": 503,
	"UPSTREAM_BAD_RESPONSE": 502, "UPSTREAM_TIMEOUT": 504, "SHUTTING_DOWN": 503,
	"NOT_FOUND": 404, "METHOD_NOT_ALLOWED": 405,
}

// fuzzStatuses are the statuses a handler answer may have (docs/api.md).
var fuzzStatuses = map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 405: true, 413: true, 415: true, 429: true, 502: true, 503: true, 504: true}

// fuzzMaxBody is limits.maxBodyBytes of every fuzzed sidecar: the server
// would refuse a longer body before the handler runs.
const fuzzMaxBody = 8 << 10

// fuzzSidecar is one sidecar set-up the fuzzer can aim a request at.
type fuzzSidecar struct {
	name    string
	format  chittyid.Format
	handler fasthttp.RequestHandler
}

// fuzzSidecars builds the set-ups, each with short timeouts so a failing
// mint answers fast: an official client-v1 simulator; a numeric worker
// simulator (no batch route: batches fan out); a dead upstream (a closed
// port) without a token and with tight rate limits and small body limits;
// and a numeric simulator with validate.mode local.
func fuzzSidecars(f *testing.F) []fuzzSidecar {
	f.Helper()
	const fast = "  timeout: 300ms\n  mintTimeout: 500ms\n  validateTimeout: 300ms\n  retry: {maxAttempts: 1}\n"
	limits := fmt.Sprintf("limits: {maxBodyBytes: %d, maxMetadataBytes: 512, maxBatch: 4}\ncache: {maxSizeMB: 2, shards: 1}\n", fuzzMaxBody)
	official := fuzzSim(f, sim.Config{Token: testToken})
	worker := fuzzSim(f, sim.Config{Token: testToken, Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric})
	numeric := fuzzSim(f, sim.Config{Token: testToken, Format: chittyid.FormatNumeric})
	specs := []struct {
		name   string
		format chittyid.Format
		yaml   string
	}{
		{"official", chittyid.FormatOfficial, "format: official\n" + limits +
			"upstream:\n  url: " + official.URL() + "\n  token: " + testToken + "\n" + fast},
		{"worker numeric", chittyid.FormatNumeric, "format: numeric\n" + limits +
			"upstream:\n  url: " + worker.URL() + "\n  dialect: worker\n  token: " + testToken + "\n" + fast},
		{"dead upstream", chittyid.FormatOfficial, "format: official\n" + limits +
			"rateLimit: {mint: {perCallerPerMinute: 2, globalPerMinute: 5, burst: 4}, validate: {globalPerSecond: 1, burst: 3}, maxCallers: 4}\n" +
			"upstream:\n  url: http://" + fuzzDeadAddr(f) + "/v1\n" + fast + "  breaker: {failures: 2, openTimeout: 200ms}\n"},
		{"local numeric", chittyid.FormatNumeric, "format: numeric\nvalidate: {mode: local}\n" + limits +
			"upstream:\n  url: " + numeric.URL() + "\n  token: " + testToken + "\n" + fast},
	}
	var out []fuzzSidecar
	for _, sp := range specs {
		cfg, err := config.Parse([]byte(sp.yaml), noEnv)
		if err != nil {
			f.Fatalf("%s config:\n%s\n%v", sp.name, sp.yaml, err)
		}
		sc, err := sidecar.New(cfg, sidecar.Options{})
		if err != nil {
			f.Fatalf("%s: sidecar.New: %v", sp.name, err)
		}
		f.Cleanup(func() { _ = sc.Close() })
		out = append(out, fuzzSidecar{name: sp.name, format: sp.format, handler: sc.Handler()})
	}
	return out
}

func fuzzSim(f *testing.F, cfg sim.Config) *sim.Sim {
	f.Helper()
	s, err := sim.Start(cfg, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		f.Fatalf("starting the simulator: %v", err)
	}
	f.Cleanup(func() { _ = s.Close() })
	return s
}

// fuzzDeadAddr is the address of a listener opened and closed: connections
// to it are refused.
func fuzzDeadAddr(f *testing.F) string {
	f.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// fuzzRequest writes method, uri, the header lines (one per line of
// headers; Content-Type application/json unless they set one) and body as
// an HTTP/1.1 request to a loopback Host and parses it as the sidecar's
// server would (16 KiB read buffer, limits.maxBodyBytes). It reports false
// for a request the server would refuse before the handler runs.
func fuzzRequest(method, uri, headers string, body []byte) (*fasthttp.Request, bool) {
	var b bytes.Buffer
	b.WriteString(method + " " + uri + " HTTP/1.1\r\nHost: 127.0.0.1:8787\r\n")
	typed := false // a POST without a Content-Type line is sent as the apps send it, as JSON
	for _, line := range strings.Split(headers, "\n") {
		if line = strings.TrimRight(line, "\r"); line != "" {
			b.WriteString(line + "\r\n")
			typed = typed || strings.HasPrefix(strings.ToLower(line), "content-type:")
		}
	}
	if !typed {
		b.WriteString("Content-Type: application/json\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	req := new(fasthttp.Request)
	if err := req.ReadLimitBody(bufio.NewReaderSize(&b, 16<<10), fuzzMaxBody); err != nil {
		return nil, false
	}
	return req, true
}

// FuzzHandler drives the whole handler with arbitrary methods, paths, header
// lines and bodies against one of fuzzSidecars' set-ups. It must never
// panic (the handler's own recover would answer 500 INTERNAL, so 500 fails
// too), and always answer a documented status with a JSON object: an error
// body's code matches the status and docs/api.md's table, Retry-After agrees
// with retryAfter, 405 names the allowed methods; every answer has an
// X-Request-ID; a "valid": true verdict and every minted ID pass the
// configured format's check.
func FuzzHandler(f *testing.F) {
	sidecars := fuzzSidecars(f)
	f.Fuzz(func(t *testing.T, which uint8, method, uri, headers string, body []byte) {
		sc := sidecars[int(which)%len(sidecars)]
		req, ok := fuzzRequest(method, uri, headers, body)
		if !ok {
			return
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(req, nil, nil)
		sc.handler(&ctx)
		fuzzCheckAnswer(t, sc, &ctx)
	})
}

func fuzzCheckAnswer(t *testing.T, sc fuzzSidecar, ctx *fasthttp.RequestCtx) {
	t.Helper()
	status, body := ctx.Response.StatusCode(), ctx.Response.Body()
	what := fmt.Sprintf("%s: %q %q", sc.name, ctx.Method(), ctx.RequestURI())
	if !fuzzStatuses[status] {
		t.Fatalf("%s: undocumented status %d: %s", what, status, body)
	}
	rid := string(ctx.Response.Header.Peek("X-Request-ID"))
	if rid == "" {
		t.Fatalf("%s: no X-Request-ID", what)
	}
	if status == 200 && string(ctx.Path()) == "/metrics" {
		return // the Prometheus text format
	}
	if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
		t.Fatalf("%s: HTTP %d with Content-Type %q: %s", what, status, ct, body)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		t.Fatalf("%s: HTTP %d, body is not a JSON object (%v): %q", what, status, err, body)
	}
	if code, isErr := doc["error"].(string); isErr {
		fuzzCheckError(t, what, ctx, status, rid, code, doc)
		return
	}
	if status >= 400 && doc["ready"] == nil { // /health and /readyz answer 503 with their own document
		t.Fatalf("%s: HTTP %d without an error code: %s", what, status, body)
	}
	fuzzCheckIDs(t, what, sc.format, doc)
}

func fuzzCheckError(t *testing.T, what string, ctx *fasthttp.RequestCtx, status int, rid, code string, doc map[string]any) {
	t.Helper()
	if want, ok := fuzzStatusOf[code]; !ok || want != status {
		t.Fatalf("%s: error %q with HTTP %d (documented: %d): %v", what, code, status, want, doc)
	}
	if msg, _ := doc["message"].(string); msg == "" {
		t.Fatalf("%s: error %q without a message", what, code)
	}
	if got, _ := doc["requestId"].(string); got != rid {
		t.Fatalf("%s: requestId %q, X-Request-ID %q", what, got, rid)
	}
	header := string(ctx.Response.Header.Peek("Retry-After"))
	if secs, ok := doc["retryAfter"].(float64); ok {
		if secs < 1 || header != strconv.Itoa(int(secs)) {
			t.Fatalf("%s: retryAfter %v, Retry-After %q", what, secs, header)
		}
	} else if header != "" {
		t.Fatalf("%s: Retry-After %q without retryAfter", what, header)
	}
	if status == 405 && len(ctx.Response.Header.Peek("Allow")) == 0 {
		t.Fatalf("%s: 405 without Allow", what)
	}
}

// fuzzCheckIDs checks the IDs of a success answer: a "valid": true verdict's
// chittyId, a mint's chittyId and chitty_id, a batch's chittyIds.
func fuzzCheckIDs(t *testing.T, what string, format chittyid.Format, doc map[string]any) {
	t.Helper()
	var ids []any
	if v, ok := doc["valid"].(bool); !ok || v {
		ids = append(ids, doc["chittyId"], doc["chitty_id"])
	}
	if list, ok := doc["chittyIds"].([]any); ok {
		ids = append(ids, list...)
	}
	for _, v := range ids {
		if v == nil {
			continue
		}
		id, _ := v.(string)
		if err := format.Check(id); err != nil {
			t.Fatalf("%s: answered ID %v, which fails the %s check: %v: %v", what, v, format, err, doc)
		}
	}
}
