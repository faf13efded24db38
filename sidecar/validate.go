package sidecar

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// Reasons given with "valid": false, besides resolve.ReasonUpstream
// (upstream says it is not a real ID), the one a tier stores.
const (
	reasonFormat   = "format"   // failed the local format check
	reasonChecksum = "checksum" // numeric ID with a wrong checksum
	reasonFallback = "fallback" // a placeholder ID, never real
)

// Cached values are tiny: for a valid verdict the entity code (may be empty),
// for a not-valid one the reason. The answer is assembled from fixed pieces
// and the ID, which passed the format check and so needs no JSON escaping:
// a hit does no JSON encoding.
var (
	bodyValidPrefix         = []byte(`{"valid":true,"chittyId":"`)
	bodyInvalidPrefix       = []byte(`{"valid":false,"chittyId":"`)
	bodyWorkerValidPrefix   = []byte(`{"success":true,"valid":true,"chittyId":"`)
	bodyWorkerInvalidPrefix = []byte(`{"success":true,"valid":false,"chittyId":"`)
	bodyEntity              = []byte(`","entity":"`)
	bodyEntityType          = []byte(`","entityType":"`)
	bodyReason              = []byte(`","reason":"`)
	bodyStaleEnd            = []byte(`","stale":true}`)
	bodyEnd                 = []byte(`"}`)
	bodyQuote               = []byte(`"`)
	bodyStale               = []byte(`,"stale":true`)
	bodyError               = []byte(`,"error":"`)
)

// xcKind is what a validate answer's X-Cache header says (xcNone: the
// answer has none). The handlers return it, so metrics and the access log
// need not read the header back.
type xcKind uint8

const (
	xcNone xcKind = iota
	xcHit
	xcMiss
	xcStale
	xcLocal
	xcKinds // the number of kinds
)

var (
	xcNames  = [xcKinds]string{xcHit: "HIT", xcMiss: "MISS", xcStale: "STALE", xcLocal: "LOCAL"}
	xcValues = [xcKinds][]byte{xcHit: []byte("HIT"), xcMiss: []byte("MISS"), xcStale: []byte("STALE"), xcLocal: []byte("LOCAL")}
)

// setXCache sets the X-Cache header to k and returns k.
func setXCache(ctx *fasthttp.RequestCtx, k xcKind) xcKind {
	ctx.Response.Header.SetCanonical(keyXCache, xcValues[k])
	return k
}

// Response header names in fasthttp's canonical form, set with SetCanonical:
// SetBytesV would copy and normalise the name on every request.
var (
	keyXCache    = []byte("X-Cache")
	keyAge       = []byte("Age")
	keyRequestID = []byte("X-Request-Id") // headerRequestID, normalised
)

// X-Cache-Tier says which cache tier answered a HIT or STALE while the
// fleet tier is on: the local cache or the fleet tier. A MISS (upstream's
// answer) and every answer of a sidecar without the fleet tier have none.
var (
	keyXCacheTier = []byte("X-Cache-Tier")
	tierLocal     = []byte("local")
	tierFleet     = []byte("fleet")
)

// validate answers one validate request for idb (docs/api.md),
// which may be in the request's buffer: a cache hit answers without
// copying it.
func (a *api) validate(ctx *fasthttp.RequestCtx, cfg *config.Config, sh shape, idb []byte) result {
	if ok, d := a.limits.AllowValidate(); !ok {
		return rateLimited(ctx, sh, "local validate", d)
	}
	w := a.workerPartsFor(ctx, cfg, sh)
	if err := cfg.Format.CheckBytes(idb); err != nil {
		return validateLocalFailure(ctx, string(idb), err, w)
	}
	if cfg.Validation.Mode == config.ValidateModeLocal {
		writeVerdict(ctx, idb, cache.Entry{Valid: true}, false, w)
		return result{xc: setXCache(ctx, xcLocal)}
	}
	now := a.requestTime(ctx)
	local := a.verdicts.Lookup(cfg.Validation.Policy(), idb, now)
	if local.Fresh() {
		return a.writeAnswer(ctx, idb, local, now, w)
	}
	return a.validateMiss(ctx, cfg, idb, local, sh, w)
}

// validateMiss answers an ID the local cache could not answer fresh
// (local: what it holds) through the other tiers (resolve.Resolver),
// counted as in flight meanwhile: shutdown waits for it.
func (a *api) validateMiss(ctx *fasthttp.RequestCtx, cfg *config.Config, idb []byte, local resolve.Answer, sh shape, w workerParts) result {
	a.busy.add()
	defer a.busy.done()
	s := resolve.Settings{Policy: cfg.Validation.Policy(), Timeout: cfg.Upstream.ValidateTimeout, Format: cfg.Format}
	info := callInfo(ctx)
	// Traced: the request's server span; the resolution hangs its flight
	// wait, the flight and the fleet tier call off it (cache/resolve).
	c, span := a.startServer(ctx, context.Background(), info.Trace)
	ans, err := a.verdicts.Resolve(c, s, string(idb), local, a.askUpstream(info))
	res := a.answerMiss(ctx, cfg, idb, sh, w, ans, err)
	res.span = span
	return res
}

// answerMiss answers a validate miss with what the resolution gave.
func (a *api) answerMiss(ctx *fasthttp.RequestCtx, cfg *config.Config, idb []byte, sh shape, w workerParts, ans resolve.Answer, err error) result {
	switch {
	case errors.Is(err, resolve.ErrDown):
		return sh.fail(ctx, &apiError{code: codeUnavailable, message: "the ChittyID service is unreachable (state FAILED) and the ID is not cached", retryAfter: time.Second}, nil)
	case errors.Is(err, context.DeadlineExceeded):
		return sh.fail(ctx, &apiError{code: codeTimeout, message: "upstream did not answer the validate within " + cfg.Upstream.ValidateTimeout.String()}, nil)
	case err != nil:
		return sh.fail(ctx, fromUpstream(err), nil)
	}
	return a.writeAnswer(ctx, idb, ans, a.now(), w)
}

// askUpstream is this request's upstream validate: the current client,
// and the request's own details, copied, since the flight may outlive the
// request. A failure is logged once, by the one call its flight's callers
// share; they answer with a fixed message.
func (a *api) askUpstream(info upstream.CallInfo) resolve.Ask {
	client := a.client()
	return func(c context.Context, id string) (resolve.Verdict, error) {
		v, err := client.Validate(c, id, info)
		if err != nil {
			a.logUpstreamFailure("validate", info.RequestID, err)
			return resolve.Verdict{}, err
		}
		return resolve.Verdict{Valid: v.Valid, Entity: v.Entity}, nil
	}
}

// validateLocalFailure answers an ID that failed the local check: never
// cached, never sent upstream.
func validateLocalFailure(ctx *fasthttp.RequestCtx, id string, err error, w workerParts) result {
	reason := reasonFormat
	switch {
	case errors.Is(err, chittyid.ErrIDChecksum):
		reason = reasonChecksum
	case errors.Is(err, chittyid.ErrFallbackID):
		reason = reasonFallback
	}
	// The ID is arbitrary caller input here, so it is JSON-encoded.
	ans := localFailure{Valid: false, ChittyID: id, Reason: reason}
	if w.on {
		yes := true
		ans.Success, ans.Error, ans.Timestamp = &yes, reasonText[reason], string(w.ts)
	}
	writeJSON(ctx, 200, ans)
	return result{xc: setXCache(ctx, xcLocal), reason: "BAD_FORMAT"}
}

// localFailure is the answer for an ID that failed the local check.
type localFailure struct {
	Success   *bool  `json:"success,omitempty"`
	Valid     bool   `json:"valid"`
	ChittyID  string `json:"chittyId"`
	Reason    string `json:"reason"`
	Error     string `json:"error,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
}

// workerParts are what a worker-shaped validate answer adds to the 1.0.0
// one; the zero value (on false) adds nothing.
type workerParts struct {
	on         bool   // the answer has the worker's shape
	components bool   // a numeric ID: its segments as "components"
	ts         []byte // the request's time, formatted (stamps)
}

// workerPartsFor returns what answers of shape sh add.
func (a *api) workerPartsFor(ctx *fasthttp.RequestCtx, cfg *config.Config, sh shape) workerParts {
	if sh != shapeWorker {
		return workerParts{}
	}
	return workerParts{on: true, components: cfg.Format == chittyid.FormatNumeric, ts: a.stamps.at(ctx.Time())}
}

// writeAnswer answers with ans: its verdict; X-Cache, MISS for upstream's
// verdict, else HIT or STALE; for a cached one Age, measured at now, and,
// while the fleet tier is on, X-Cache-Tier. A local hit costs one nil
// check more than without the tier.
func (a *api) writeAnswer(ctx *fasthttp.RequestCtx, id []byte, ans resolve.Answer, now time.Time, w workerParts) result {
	k := xcHit
	switch {
	case ans.Tier == resolve.TierUpstream:
		k = xcMiss
	case ans.Stale:
		k = xcStale
	}
	if k != xcMiss {
		if a.verdicts.FleetOn() {
			tier := tierLocal
			if ans.Tier == resolve.TierFleet {
				tier = tierFleet
			}
			ctx.Response.Header.SetCanonical(keyXCacheTier, tier)
		}
		var buf [20]byte
		age := max(now.Sub(ans.Entry.FetchedAt), 0) / time.Second
		ctx.Response.Header.SetCanonical(keyAge, strconv.AppendInt(buf[:0], int64(age), 10))
	}
	writeVerdict(ctx, id, ans.Entry, ans.Stale, w)
	return result{xc: setXCache(ctx, k)}
}

// writeVerdict writes the validate answer without JSON encoding; id must
// have passed the format check (only A-Z, 0-9 and '-'). A valid verdict
// names its entity twice, as "entity" and "entityType", for the clients
// that read either; w adds the worker's fields.
func writeVerdict(ctx *fasthttp.RequestCtx, id []byte, e cache.Entry, stale bool, w workerParts) {
	ctx.SetStatusCode(200)
	ctx.Response.Header.SetContentTypeBytes(contentJSONBytes)
	switch {
	case !w.on && e.Valid:
		ctx.Response.AppendBody(bodyValidPrefix)
	case !w.on:
		ctx.Response.AppendBody(bodyInvalidPrefix)
	case e.Valid:
		ctx.Response.AppendBody(bodyWorkerValidPrefix)
	default:
		ctx.Response.AppendBody(bodyWorkerInvalidPrefix)
	}
	ctx.Response.AppendBody(id)
	if len(e.Value) > 0 {
		if e.Valid {
			ctx.Response.AppendBody(bodyEntity)
			ctx.Response.AppendBody(e.Value)
			ctx.Response.AppendBody(bodyEntityType)
		} else {
			ctx.Response.AppendBody(bodyReason)
		}
		ctx.Response.AppendBody(e.Value)
	}
	if !w.on {
		if stale {
			ctx.Response.AppendBody(bodyStaleEnd)
			return
		}
		ctx.Response.AppendBody(bodyEnd)
		return
	}
	ctx.Response.AppendBody(bodyQuote)
	if stale {
		ctx.Response.AppendBody(bodyStale)
	}
	if !e.Valid {
		ctx.Response.AppendBody(bodyError)
		ctx.Response.AppendBodyString(reasonText[string(e.Value)])
		ctx.Response.AppendBody(bodyQuote)
	}
	if w.components {
		appendComponents(ctx, id)
	}
	ctx.Response.AppendBody(bodyTimestamp)
	ctx.Response.AppendBody(w.ts)
	ctx.Response.AppendBody(bodyWorkerEnd)
}

// validateBody answers POST /v1/validate and POST /api/validate. The body
// apps send, {"id":"…"}, is read in place; anything else goes through the
// JSON decoder.
func (a *api) validateBody(ctx *fasthttp.RequestCtx, cfg *config.Config, sh shape) result {
	if id, ok := plainValidateBody(ctx.PostBody()); ok {
		return a.validate(ctx, cfg, sh, id)
	}
	id, e := decodeValidateBody(ctx.PostBody())
	if e != nil {
		return sh.fail(ctx, e, nil)
	}
	return a.validate(ctx, cfg, sh, []byte(id))
}
