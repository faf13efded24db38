package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The local API's OpenAPI document (openapi.json) is held to the code: the
// harness records the answers of every integration test (recorder, below,
// on the harness's HTTP client) and, when the test ends, checks each
// against the document with kin-openapi: the status is one the operation
// lists, the documented headers are there and well-formed, the body
// matches the schema. An answer to a route the document does not have
// (404, 405, a refused Host) must still be a documented error.

// apiSpec is openapi.json, loaded and checked once for all tests.
var apiSpec = sync.OnceValues(loadSpec)

type spec struct {
	doc    *openapi3.T
	router routers.Router
}

func loadSpec() (*spec, error) {
	// /metrics answers OpenMetrics text when asked; kin-openapi decodes
	// only the types registered with it (once, for the whole test binary).
	openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("loading openapi.json: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.json is not a valid OpenAPI document: %w", err)
	}
	// Route by path and method alone: the tests' listeners are on free
	// ports, not the servers the document names.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing openapi.json: %w", err)
	}
	return &spec{doc: doc, router: router}, nil
}

// exchange is one request the tests made and the answer they got.
type exchange struct {
	method string
	url    *url.URL
	status int
	header http.Header
	body   []byte
}

func (e exchange) String() string {
	body := e.body
	if len(body) > 300 {
		body = append(body[:300:300], "…"...)
	}
	return fmt.Sprintf("%s %s → %d %s", e.method, e.url.Path, e.status, body)
}

// check says how e departs from the document, or nil.
func (s *spec) check(e exchange) error {
	method := e.method
	if method == http.MethodHead { // served as the GET, without a body
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, e.url.String(), nil)
	if err != nil {
		return err
	}
	route, params, err := s.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) || err == nil && e.status == 405:
		return s.checkUnrouted(e)
	case err != nil:
		return fmt.Errorf("routing: %w", err)
	}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 e.status,
		Header:                 e.header,
		Body:                   io.NopCloser(bytes.NewReader(e.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: e.method == http.MethodHead},
	})
}

// checkUnrouted checks an answer to a path or method the document does
// not have: a documented error of its status, in either shape, with
// X-Request-ID.
func (s *spec) checkUnrouted(e exchange) error {
	if e.header.Get("X-Request-ID") == "" {
		return errors.New("no X-Request-ID")
	}
	if e.method == http.MethodHead {
		return nil
	}
	var v any
	if err := json.Unmarshal(e.body, &v); err != nil {
		return fmt.Errorf("the body is not JSON: %w", err)
	}
	var errs []error
	for _, shape := range []string{"Error", "WorkerError"} {
		ref := s.doc.Components.Schemas[fmt.Sprintf("%s%d", shape, e.status)]
		if ref == nil {
			return fmt.Errorf("status %d is no error status of the document", e.status)
		}
		err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("not a documented error of status %d: %w", e.status, errors.Join(errs...))
}

// recorder is the harness's HTTP transport: it keeps the first few answers
// of each kind (method, route, status, cache headers, error code), which
// is every kind of answer a test saw without holding every one of a
// load test's.
type recorder struct {
	next *http.Transport
	mu   sync.Mutex
	seen map[string]int
	kept []exchange
}

const keepPerKind = 2

func newRecorder(next *http.Transport) *recorder {
	return &recorder{next: next, seen: map[string]int{}}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.keep(exchange{method: req.Method, url: req.URL, status: resp.StatusCode, header: resp.Header.Clone(), body: body})
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (r *recorder) CloseIdleConnections() { r.next.CloseIdleConnections() }

var (
	idInPath = regexp.MustCompile(`/validate/[^/]*$`)
	codeRe   = regexp.MustCompile(`"error":"([A-Z_]+)"`)
)

func (r *recorder) keep(e exchange) {
	code := ""
	if m := codeRe.FindSubmatch(e.body); m != nil {
		code = string(m[1])
	}
	kind := strings.Join([]string{e.url.Host, e.method, idInPath.ReplaceAllString(e.url.Path, "/validate/{id}"), fmt.Sprint(e.status),
		e.header.Get("X-Cache"), e.header.Get("X-Cache-Tier"), e.header.Get("Retry-After"), code}, " ")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[kind] < keepPerKind {
		r.seen[kind]++
		r.kept = append(r.kept, e)
	}
}

// checkAnswers checks every answer the harness's sidecar gave (not the
// simulator's) against openapi.json.
func (h *harness) checkAnswers() {
	t := h.t
	if h.base == "" {
		return
	}
	s, err := apiSpec()
	if err != nil {
		t.Error(err)
		return
	}
	hosts := []string{strings.TrimPrefix(h.base, "http://")}
	if h.sc != nil {
		hosts = append(hosts, h.sc.OpsAddr())
	}
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	bad := 0
	for _, e := range h.rec.kept {
		if !slices.Contains(hosts, e.url.Host) {
			continue
		}
		if err := s.check(e); err != nil {
			if bad++; bad <= 3 {
				t.Errorf("an answer openapi.json does not describe: %s\n  %v", e, clip(err.Error(), 600))
			}
		}
	}
	if bad > 3 {
		t.Errorf("… and %d more answers openapi.json does not describe", bad-3)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// TestOpenAPIDocument: openapi.json is a valid OpenAPI 3.1 document, and
// its error codes are the sidecar's, each under its own status.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	s, err := apiSpec()
	if err != nil {
		t.Fatal(err)
	}
	if s.doc.OpenAPI != "3.1.0" || s.doc.OpenAPIMajorMinor() != "3.1" || !s.doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1.0", s.doc.OpenAPI)
	}
	statuses := sidecar.ErrorStatuses()
	var enum []string
	for _, v := range s.doc.Components.Schemas["ErrorCode"].Value.Enum {
		enum = append(enum, v.(string))
	}
	for code, status := range statuses {
		if !slices.Contains(enum, code) {
			t.Errorf("error code %s is missing from ErrorCode", code)
		}
		for _, shape := range []string{"Error", "WorkerError"} {
			body := map[string]any{"error": code, "message": "m", "requestId": "r"}
			if shape == "WorkerError" {
				body["success"], body["timestamp"] = false, "2026-01-02T03:04:05Z"
			}
			ref := s.doc.Components.Schemas[fmt.Sprintf("%s%d", shape, status)]
			if ref == nil {
				t.Errorf("no schema %s%d for %s", shape, status, code)
				continue
			}
			if err := ref.Value.VisitJSON(body, openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("%s under %s%d: %v", code, shape, status, err)
			}
		}
	}
	for _, code := range enum {
		if _, ok := statuses[code]; !ok {
			t.Errorf("ErrorCode lists %s, which the sidecar never answers", code)
		}
	}
}

// TestOpenAPIServed: the operations listener serves the document, as it is
// in the repository; the API listener does not.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "metrics:\n  listen: 127.0.0.1:0\n")
	h.waitState(fsm.Connected) // the operations listener is open
	want, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.http.Get("http://" + h.sc.OpsAddr() + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(got, want) {
		t.Errorf("ops /openapi.json: HTTP %d, %s, %d bytes; want 200, application/json, openapi.json's %d bytes",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(got), len(want))
	}
	h.do("GET", "/openapi.json", "").expect(t, "/openapi.json on the API listener", 404, "NOT_FOUND")
}

// TestOpenAPICheckCatchesDrift: answers that depart from the document are
// caught, so the check of the integration tests' answers can fail.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	t.Parallel()
	s, err := apiSpec()
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	u := func(p string) *url.URL { return &url.URL{Scheme: "http", Host: "127.0.0.1:1", Path: p} }
	good := exchange{"GET", u("/v1/validate/CT-A-CHI-1234-I-24-A-0"), 200, hdr("X-Request-ID", "r", "X-Cache", "HIT", "Age", "3"),
		[]byte(`{"valid":true,"chittyId":"CT-A-CHI-1234-I-24-A-0","entity":"PEO","entityType":"PEO"}`)}
	if err := s.check(good); err != nil {
		t.Fatalf("a good answer refused: %v", err)
	}
	for name, e := range map[string]exchange{
		"validate without X-Cache": {"GET", good.url, 200, hdr("X-Request-ID", "r"), good.body},
		"an unknown X-Cache":       {"GET", good.url, 200, hdr("X-Request-ID", "r", "X-Cache", "WARM"), good.body},
		"no X-Request-ID":          {"GET", good.url, 200, hdr("X-Cache", "HIT"), good.body},
		"a field too many":         {"GET", good.url, 200, good.header, []byte(`{"valid":true,"chittyId":"x","cached":true}`)},
		"mint without chitty_id": {"POST", u("/api/v1/mint"), 200, hdr("X-Request-ID", "r"),
			[]byte(`{"chittyId":"CT-A-CHI-1234-I-24-A-0","id":"CT-A-CHI-1234-I-24-A-0","entity":"PEO","timestamp":"2026-01-02T03:04:05Z","version":"1"}`)},
		"a code under another status":      {"POST", u("/v1/mint"), 503, hdr("X-Request-ID", "r"), []byte(`{"error":"RATE_LIMITED","message":"m","requestId":"r"}`)},
		"a status the route never answers": {"GET", u("/healthz"), 202, hdr("X-Request-ID", "r"), []byte(`{"status":"ok"}`)},
		"a worker error in the 1.0.0 shape": {"POST", u("/api/validate"), 400, hdr("X-Request-ID", "r"),
			[]byte(`{"error":"BAD_REQUEST","message":"m","requestId":"r"}`)},
		"an unknown route's error without a code": {"GET", u("/nope"), 404, hdr("X-Request-ID", "r"), []byte(`{"message":"no route"}`)},
	} {
		if s.check(e) == nil {
			t.Errorf("%s: passed", name)
		}
	}
}
