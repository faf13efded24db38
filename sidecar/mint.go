package sidecar

import (
	"context"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/valyala/fasthttp"
)

// mintReply is the answer to a mint: the client 1.0.0 contract, plus
// chitty_id for older callers that read snake case and id for hand-built
// requests; on the worker's routes also "success", as the worker answers.
type mintReply struct {
	Success   *bool  `json:"success,omitempty"`
	ChittyID  string `json:"chittyId"`
	ID        string `json:"id"`
	Snake     string `json:"chitty_id"`
	Entity    string `json:"entity"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
}

// mintGate says whether mints may go upstream now; it reports the error to
// answer with otherwise. (A mint with no token to send is refused by the
// client itself, before any upstream call.)
func (a *api) mintGate() *apiError {
	if a.draining.Load() {
		return &apiError{code: codeShuttingDown, message: "the sidecar is shutting down", retryAfter: time.Second}
	}
	if st := a.link.State(); st == fsm.Failed {
		return &apiError{code: codeUnavailable, message: "the ChittyID service is unreachable (state " + string(st) + "): failing fast", retryAfter: time.Second}
	}
	return nil
}

// upstreamMint runs do with the current client, within the mint deadline,
// if the gate lets mints through; otherwise it answers the gate's error
// and reports false. The mint is counted as in flight before the gate:
// shutdown sets draining, then waits, so a mint is either counted in time
// to be waited for or sees draining.
func (a *api) upstreamMint(ctx *fasthttp.RequestCtx, cfg *config.Config, au *audit, do func(context.Context, upstreamClient, upstream.CallInfo)) (result, bool) {
	a.busy.add()
	defer a.busy.done()
	client := a.client()
	if e := a.mintGate(); e != nil {
		return au.fail(ctx, e, nil), false
	}
	c, cancel := context.WithTimeout(context.Background(), cfg.Upstream.MintTimeout)
	defer cancel()
	info := callInfo(ctx)
	c, span := a.startServer(ctx, c, info.Trace)
	do(c, client, info)
	return result{span: span}, true
}

// allowMint applies the mint rate limits to n IDs; when they refuse, it
// answers 429 and reports false. Checked after parsing, so malformed
// requests use no tokens. With the fleet mint limit on, the local limits
// are checked first, the fleet limit asked next, and the local tokens taken
// last: a fleet refusal spends none of the caller's. (Another mint of the
// same caller may take them meanwhile: this one is then refused locally,
// its fleet tokens spent, which errs on the side of fewer mints.)
func (a *api) allowMint(ctx *fasthttp.RequestCtx, cfg *config.Config, au *audit, n int) (result, bool) {
	caller := callerID(ctx)
	if a.fleetMintLimited(cfg) {
		if ok, d := a.limits.CanMint(caller, n); !ok {
			return localMintRefusal(ctx, au, d), false
		}
		if res, ok := a.allowFleetMint(ctx, cfg, au, n); !ok {
			return res, false
		}
	}
	if ok, d := a.limits.AllowMint(caller, n); !ok {
		return localMintRefusal(ctx, au, d), false
	}
	return result{}, true
}

// localMintRefusal answers a mint the local limits refuse.
func localMintRefusal(ctx *fasthttp.RequestCtx, au *audit, d time.Duration) result {
	au.outcome = codeRateLimited
	return rateLimited(ctx, au.sh, "local mint", d)
}

// mint answers POST /v1/mint and its aliases (docs/api.md, and docs/upstream.md,
// "How mint retries"). Every mint that reaches the sidecar leaves one audit
// line, whatever its outcome.
func (a *api) mint(ctx *fasthttp.RequestCtx, cfg *config.Config, sh shape) result {
	au := a.newAudit(ctx, sh)
	defer a.writeAudit(ctx, au)
	m, e := decodeObject(ctx.PostBody(), "mint body")
	if e != nil {
		return au.fail(ctx, e, nil)
	}
	req, e := decodeMint(m, "", cfg.Limits.MaxMetadataBytes)
	au.requests([]upstream.MintRequest{req})
	if e != nil {
		return au.fail(ctx, e, nil)
	}
	return a.mintOne(ctx, cfg, au, req)
}

// mintQuery answers a mint asked for in the query, as the worker's routes
// take it (GET /api/get-chittyid, GET /generate): the same path as a POST
// mint from there on, limits, audit and all.
func (a *api) mintQuery(ctx *fasthttp.RequestCtx, cfg *config.Config, sh shape) result {
	au := a.newAudit(ctx, sh)
	defer a.writeAudit(ctx, au)
	req, e := decodeMintQuery(ctx.QueryArgs())
	au.requests([]upstream.MintRequest{req})
	if e != nil {
		return au.fail(ctx, e, nil)
	}
	return a.mintOne(ctx, cfg, au, req)
}

// mintOne mints req upstream, if the limits and the gate let it, and
// answers in the audit's shape.
func (a *api) mintOne(ctx *fasthttp.RequestCtx, cfg *config.Config, au *audit, req upstream.MintRequest) result {
	if res, ok := a.allowMint(ctx, cfg, au, 1); !ok {
		return res
	}
	var got upstream.Minted
	var err error
	up, ok := a.upstreamMint(ctx, cfg, au, func(c context.Context, client upstreamClient, info upstream.CallInfo) {
		got, err = client.Mint(c, req, au.key, info)
	})
	if !ok {
		return up
	}
	if err != nil {
		return withSpan(au.failUpstream(ctx, err, nil), up.span)
	}
	au.attempts = got.Attempts
	au.minted(ctx, got.ID)
	now := a.now()
	a.storeMinted(cfg, au, now, []string{got.ID}, func(int) chittyid.Entity { return got.Entity })
	// Upstream's timestamp is passed on only if it is one, its version only
	// if upstream.Minted kept it (the shape of a version, without the
	// credential): free text from upstream never reaches the caller.
	ts := got.Timestamp
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		ts = now.UTC().Format(time.RFC3339)
	}
	ver := got.Version
	if ver == "" {
		ver = a.version
	}
	reply := mintReply{ChittyID: got.ID, ID: got.ID, Snake: got.ID, Entity: got.Entity.String(), Timestamp: ts, Version: ver}
	if au.sh == shapeWorker {
		yes := true
		reply.Success = &yes
	}
	writeJSON(ctx, 200, reply)
	return result{attempts: au.attempts, span: up.span}
}

// mintBatch answers POST /v1/mint/batch. On a partial failure the error
// answer carries the IDs that were minted, null where none was.
func (a *api) mintBatch(ctx *fasthttp.RequestCtx, cfg *config.Config) result {
	au := a.newAudit(ctx, shapeClient)
	defer a.writeAudit(ctx, au)
	reqs, e := decodeBatch(ctx.PostBody(), cfg.Limits.MaxBatch, cfg.Limits.MaxMetadataBytes)
	if e != nil {
		return au.fail(ctx, e, nil)
	}
	au.requests(reqs)
	if res, ok := a.allowMint(ctx, cfg, au, len(reqs)); !ok {
		return res
	}
	var ids []string
	var err error
	up, ok := a.upstreamMint(ctx, cfg, au, func(c context.Context, client upstreamClient, info upstream.CallInfo) {
		ids, err = client.MintBatch(c, reqs, au.key, info)
	})
	if !ok {
		return up
	}
	au.attempts = max(upstream.AttemptsOf(err), 1)
	now := a.now()
	a.storeMinted(cfg, au, now, ids, func(i int) chittyid.Entity { return reqs[i].Entity })
	out := make([]*string, len(ids))
	for i, id := range ids {
		if id != "" {
			out[i] = &ids[i]
		}
	}
	au.minted(ctx, ids...)
	if err != nil {
		return withSpan(au.failUpstream(ctx, err, out), up.span)
	}
	writeJSON(ctx, 200, struct {
		ChittyIDs []string `json:"chittyIds"`
	}{ids})
	return result{attempts: au.attempts, span: up.span}
}

// withSpan returns res carrying the request's server span.
func withSpan(res result, span tracing.Span) result {
	res.span = span
	return res
}

// storeMinted stores freshly minted IDs as valid before they are returned,
// in the local cache and in the fleet tier (resolve.Resolver.StoreMinted):
// every sidecar of the fleet then validates them without upstream. When
// Redis failed this mint's fleet limit call (au.fleetFailed), they are
// stored locally only: the mint waits on a failing Redis once.
func (a *api) storeMinted(cfg *config.Config, au *audit, now time.Time, ids []string, entity func(i int) chittyid.Entity) {
	a.verdicts.StoreMinted(context.Background(), cfg.Validation.Policy(), now, ids, entity, !au.fleetFailed)
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
		RequestID:  string(ctx.Response.Header.Peek(headerRequestID)),
		Trace:      tracing.ParseRemote(ctx.Request.Header.Peek("traceparent"), ctx.Request.Header.Peek("tracestate")),
		CallerAuth: string(ctx.Request.Header.Peek("Authorization")),
	}
}
