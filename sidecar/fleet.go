package sidecar

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// The request side of the fleet tier (docs/fleet.md): validate asks the
// local cache, then the fleet tier, then upstream; minted IDs are written
// to the fleet tier; the fleet mint limit follows the local ones. The
// handlers reach it through hooks that do nothing while the tier is off
// (api.fleet nil). The process side (building, closing, reload, /health,
// metrics) is in fleettier.go.

// sharedCache is the fleet tier as the validate and mint handlers see it.
type sharedCache interface {
	Get(ctx context.Context, id string) (fleet.Verdict, bool, error)
	Put(ctx context.Context, id string, v fleet.Verdict, life time.Duration) error
	Fetch(ctx context.Context, id string, p fleet.Policy, fetch func(context.Context) (fleet.Verdict, error)) (fleet.Verdict, fleet.Source, error)
}

// fleetLimit is the fleet mint limit as the mint handlers see it.
type fleetLimit interface {
	AllowMint(ctx context.Context, n, perMinute, burst int) (ok bool, retryAfter time.Duration, err error)
}

var (
	_ sharedCache = (*fleet.Tier)(nil)
	_ fleetLimit  = (*fleet.Tier)(nil)
)

// X-Cache-Tier says which cache tier answered a HIT or STALE while the
// fleet tier is on: the local cache or the fleet tier. A MISS (upstream's
// answer) and every answer of a sidecar without the fleet tier have none.
var (
	keyXCacheTier = []byte("X-Cache-Tier")
	tierLocal     = []byte("local")
	tierFleet     = []byte("fleet")
)

// tierOf sets X-Cache-Tier for an answer from e, found with status st,
// while the fleet tier is on, and returns the status to answer with. An
// entry the fleet tier gave (Entry.Shared) is a HIT however this caller got
// it, even as a waiter of another caller's flight that Fetch reports as a
// MISS: no upstream call was made for it. writeCached calls it; a local
// hit costs one nil check more.
func (a *api) tierOf(ctx *fasthttp.RequestCtx, e cache.Entry, st cache.Status) cache.Status {
	if a.fleet == nil {
		return st
	}
	switch {
	case e.Shared:
		if st == cache.StatusMiss {
			st = cache.StatusHit
		}
		ctx.Response.Header.SetCanonical(keyXCacheTier, tierFleet)
	case st != cache.StatusMiss:
		ctx.Response.Header.SetCanonical(keyXCacheTier, tierLocal)
	}
	return st
}

// throughFleet puts the fleet tier between the local flight for id and
// fetch, its upstream validate: the flight asks the fleet tier, and only
// when no sidecar of the fleet has a fresh verdict does fetch run, in one
// sidecar of the fleet at a time (fleet.lockTtl). The flight bounds the
// whole of it, waiting for another sidecar included, by
// upstream.validateTimeout (validateUpstream). Without the tier it returns
// fetch.
//
// The flight stores what it returns in the local cache: a fleet verdict
// with its original fetched-at, so it lives there only what is left of its
// TTL. A verdict past its TTL that the fleet tier holds while no fresh one
// can be had comes back as a *fleetStaleError, which fleetStale finds.
func (a *api) throughFleet(cfg *config.Config, id string, fetch func(context.Context) (cache.Entry, error)) func(context.Context) (cache.Entry, error) {
	if a.fleet == nil {
		return fetch
	}
	return func(ctx context.Context) (cache.Entry, error) {
		p := cfg.Validation.FleetPolicy()
		v, src, err := a.fleet.Fetch(ctx, id, p, func(ctx context.Context) (fleet.Verdict, error) {
			e, err := fetch(ctx)
			return fleet.Verdict{Valid: e.Valid, Value: e.Value, FetchedAt: e.FetchedAt}, err
		})
		switch {
		case err != nil && src == fleet.SourceStale:
			if e, ok := a.fleetEntry(cfg, id, v); ok {
				return cache.Entry{}, &fleetStaleError{entry: e, err: err}
			}
			return cache.Entry{}, err
		case err != nil:
			return cache.Entry{}, err
		case src != fleet.SourceFleet:
			return cache.Entry{Valid: v.Valid, FetchedAt: v.FetchedAt, Value: v.Value}, nil
		}
		if e, ok := a.fleetEntry(cfg, id, v); ok {
			return e, nil
		}
		// Not a verdict a sidecar writes: ask upstream here and put the
		// answer over it.
		e, err := fetch(ctx)
		if err == nil {
			fv := fleet.Verdict{Valid: e.Valid, Value: e.Value, FetchedAt: e.FetchedAt}
			_ = a.fleet.Put(ctx, id, fv, p.Life(fv))
		}
		return e, err
	}
}

// fleetEntry turns a verdict from the fleet tier into a local entry
// (Shared), if it is one a sidecar writes: the ID in the configured
// format, a known entity code or reason (its Value goes into answers
// unescaped, and anyone who can write the keys could put anything there).
// A fetched-at in the future (another sidecar's clock ahead of ours) is
// taken as now, so the entry never outlives its TTL here.
func (a *api) fleetEntry(cfg *config.Config, id string, v fleet.Verdict) (cache.Entry, bool) {
	e := cache.Entry{Valid: v.Valid, Shared: true, FetchedAt: v.FetchedAt, Value: v.Value}
	if snapshotEntryCheck(cfg.Format)(id, e) != nil {
		return cache.Entry{}, false
	}
	if now := a.now(); e.FetchedAt.After(now) {
		e.FetchedAt = now
	}
	return e, true
}

// fleetStaleError is a validate flight's failure while the fleet tier
// holds a verdict past its TTL: the local cache had nothing to serve, the
// fleet tier's verdict may still be served stale.
type fleetStaleError struct {
	entry cache.Entry
	err   error
}

func (e *fleetStaleError) Error() string { return e.err.Error() }
func (e *fleetStaleError) Unwrap() error { return e.err }

// fleetStale finds an answer in the fleet tier for a validate whose
// flight failed (err), when it can: the verdict past its TTL the flight
// found there, to serve STALE while younger than validate.staleIfError;
// or, for a caller whose own deadline ended before the flight did,
// whatever the fleet tier holds now (one more call, within fleet.timeout).
// It reports false to leave the error to the caller. The entry is Shared,
// for tierOf.
func (a *api) fleetStale(cfg *config.Config, idb []byte, p cache.Policy, err error) (cache.Entry, cache.Status, bool) {
	if a.fleet == nil {
		return cache.Entry{}, cache.StatusMiss, false
	}
	var fs *fleetStaleError
	switch {
	case errors.As(err, &fs):
		if p.Judge(fs.entry, a.now()) != cache.StatusStale {
			return cache.Entry{}, cache.StatusMiss, false
		}
		a.cache.ServeStale()
		return fs.entry, cache.StatusStale, true
	case errors.Is(err, context.DeadlineExceeded):
		return a.fromFleet(cfg, idb, p, cache.StatusMiss)
	}
	return cache.Entry{}, cache.StatusMiss, false
}

// fromFleet looks idb up in the fleet tier (one call, within
// fleet.timeout) for a validate while upstream is known down (FAILED), and
// for fleetStale: it finds an answer when the fleet tier does better than
// the local cache (local: the status the local lookup found): a fresh
// verdict (HIT, stored locally), or one past its TTL when the local cache
// has none to serve (STALE). It reports false to leave the answer to the
// caller, and always without the tier. The entry is Shared, for tierOf.
func (a *api) fromFleet(cfg *config.Config, idb []byte, p cache.Policy, local cache.Status) (cache.Entry, cache.Status, bool) {
	if a.fleet == nil {
		return cache.Entry{}, cache.StatusMiss, false
	}
	id := string(idb)
	v, found, err := a.fleet.Get(context.Background(), id)
	if err != nil || !found {
		return cache.Entry{}, cache.StatusMiss, false
	}
	e, ok := a.fleetEntry(cfg, id, v)
	if !ok {
		return cache.Entry{}, cache.StatusMiss, false
	}
	switch p.Judge(e, a.now()) {
	case cache.StatusHit:
		_ = a.cache.Store(id, e) // a full cache only costs another fleet lookup
		return e, cache.StatusHit, true
	case cache.StatusStale:
		if local == cache.StatusStale {
			return cache.Entry{}, cache.StatusMiss, false // the local one will do, without Redis next time
		}
		a.cache.ServeStale()
		return e, cache.StatusStale, true
	}
	return cache.Entry{}, cache.StatusMiss, false
}

// fleetMintLimited reports whether the fleet mint limit applies: the tier
// is on and rateLimit.mint.fleetPerMinute is set.
func (a *api) fleetMintLimited(cfg *config.Config) bool {
	return a.fleetLimit != nil && cfg.RateLimit.Mint.FleetPerMinute > 0
}

// allowFleetMint applies the fleet mint limit (rateLimit.mint.fleetPerMinute)
// to n IDs, once the local limits would let them through: 429 RATE_LIMITED
// with Retry-After when the fleet has used its tokens. It fails open:
// while Redis fails, the local limits alone decide, and the mint's IDs are
// not written to the fleet tier (au.fleetFailed), so that a mint waits on
// a failing Redis once, at most fleet.timeout, not once more for the
// writes.
func (a *api) allowFleetMint(ctx *fasthttp.RequestCtx, cfg *config.Config, au *audit, n int) (result, bool) {
	m := cfg.RateLimit.Mint
	ok, d, err := a.fleetLimit.AllowMint(context.Background(), n, m.FleetPerMinute, m.FleetBurst)
	if err != nil {
		au.fleetFailed = true
	}
	if ok {
		return result{}, true
	}
	au.outcome = codeRateLimited
	res := rateLimited(ctx, au.sh, "fleet mint (rateLimit.mint.fleetPerMinute)", d)
	res.limited = false // a local limit's count; the fleet tier's metrics count this one
	return res, false
}

// shareMinted writes freshly minted IDs to the fleet tier as valid, for
// storeMinted, so that every sidecar of the fleet validates them without
// upstream. The writes run at once, each within fleet.timeout; a
// failed one only costs another sidecar an upstream validate later.
// entity gives the i-th ID's entity; empty IDs (not minted) are skipped.
func (a *api) shareMinted(cfg *config.Config, now time.Time, ids []string, entity func(i int) chittyid.Entity) {
	if a.fleet == nil {
		return
	}
	life := cfg.Validation.FleetPolicy().Life(fleet.Verdict{Valid: true})
	put := func(i int) {
		v := fleet.Verdict{Valid: true, Value: []byte(entity(i).String()), FetchedAt: now}
		_ = a.fleet.Put(context.Background(), ids[i], v, life) // counted by the tier
	}
	if len(ids) == 1 {
		if ids[0] != "" {
			put(0)
		}
		return
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		if id != "" {
			wg.Go(func() { put(i) })
		}
	}
	wg.Wait()
}
