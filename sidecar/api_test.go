package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// The handlers' unit tests: the api driven with fakes of its small
// interfaces, without sockets, a simulator or a real cache. The loopback
// integration tests (package sidecar_test) cover the same paths end to end.

// fakeCache holds fresh and stale entries by ID; Fetch calls fetch at
// once and, when it fails, serves the stale entry, else fetch's stand-in
// if p judges it stale.
type fakeCache struct {
	mu      sync.Mutex
	fresh   map[string]cache.Entry
	stale   map[string]cache.Entry
	fetches int
	stales  int
}

func newFakeCache() *fakeCache {
	return &fakeCache{fresh: map[string]cache.Entry{}, stale: map[string]cache.Entry{}}
}

func (c *fakeCache) LookupBytes(id []byte, _ cache.Policy, _ time.Time) (cache.Entry, cache.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.fresh[string(id)]; ok {
		return e, cache.StatusHit
	}
	if e, ok := c.stale[string(id)]; ok {
		return e, cache.StatusStale
	}
	return cache.Entry{}, cache.StatusMiss
}

func (c *fakeCache) Store(id string, e cache.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fresh[id] = e
	return nil
}

func (c *fakeCache) Fetch(ctx context.Context, id string, p cache.Policy, fetch func(context.Context) (cache.Entry, error)) (cache.Entry, cache.Status, error) {
	c.mu.Lock()
	c.fetches++
	c.mu.Unlock()
	e, err := fetch(ctx)
	if err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if s, ok := c.stale[id]; ok {
			c.stales++
			return s, cache.StatusStale, nil
		}
		if !e.FetchedAt.IsZero() && p.Judge(e, time.Now()) == cache.StatusStale {
			c.stales++
			return e, cache.StatusStale, nil
		}
		return cache.Entry{}, cache.StatusMiss, err
	}
	_ = c.Store(id, e)
	return e, cache.StatusMiss, nil
}

func (c *fakeCache) ServeStale() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stales++
}

// fakeClient answers with what the test set and counts the calls.
type fakeClient struct {
	mu       sync.Mutex
	calls    int
	mint     func(upstream.MintRequest) (upstream.Minted, error)
	batch    func([]upstream.MintRequest) ([]string, error)
	validate func(ctx context.Context, id string) (upstream.Verdict, error)
}

func (f *fakeClient) count() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
}

func (f *fakeClient) Mint(_ context.Context, m upstream.MintRequest, _ string, _ upstream.CallInfo) (upstream.Minted, error) {
	f.count()
	return f.mint(m)
}

func (f *fakeClient) MintBatch(_ context.Context, ms []upstream.MintRequest, _ string, _ upstream.CallInfo) ([]string, error) {
	f.count()
	return f.batch(ms)
}

func (f *fakeClient) Validate(ctx context.Context, id string, _ upstream.CallInfo) (upstream.Verdict, error) {
	f.count()
	return f.validate(ctx, id)
}

type fakeLink fsm.State

func (l fakeLink) State() fsm.State       { return fsm.State(l) }
func (l fakeLink) Snapshot() fsm.Snapshot { return fsm.Snapshot{State: fsm.State(l)} }

type fakeLimits struct{ mintOK, validateOK bool }

func (l fakeLimits) AllowMint(string, int) (bool, time.Duration) { return l.mintOK, 3 * time.Second }
func (l fakeLimits) CanMint(string, int) (bool, time.Duration)   { return l.mintOK, 3 * time.Second }
func (l fakeLimits) AllowValidate() (bool, time.Duration)        { return l.validateOK, 2 * time.Second }

// fakeRecorder keeps the results the handler reported.
type fakeRecorder struct{ results []result }

func (r *fakeRecorder) record(res result, _ int, _ time.Duration) { r.results = append(r.results, res) }

// fixture is an api over fakes.
type fixture struct {
	api    *api
	link   fakeLink
	cache  *fakeCache
	client *fakeClient
	rec    *fakeRecorder
	cfg    atomic.Pointer[config.Config]
}

const unitID = "CT-A-CHI-1234-P-24-A-0" // official format

func newFixture(t *testing.T, yaml string, state fsm.State, limits fakeLimits) *fixture {
	t.Helper()
	if !strings.Contains(yaml, "upstream:") {
		yaml += "upstream: {url: \"http://127.0.0.1:1/v1\", token: unit-token}\n"
	}
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{link: fakeLink(state), cache: newFakeCache(), client: &fakeClient{}, rec: &fakeRecorder{}}
	f.cfg.Store(cfg)
	f.api = &api{
		cfg:       &f.cfg,
		verdicts:  resolve.New(f.cache, f.link, resolve.Options{}),
		link:      f.link,
		client:    func() upstreamClient { return f.client },
		limits:    limits,
		metrics:   f.rec,
		log:       slog.New(slog.DiscardHandler),
		version:   "unit",
		now:       time.Now,
		ridPrefix: "unit-",
	}
	f.api.pages[shapeClient][routeHealthz] = func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(`{"status":"ok"}`) }
	return f
}

// do runs one request through the handler, as the app beside it sends it.
func (f *fixture) do(method, uri, body string) (*fasthttp.RequestCtx, map[string]any, result) {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("127.0.0.1:8787")
	if method == "POST" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, nil, nil)
	f.api.handle(ctx)
	var m map[string]any
	_ = json.Unmarshal(ctx.Response.Body(), &m)
	return ctx, m, f.rec.results[len(f.rec.results)-1]
}

var open = fakeLimits{mintOK: true, validateOK: true}

func callErr(kind error, status int) error {
	return &upstream.CallError{Kind: kind, Op: "test", Status: status, Detail: "upstream said: token unit-token is bad", Attempts: 2}
}

func TestHandlerValidate(t *testing.T) {
	t.Parallel()
	valid := func(context.Context, string) (upstream.Verdict, error) {
		return upstream.Verdict{Valid: true, Entity: "PEO"}, nil
	}
	for _, tc := range []struct {
		name      string
		yaml      string
		state     fsm.State
		limits    fakeLimits
		fresh     bool // unitID is cached fresh
		stale     bool // unitID is cached stale
		validate  func(context.Context, string) (upstream.Verdict, error)
		method    string
		uri, body string
		status    int
		xcache    string
		code      string
		valid     any
		calls     int
		want      result
	}{
		{name: "hit", state: fsm.Connected, limits: open, fresh: true, validate: valid, method: "GET",
			uri: "/v1/validate/" + unitID, status: 200, xcache: "HIT", valid: true, want: result{route: routeValidate, xc: xcHit}},
		{name: "miss valid", state: fsm.Connected, limits: open, validate: valid, method: "GET", uri: "/v1/validate/" + unitID,
			status: 200, xcache: "MISS", valid: true, calls: 1, want: result{route: routeValidate, xc: xcMiss}},
		{name: "miss not valid", state: fsm.Connected, limits: open,
			validate: func(context.Context, string) (upstream.Verdict, error) { return upstream.Verdict{}, nil }, method: "GET",
			uri: "/api/v1/validate/" + unitID, status: 200, xcache: "MISS", valid: false, calls: 1,
			want: result{route: routeValidate, family: familyAPIV1, xc: xcMiss}},
		{name: "stale while upstream fails", state: fsm.Reconnecting, limits: open, stale: true,
			validate: func(context.Context, string) (upstream.Verdict, error) {
				return upstream.Verdict{}, callErr(upstream.ErrUnavailable, 503)
			},
			method: "GET", uri: "/v1/validate/" + unitID, status: 200, xcache: "STALE", valid: true, calls: 1,
			want: result{route: routeValidate, xc: xcStale}},
		{name: "upstream fails, nothing cached", state: fsm.Connected, limits: open,
			validate: func(context.Context, string) (upstream.Verdict, error) {
				return upstream.Verdict{}, callErr(upstream.ErrUnavailable, 502)
			},
			method: "GET", uri: "/v1/validate/" + unitID, status: 503, code: "UPSTREAM_UNAVAILABLE", calls: 1,
			want: result{route: routeValidate, code: codeUnavailable}},
		{name: "bad format", state: fsm.Connected, limits: open, validate: valid, method: "GET", uri: "/v1/validate/ct-a-chi",
			status: 200, xcache: "LOCAL", valid: false, want: result{route: routeValidate, xc: xcLocal, reason: "BAD_FORMAT"}},
		{name: "FAILED, not cached", state: fsm.Failed, limits: open, validate: valid, method: "GET",
			uri: "/v1/validate/" + unitID, status: 503, code: "UPSTREAM_UNAVAILABLE",
			want: result{route: routeValidate, code: codeUnavailable}},
		{name: "FAILED, stale", state: fsm.Failed, limits: open, stale: true, validate: valid, method: "GET",
			uri: "/v1/validate/" + unitID, status: 200, xcache: "STALE", valid: true,
			want: result{route: routeValidate, xc: xcStale}},
		{name: "rate limited", state: fsm.Connected, limits: fakeLimits{mintOK: true}, fresh: true, validate: valid,
			method: "GET", uri: "/v1/validate/" + unitID, status: 429, code: "RATE_LIMITED",
			want: result{route: routeValidate, code: codeRateLimited, limited: true}},
		{name: "local mode", yaml: "validate: {mode: local}\n", state: fsm.Connected, limits: open, validate: valid,
			method: "GET", uri: "/v1/validate/" + unitID, status: 200, xcache: "LOCAL", valid: true,
			want: result{route: routeValidate, xc: xcLocal}},
		{name: "POST body", state: fsm.Connected, limits: open, validate: valid, method: "POST", uri: "/v1/validate",
			body: `{"id":"` + unitID + `"}`, status: 200, xcache: "MISS", valid: true, calls: 1,
			want: result{route: routeValidatePost, xc: xcMiss}},
		{name: "POST body without id", state: fsm.Connected, limits: open, validate: valid, method: "POST", uri: "/v1/validate",
			body: `{"x":1}`, status: 400, code: "BAD_REQUEST",
			want: result{route: routeValidatePost, code: codeBadRequest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.yaml, tc.state, tc.limits)
			f.client.validate = tc.validate
			e := cache.Entry{Valid: true, FetchedAt: time.Now().Add(-time.Minute), Value: []byte("PEO")}
			if tc.fresh {
				f.cache.fresh[unitID] = e
			}
			if tc.stale {
				f.cache.stale[unitID] = e
			}
			ctx, body, res := f.do(tc.method, tc.uri, tc.body)
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("HTTP %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			if got := string(ctx.Response.Header.Peek("X-Cache")); got != tc.xcache {
				t.Errorf("X-Cache %q, want %q", got, tc.xcache)
			}
			if tc.code != "" && body["error"] != tc.code {
				t.Errorf("error %v, want %s", body["error"], tc.code)
			}
			if tc.code == "" && body["valid"] != tc.valid {
				t.Errorf("valid %v, want %v: %s", body["valid"], tc.valid, ctx.Response.Body())
			}
			if tc.xcache == "STALE" && body["stale"] != true {
				t.Errorf("a stale answer without \"stale\": true: %s", ctx.Response.Body())
			}
			if strings.Contains(string(ctx.Response.Body()), "unit-token") {
				t.Errorf("the answer carries upstream's text: %s", ctx.Response.Body())
			}
			if f.client.calls != tc.calls {
				t.Errorf("%d upstream calls, want %d", f.client.calls, tc.calls)
			}
			if res != tc.want {
				t.Errorf("result %+v, want %+v", res, tc.want)
			}
		})
	}
}

// TestHandlerValidateTimeout: a caller waits at most
// upstream.validateTimeout for an upstream that does not answer, then gets
// 504; virtual time, so it takes no time.
func TestHandlerValidateTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, "upstream: {url: \"http://127.0.0.1:1/v1\", token: unit-token, validateTimeout: 3s}\n", fsm.Connected, open)
		f.client.validate = func(ctx context.Context, _ string) (upstream.Verdict, error) {
			<-ctx.Done()
			return upstream.Verdict{}, ctx.Err()
		}
		start := time.Now()
		ctx, body, res := f.do("GET", "/v1/validate/"+unitID, "")
		if ctx.Response.StatusCode() != 504 || body["error"] != codeTimeout || time.Since(start) != 3*time.Second {
			t.Errorf("HTTP %d %v after %v; want 504 UPSTREAM_TIMEOUT after 3s", ctx.Response.StatusCode(), body, time.Since(start))
		}
		if res.code != codeTimeout {
			t.Errorf("result %+v", res)
		}
	})
}

func TestHandlerMint(t *testing.T) {
	t.Parallel()
	minted := func(m upstream.MintRequest) (upstream.Minted, error) {
		return upstream.Minted{ID: unitID, Entity: m.Entity, Timestamp: "2026-12-04T10:00:00Z", Version: "v9", Attempts: 1}, nil
	}
	failing := func(err error) func(upstream.MintRequest) (upstream.Minted, error) {
		return func(upstream.MintRequest) (upstream.Minted, error) { return upstream.Minted{}, err }
	}
	for _, tc := range []struct {
		name       string
		state      fsm.State
		limits     fakeLimits
		draining   bool
		mint       func(upstream.MintRequest) (upstream.Minted, error)
		body       string
		status     int
		code       string
		retryAfter string
		calls      int
		want       result
	}{
		{name: "ok", state: fsm.Connected, limits: open, mint: minted, body: `{"entity":"peo"}`, status: 200, calls: 1,
			want: result{route: routeMint, attempts: 1}},
		{name: "not JSON", state: fsm.Connected, limits: open, mint: minted, body: `{"entity":`, status: 400,
			code: codeBadRequest, want: result{route: routeMint, code: codeBadRequest}},
		{name: "unsupported entity", state: fsm.Connected, limits: open, mint: minted, body: `{"entity":"NOPE"}`, status: 400,
			code: codeUnsupportedEntity, want: result{route: routeMint, code: codeUnsupportedEntity}},
		{name: "FAILED fails fast", state: fsm.Failed, limits: open, mint: minted, body: `{"entity":"PEO"}`, status: 503,
			code: codeUnavailable, retryAfter: "1", want: result{route: routeMint, code: codeUnavailable}},
		{name: "shutting down", state: fsm.Connected, limits: open, draining: true, mint: minted, body: `{"entity":"PEO"}`,
			status: 503, code: codeShuttingDown, retryAfter: "1", want: result{route: routeMint, code: codeShuttingDown}},
		{name: "local rate limit", state: fsm.Connected, limits: fakeLimits{validateOK: true}, mint: minted,
			body: `{"entity":"PEO"}`, status: 429, code: codeRateLimited, retryAfter: "3",
			want: result{route: routeMint, code: codeRateLimited, limited: true}},
		{name: "breaker open", state: fsm.Reconnecting, limits: open,
			mint: failing(&upstream.CallError{Kind: upstream.ErrCircuitOpen, Op: "mint", RetryAfter: 7 * time.Second,
				Detail: "ChittyID service circuit breaker is OPEN - service unavailable. Will retry in 7s"}),
			body: `{"entity":"PEO"}`, status: 503, code: codeCircuitOpen, retryAfter: "7", calls: 1,
			want: result{route: routeMint, code: codeCircuitOpen}},
		{name: "fallback", state: fsm.Connected, limits: open, mint: failing(callErr(upstream.ErrFallback, 200)),
			body: `{"entity":"PEO"}`, status: 503, code: codeFallback, retryAfter: "1", calls: 1,
			want: result{route: routeMint, code: codeFallback, attempts: 2}},
		{name: "upstream rate limited", state: fsm.Connected, limits: open, mint: failing(callErr(upstream.ErrRateLimited, 429)),
			body: `{"entity":"PEO"}`, status: 429, code: codeRateLimited, calls: 1,
			want: result{route: routeMint, code: codeRateLimited, attempts: 2}},
		{name: "upstream rejected", state: fsm.Connected, limits: open, mint: failing(callErr(upstream.ErrRejected, 422)),
			body: `{"entity":"PEO"}`, status: 400, code: codeBadRequest, calls: 1,
			want: result{route: routeMint, code: codeBadRequest, attempts: 2}},
		{name: "upstream refused the token", state: fsm.Connected, limits: open,
			mint: failing(callErr(upstream.ErrUnauthorized, 401)), body: `{"entity":"PEO"}`, status: 401, code: codeUnauthorized,
			calls: 1, want: result{route: routeMint, code: codeUnauthorized, attempts: 2}},
		{name: "timed out", state: fsm.Connected, limits: open, mint: failing(callErr(upstream.ErrTimeout, 0)),
			body: `{"entity":"PEO"}`, status: 504, code: codeTimeout, calls: 1,
			want: result{route: routeMint, code: codeTimeout, attempts: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "", tc.state, tc.limits)
			f.client.mint = tc.mint
			f.api.draining.Store(tc.draining)
			ctx, body, res := f.do("POST", "/v1/mint", tc.body)
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("HTTP %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			if got := string(ctx.Response.Header.Peek("Retry-After")); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if tc.code != "" && body["error"] != tc.code {
				t.Errorf("error %v, want %s", body["error"], tc.code)
			}
			if strings.Contains(string(ctx.Response.Body()), "unit-token") {
				t.Errorf("the answer carries upstream's text: %s", ctx.Response.Body())
			}
			if f.client.calls != tc.calls {
				t.Errorf("%d upstream calls, want %d", f.client.calls, tc.calls)
			}
			if res != tc.want {
				t.Errorf("result %+v, want %+v", res, tc.want)
			}
			if tc.status != 200 {
				return
			}
			if body["chittyId"] != unitID || body["chitty_id"] != unitID || body["entity"] != "PEO" || body["version"] != "v9" {
				t.Errorf("answer %s", ctx.Response.Body())
			}
			if e, ok := f.cache.fresh[unitID]; !ok || !e.Valid || string(e.Value) != "PEO" {
				t.Errorf("the minted ID is not cached as valid: %+v", e)
			}
		})
	}
}

// TestHandlerBatchKeepsMintedIDs: a batch that fails part way answers the
// error with the IDs that were minted, null where none was.
func TestHandlerBatchKeepsMintedIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", fsm.Connected, open)
	f.client.batch = func(ms []upstream.MintRequest) ([]string, error) {
		if len(ms) != 2 || ms[1].Entity != chittyid.EntityEVNT {
			t.Errorf("batch of %+v", ms)
		}
		return []string{unitID, ""}, callErr(upstream.ErrUnavailable, 503)
	}
	ctx, body, res := f.do("POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"EVNT"}]}`)
	ids, _ := body["chittyIds"].([]any)
	if ctx.Response.StatusCode() != 503 || len(ids) != 2 || ids[0] != unitID || ids[1] != nil {
		t.Errorf("HTTP %d %s; want 503 with [%s, null]", ctx.Response.StatusCode(), ctx.Response.Body(), unitID)
	}
	if _, ok := f.cache.fresh[unitID]; !ok {
		t.Error("the minted ID is not cached")
	}
	if res.route != routeMintBatch || res.code != codeUnavailable {
		t.Errorf("result %+v", res)
	}
}

// TestHandlerRoutesAndRefusals: methods, unknown routes, the Host check and
// a non-JSON body, decided before any handler or upstream call.
func TestHandlerRoutesAndRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", fsm.Connected, open)
	for _, tc := range []struct {
		method, uri, host, ctype string
		status                   int
		code                     string
		route                    route
	}{
		{"GET", "/v1/mint", "127.0.0.1", "", 405, codeMethodNotAllowed, routeMint},
		{"DELETE", "/v1/validate/" + unitID, "127.0.0.1", "", 405, codeMethodNotAllowed, routeValidate},
		{"GET", "/v2/nothing", "127.0.0.1", "", 404, codeNotFound, routeOther},
		{"GET", "/v1/validate/" + unitID, "evil.example", "", 403, codeForbidden, routeValidate},
		{"POST", "/v1/mint", "localhost", "text/plain", 415, codeUnsupportedMedia, routeMint},
		{"GET", "/healthz", "evil.example", "", 200, "", routeHealthz},
	} {
		var req fasthttp.Request
		req.Header.SetMethod(tc.method)
		req.SetRequestURI(tc.uri)
		req.Header.SetHost(tc.host)
		if tc.ctype != "" {
			req.Header.SetContentType(tc.ctype)
			req.SetBodyString(`{"entity":"PEO"}`)
		}
		ctx := new(fasthttp.RequestCtx)
		ctx.Init(&req, nil, nil)
		f.api.handle(ctx)
		res := f.rec.results[len(f.rec.results)-1]
		if ctx.Response.StatusCode() != tc.status || res.code != tc.code || res.route != tc.route {
			t.Errorf("%s %s (Host %s): HTTP %d, result %+v; want %d %s on %v", tc.method, tc.uri, tc.host,
				ctx.Response.StatusCode(), res, tc.status, tc.code, tc.route)
		}
	}
	if f.client.calls != 0 {
		t.Errorf("%d upstream calls", f.client.calls)
	}
}

func TestResultFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    result
		want string
	}{
		{result{}, ""},
		{result{xc: xcHit}, ""},
		{result{xc: xcStale}, "STALE_SERVED"},
		{result{xc: xcLocal, reason: "BAD_FORMAT"}, "BAD_FORMAT"},
		{result{attempts: 2}, "RETRIED"},
		{result{code: codeCircuitOpen, attempts: 3}, "CB_OPEN"},
		{result{code: codeBadRequest}, codeBadRequest},
	} {
		if got := tc.r.flag(); got != tc.want {
			t.Errorf("%+v.flag() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestHandlerEveryRouteAndInputForm: every mint and validate route of both
// APIs, each input form, in both formats: the status and the fields of the
// answer (docs/api.md, "Which client, which base URL").
func TestHandlerEveryRouteAndInputForm(t *testing.T) {
	t.Parallel()
	for _, format := range []chittyid.Format{chittyid.FormatOfficial, chittyid.FormatNumeric} {
		id := "CT-A-CHI-1234-E-24-A-0"
		if format == chittyid.FormatNumeric {
			const prefix = "03-1-USA-1234-E-2601-3"
			id = fmt.Sprintf("%s-%02d", prefix, chittyid.NumericChecksum(prefix))
		}
		mints := []struct{ method, uri, body string }{
			{"POST", "/v1/mint", `{"entity":"EVNT"}`},
			{"POST", "/api/v1/mint", `{"entityType":"event"}`},
			{"POST", "/mint", `{"entity_type":"E"}`},
			{"POST", "/v1/mint", `{"entity":"Event"}`},
			{"GET", "/api/get-chittyid?type=event", ""},
			{"GET", "/api/get-chittyid?for=EVNT", ""},
			{"GET", "/generate?entity_type=e", ""},
		}
		for _, m := range mints {
			t.Run(format.String()+" "+m.method+" "+m.uri+" "+m.body, func(t *testing.T) {
				f := newFixture(t, "format: "+format.String()+"\n", fsm.Connected, open)
				f.client.mint = func(r upstream.MintRequest) (upstream.Minted, error) {
					if r.Entity != chittyid.EntityEVNT {
						t.Errorf("minted entity %v, want EVNT", r.Entity)
					}
					return upstream.Minted{ID: id, Entity: r.Entity, Attempts: 1}, nil
				}
				ctx, body, res := f.do(m.method, m.uri, m.body)
				worker := strings.HasPrefix(m.uri, "/api/get") || strings.HasPrefix(m.uri, "/generate")
				if ctx.Response.StatusCode() != 200 || body["chittyId"] != id || body["id"] != id || body["chitty_id"] != id || body["entity"] != "EVNT" {
					t.Fatalf("HTTP %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if _, has := body["success"]; has != worker || worker && body["success"] != true {
					t.Errorf("success field %v (worker route: %v): %s", body["success"], worker, ctx.Response.Body())
				}
				if wantRoute := map[bool]route{true: routeMintGet, false: routeMint}[m.method == "GET"]; res.route != wantRoute {
					t.Errorf("result route %v, want %v", res.route, wantRoute)
				}
			})
		}
		validates := []struct{ method, uri, body string }{
			{"GET", "/v1/validate/" + id, ""},
			{"GET", "/api/v1/validate/" + id, ""},
			{"GET", "/validate/" + id, ""},
			{"POST", "/v1/validate", `{"id":"` + id + `"}`},
			{"POST", "/validate", `{"chittyId":"` + id + `"}`},
			{"POST", "/api/validate", `{"id":"` + id + `"}`},
		}
		for _, v := range validates {
			t.Run(format.String()+" "+v.method+" "+v.uri, func(t *testing.T) {
				f := newFixture(t, "format: "+format.String()+"\n", fsm.Connected, open)
				f.client.validate = func(context.Context, string) (upstream.Verdict, error) { return upstream.Verdict{Valid: true}, nil }
				ctx, body, _ := f.do(v.method, v.uri, v.body)
				if ctx.Response.StatusCode() != 200 || body["valid"] != true || body["chittyId"] != id || body["entity"] != "EVNT" || body["entityType"] != "EVNT" {
					t.Fatalf("HTTP %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				worker := v.uri == "/api/validate"
				if worker != (body["success"] == true) || worker != (body["timestamp"] != nil) {
					t.Errorf("worker fields (success, timestamp) %v, %v on %s", body["success"], body["timestamp"], v.uri)
				}
				comp, hasComp := body["components"].(map[string]any)
				if wantComp := worker && format == chittyid.FormatNumeric; hasComp != wantComp {
					t.Fatalf("components %v, want them: %v", body["components"], wantComp)
				}
				if hasComp {
					for k, want := range map[string]string{"version": id[0:2], "region": id[3:4], "jurisdiction": id[5:8], "sequential": id[9:13],
						"entityType": "E", "yearMonth": id[16:20], "trustLevel": id[21:22], "checksum": id[23:25]} {
						if comp[k] != want {
							t.Errorf("components.%s = %v, want %s", k, comp[k], want)
						}
					}
				}
			})
		}
	}
}

// TestHandlerWorkerShapes: the worker's routes answer errors in its shape
// ({"success":false,…}) with the sidecar's codes, and a "not valid"
// verdict with its "error" text; the 1.0.0 routes keep theirs.
func TestHandlerWorkerShapes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "format: numeric\n", fsm.Connected, open)
	for _, tc := range []struct {
		method, uri, body string
		status            int
		code              string
		worker            bool
	}{
		{"GET", "/api/get-chittyid?type=person2", "", 400, codeUnsupportedEntity, true},
		{"GET", "/api/get-chittyid", "", 400, codeBadRequest, true},
		{"GET", "/api/get-chittyid?type=P&region=0", "", 400, codeBadRequest, true},
		{"GET", "/api/get-chittyid?type=P&jurisdiction=US", "", 400, codeBadRequest, true},
		{"POST", "/api/get-chittyid?type=P", "", 405, codeMethodNotAllowed, true},
		{"HEAD", "/generate?type=P", "", 405, codeMethodNotAllowed, true},
		{"POST", "/api/validate", `{"nope":1}`, 400, codeBadRequest, true},
		{"POST", "/v1/mint", `{"entity":"person2"}`, 400, codeUnsupportedEntity, false},
	} {
		ctx, body, _ := f.do(tc.method, tc.uri, tc.body)
		if ctx.Response.StatusCode() != tc.status || body["error"] != tc.code {
			t.Errorf("%s %s: HTTP %d %s; want %d %s", tc.method, tc.uri, ctx.Response.StatusCode(), ctx.Response.Body(), tc.status, tc.code)
		}
		if tc.worker != (body["success"] == false) || tc.worker != (body["timestamp"] != nil) {
			t.Errorf("%s %s: shape %s; worker shape: %v", tc.method, tc.uri, ctx.Response.Body(), tc.worker)
		}
	}
	// A "not valid" verdict, local and from upstream.
	_, body, _ := f.do("POST", "/api/validate", `{"id":"03-1-USA-1234-P-2601-3-42"}`)
	if body["valid"] != false || body["reason"] != "checksum" || body["error"] != "invalid checksum" || body["success"] != true {
		t.Errorf("checksum failure: %v", body)
	}
	f.client.validate = func(context.Context, string) (upstream.Verdict, error) { return upstream.Verdict{}, nil }
	_, body, _ = f.do("POST", "/api/validate", `{"id":"03-1-USA-1234-P-2601-3-86"}`)
	if body["valid"] != false || body["reason"] != "upstream" || body["error"] != "not an ID the ChittyID service issued" {
		t.Errorf("upstream's not valid: %v", body)
	}
	if f.client.calls != 1 {
		t.Errorf("%d upstream calls, want 1 (the validate)", f.client.calls)
	}
}
