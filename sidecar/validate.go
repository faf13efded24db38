package sidecar

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// Reasons given with "valid": false.
const (
	reasonFormat   = "format"   // failed the local format check
	reasonChecksum = "checksum" // numeric ID with a wrong checksum
	reasonFallback = "fallback" // a placeholder ID, never real
	reasonUpstream = "upstream" // upstream says it is not a real ID
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

// validate answers one validate request for idb (docs/api.md),
// which may be in the request's buffer: a cache hit answers without
// copying it.
func (a *api) validate(ctx *fasthttp.RequestCtx, cfg *config.Config, sh shape, idb []byte) result {
	if ok, d := a.limits.allowValidate(); !ok {
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
	p := cfg.Validation.Policy()
	now := a.requestTime(ctx)
	e, st := a.cache.LookupBytes(idb, p, now)
	if st == cache.StatusHit {
		return a.writeCached(ctx, idb, e, st, now, w)
	}
	if a.link.State() == fsm.Failed { // upstream known down: no upstream call
		if fe, fst, ok := a.fromFleet(cfg, idb, p, st); ok {
			return a.writeCached(ctx, idb, fe, fst, now, w)
		}
		if st == cache.StatusStale {
			a.cache.ServeStale()
			return a.writeCached(ctx, idb, e, st, now, w)
		}
		return sh.fail(ctx, &apiError{code: codeUnavailable, message: "the ChittyID service is unreachable (state FAILED) and the ID is not cached", retryAfter: time.Second}, nil)
	}
	return a.validateUpstream(ctx, cfg, p, idb, sh, w)
}

// validateUpstream asks upstream about an ID the cache could not answer
// fresh: one call however many callers miss it at once (the cache's
// flight), each caller waiting at most upstream.validateTimeout. The
// verdict is cached; an upstream failure never is, and an entry younger
// than validate.staleIfError is served stale instead.
func (a *api) validateUpstream(ctx *fasthttp.RequestCtx, cfg *config.Config, p cache.Policy, idb []byte, sh shape, w workerParts) result {
	a.busy.add()
	defer a.busy.done()
	id := string(idb)
	info := callInfo(ctx)
	client := a.client()
	wait, cancel := context.WithTimeout(context.Background(), cfg.Upstream.ValidateTimeout)
	defer cancel()
	fetch := a.throughFleet(cfg, id, func(fctx context.Context) (cache.Entry, error) {
		v, err := client.Validate(fctx, id, info)
		if err != nil {
			a.logUpstreamFailure("validate", info.RequestID, err)
			return cache.Entry{}, err
		}
		if v.Valid {
			return cache.Entry{Valid: true, FetchedAt: a.now(), Value: []byte(entityOf(cfg.Format, id, v.Entity))}, nil
		}
		return cache.Entry{Valid: false, FetchedAt: a.now(), Value: []byte(reasonUpstream)}, nil
	})
	e, st, err := a.cache.Fetch(wait, id, p, func(fctx context.Context) (cache.Entry, error) {
		// Runs once for every caller waiting on id, detached from all of
		// them: the flight's own deadline, the fleet tier's part included.
		fctx, cancel := context.WithTimeout(fctx, cfg.Upstream.ValidateTimeout)
		defer cancel()
		return fetch(fctx)
	})
	if err != nil {
		if fe, fst, ok := a.fleetStale(cfg, idb, p, err); ok {
			return a.writeCached(ctx, idb, fe, fst, a.now(), w)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = &apiError{code: codeTimeout, message: "upstream did not answer the validate within " + cfg.Upstream.ValidateTimeout.String()}
		}
		return sh.fail(ctx, fromUpstream(err), nil)
	}
	return a.writeCached(ctx, idb, e, st, a.now(), w)
}

// entityOf picks the entity code to report for a valid ID: upstream's if it
// gave one, else the one the ID's type letter stands for.
func entityOf(f chittyid.Format, id, fromUpstream string) string {
	if e, err := chittyid.ParseEntity(fromUpstream); err == nil {
		return e.String()
	}
	if e, ok := chittyid.EntityForLetter(f, f.TypeLetter(id)); ok {
		return e.String()
	}
	return ""
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

// writeCached answers from a cache entry found with status st, with
// X-Cache, Age and, while the fleet tier is on, X-Cache-Tier (tierOf).
func (a *api) writeCached(ctx *fasthttp.RequestCtx, id []byte, e cache.Entry, st cache.Status, now time.Time, w workerParts) result {
	st = a.tierOf(ctx, e, st)
	k := xcMiss
	switch st {
	case cache.StatusHit:
		k = xcHit
	case cache.StatusStale:
		k = xcStale
	}
	if st != cache.StatusMiss {
		var buf [20]byte
		age := max(now.Sub(e.FetchedAt), 0) / time.Second
		ctx.Response.Header.SetCanonical(keyAge, strconv.AppendInt(buf[:0], int64(age), 10))
	}
	writeVerdict(ctx, id, e, st == cache.StatusStale, w)
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

// mintedEntry is the cache entry for a freshly minted ID.
func mintedEntry(entity chittyid.Entity, now time.Time) cache.Entry {
	return cache.Entry{Valid: true, FetchedAt: now, Value: []byte(entity.String())}
}
