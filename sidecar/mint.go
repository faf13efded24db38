package sidecar

import (
	"context"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// mintReply is the answer to a mint: the client 1.0.0 contract, plus
// chitty_id for older callers that read snake case.
type mintReply struct {
	ChittyID  string `json:"chittyId"`
	Snake     string `json:"chitty_id"`
	Entity    string `json:"entity"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
}

// mintGate says whether mints may go upstream now; it reports the error to
// answer with otherwise.
func (s *Sidecar) mintGate(ctx *fasthttp.RequestCtx, client *upstream.Client) *apiError {
	if s.draining.Load() {
		return &apiError{code: codeShuttingDown, message: "the sidecar is shutting down", retryAfter: time.Second}
	}
	if !client.HasToken() && len(ctx.Request.Header.Peek("Authorization")) == 0 {
		return newAPIError(codeUnauthorized, "no upstream token is configured and the request has no Authorization header")
	}
	if st := s.link.State(); st == fsm.Failed {
		return &apiError{code: codeUnavailable, message: "the ChittyID service is unreachable (state " + string(st) + "): failing fast", retryAfter: time.Second}
	}
	return nil
}

// upstreamMint runs do with the current client, within the mint deadline,
// if the gate lets mints through; otherwise it answers the gate's error and
// reports false. The mint is counted as in flight before the gate: shutdown
// sets draining, then waits, so a mint is either counted in time to be
// waited for or sees draining.
func (s *Sidecar) upstreamMint(ctx *fasthttp.RequestCtx, cfg *config.Config, a *audit, do func(context.Context, *upstream.Client)) bool {
	s.busy.add()
	defer s.busy.done()
	client := s.client.Load()
	if e := s.mintGate(ctx, client); e != nil {
		a.fail(ctx, e, nil)
		return false
	}
	c, cancel := context.WithTimeout(context.Background(), cfg.Upstream.MintTimeout)
	defer cancel()
	do(c, client)
	return true
}

// allowMint applies the mint rate limits to n IDs; when they refuse, it
// answers 429 and reports false. Checked after parsing, so malformed
// requests use no tokens.
func (s *Sidecar) allowMint(ctx *fasthttp.RequestCtx, a *audit, r route, n int) bool {
	ok, d := s.limits.allowMint(callerID(ctx), n)
	if ok {
		return true
	}
	s.metrics.rateLimited[r].Inc()
	a.outcome = codeRateLimited
	rateLimited(ctx, "mint", d)
	return false
}

// mint answers POST /v1/mint (README.md, Local API and How mint retries). Every mint that reaches the
// sidecar leaves one audit line, whatever its outcome.
func (s *Sidecar) mint(ctx *fasthttp.RequestCtx, cfg *config.Config) {
	a := s.newAudit(ctx)
	defer s.writeAudit(ctx, a)
	m, e := decodeObject(ctx.PostBody(), "mint body")
	if e != nil {
		a.fail(ctx, e, nil)
		return
	}
	req, e := decodeMint(m, "", cfg.Limits.MaxMetadataBytes)
	a.requests([]upstream.MintRequest{req})
	if e != nil {
		a.fail(ctx, e, nil)
		return
	}
	if !s.allowMint(ctx, a, routeMint, 1) {
		return
	}
	var got upstream.Minted
	var err error
	if !s.upstreamMint(ctx, cfg, a, func(c context.Context, client *upstream.Client) {
		got, err = client.Mint(c, req, a.key, callInfo(ctx))
	}) {
		return
	}
	if err != nil {
		a.failUpstream(ctx, err, nil)
		return
	}
	a.attempts = got.Attempts
	a.minted(ctx, got.ID)
	now := s.now()
	_ = s.cache.Store(got.ID, mintedEntry(got.Entity, now)) // a full cache only costs a later upstream validate
	// Upstream's timestamp and version are passed on only if they look like
	// one: free text from upstream never reaches the caller.
	ts := got.Timestamp
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		ts = now.UTC().Format(time.RFC3339)
	}
	ver := got.Version
	if !versionText(ver) {
		ver = s.version
	}
	writeJSON(ctx, 200, mintReply{ChittyID: got.ID, Snake: got.ID, Entity: got.Entity.String(), Timestamp: ts, Version: ver})
}

// mintBatch answers POST /v1/mint/batch. On a partial failure
// the error answer carries the IDs that were minted, null where none was.
func (s *Sidecar) mintBatch(ctx *fasthttp.RequestCtx, cfg *config.Config) {
	a := s.newAudit(ctx)
	defer s.writeAudit(ctx, a)
	reqs, e := decodeBatch(ctx.PostBody(), cfg.Limits.MaxBatch, cfg.Limits.MaxMetadataBytes)
	if e != nil {
		a.fail(ctx, e, nil)
		return
	}
	a.requests(reqs)
	if !s.allowMint(ctx, a, routeMintBatch, len(reqs)) {
		return
	}
	var ids []string
	var err error
	if !s.upstreamMint(ctx, cfg, a, func(c context.Context, client *upstream.Client) {
		ids, err = client.MintBatch(c, reqs, a.key, callInfo(ctx))
	}) {
		return
	}
	a.attempts = max(upstream.AttemptsOf(err), 1)
	now := s.now()
	out := make([]*string, len(ids))
	for i, id := range ids {
		if id == "" {
			continue
		}
		out[i] = &ids[i]
		_ = s.cache.Store(id, mintedEntry(reqs[i].Entity, now))
	}
	a.minted(ctx, ids...)
	if err != nil {
		a.failUpstream(ctx, err, out)
		return
	}
	writeJSON(ctx, 200, struct {
		ChittyIDs []string `json:"chittyIds"`
	}{ids})
}

// idempotencyKey is the caller's Idempotency-Key, or a new one.
func idempotencyKey(ctx *fasthttp.RequestCtx) string {
	if k := ctx.Request.Header.Peek("Idempotency-Key"); len(k) > 0 && len(k) <= 256 {
		return string(k)
	}
	return upstream.NewKey()
}

// callInfo copies what goes upstream out of the request (fasthttp reuses
// the request's buffers once the handler returns).
func callInfo(ctx *fasthttp.RequestCtx) upstream.CallInfo {
	return upstream.CallInfo{
		RequestID:   string(ctx.Response.Header.Peek(headerRequestID)),
		TraceParent: string(ctx.Request.Header.Peek("traceparent")),
		TraceState:  string(ctx.Request.Header.Peek("tracestate")),
		CallerAuth:  string(ctx.Request.Header.Peek("Authorization")),
	}
}

// versionText reports whether v looks like a version: 1 to 64 letters,
// digits and . + _ -.
func versionText(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '+' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
