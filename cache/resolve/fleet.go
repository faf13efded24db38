package resolve

import (
	"context"
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
)

// The fleet tier's part of a resolution (docs/fleet.md).

// throughFleet is the local flight's fetch with the fleet tier on: a fresh
// verdict another sidecar stored there is the answer; otherwise one
// sidecar of the fleet at a time (fleet.lockTtl) asks upstream, and its
// verdict is stored there for the others. The local flight stores what
// this returns: a fleet verdict with its original fetched-at (Shared), so
// it lives in the local cache only what is left of its TTL.
//
// When no fresh verdict can be had and the fleet tier holds one past its
// TTL, that one comes back with the error as the flight's stand-in, for
// cache.Cache.Fetch to serve stale to every caller with no stale entry of
// its own.
func (r *Resolver) throughFleet(ctx context.Context, s Settings, id string, ask Ask) (cache.Entry, error) {
	p := s.fleetPolicy()
	// The fleet tier's span covers the whole of its part, a wait for
	// another sidecar's verdict included; an upstream call made in it
	// hangs off the flight beside it.
	flight := tracing.From(ctx)
	fctx, span := tracing.Start(ctx, "fleet tier fetch", tracing.KindClient)
	v, src, err := r.fleet.Fetch(fctx, id, p, func(ctx context.Context) (fleet.Verdict, error) {
		e, err := r.upstream(tracing.With(ctx, flight), s, id, ask)
		return verdictOf(e), err
	})
	if span.Recording() {
		span.SetAttrs(tracing.String("db.system.name", "redis"), tracing.String("chittyid.fleet.source", src.String()))
		span.Fail(failure(err))
	}
	span.End()
	switch {
	case err != nil && src == fleet.SourceStale:
		if e, ok := r.admitFleet(s, id, v); ok {
			return e, err // the stand-in
		}
		return cache.Entry{}, err
	case err != nil:
		return cache.Entry{}, err
	case src != fleet.SourceFleet:
		return cache.Entry{Valid: v.Valid, FetchedAt: v.FetchedAt, Value: v.Value}, nil
	}
	if e, ok := r.admitFleet(s, id, v); ok {
		return e, nil
	}
	// Not a verdict a sidecar writes: ask upstream here and put the
	// answer over it.
	e, err := r.upstream(ctx, s, id, ask)
	if err == nil {
		fv := verdictOf(e)
		_ = r.fleet.Put(ctx, id, fv, p.Life(fv)) // counted by the tier
	}
	return e, err
}

// fromFleet looks id up in the fleet tier (one call, within fleet.timeout)
// when no flight can answer: upstream is known down, or the caller's wait
// ended. It answers when the fleet tier does better than the local cache
// (localStale: the local cache holds an entry to serve stale): a fresh
// verdict (stored locally), or one past its TTL when the local cache has
// none to serve. It reports false to leave the answer to the caller, and
// always without the tier.
func (r *Resolver) fromFleet(ctx context.Context, s Settings, id string, localStale bool) (Answer, bool) {
	if r.fleet == nil {
		return Answer{}, false
	}
	v, found, err := r.fleet.Get(ctx, id)
	if err != nil || !found {
		return Answer{}, false
	}
	e, ok := r.admitFleet(s, id, v)
	if !ok {
		return Answer{}, false
	}
	switch s.Policy.Judge(e, r.now()) {
	case cache.StatusHit:
		_ = r.cache.Store(id, e) // a full cache only costs another fleet lookup
		return Answer{Entry: e, Tier: TierFleet}, true
	case cache.StatusStale:
		if localStale {
			return Answer{}, false // the local one will do, without Redis next time
		}
		r.cache.ServeStale()
		return Answer{Entry: e, Tier: TierFleet, Stale: true}, true
	}
	return Answer{}, false
}

// admitFleet turns a verdict from the fleet tier into a local entry
// (Shared), if Admit lets it in: anyone who can write the tier's keys
// could put anything there. A fetched-at in the future (another sidecar's
// clock ahead of ours) is taken as now, so the entry never outlives its
// TTL here.
func (r *Resolver) admitFleet(s Settings, id string, v fleet.Verdict) (cache.Entry, bool) {
	e := cache.Entry{Valid: v.Valid, Shared: true, FetchedAt: v.FetchedAt, Value: v.Value}
	if Admit(s.Format, id, e) != nil {
		return cache.Entry{}, false
	}
	if now := r.now(); e.FetchedAt.After(now) {
		e.FetchedAt = now
	}
	return e, true
}

// verdictOf is e as the fleet tier keeps it.
func verdictOf(e cache.Entry) fleet.Verdict {
	return fleet.Verdict{Valid: e.Valid, Value: e.Value, FetchedAt: e.FetchedAt}
}

// StoreMinted stores IDs the sidecar has just minted as valid, fetched at
// now, before they are handed out: in the local cache and, with the fleet
// tier on and share set, in the fleet tier for the life p gives them
// there, so that every sidecar of the fleet validates them without
// upstream. entity gives the i-th ID's entity; empty IDs (not minted) are
// skipped. The fleet writes run at once, each within fleet.timeout; a full
// cache or a failed write only costs a later upstream validate, which is
// why a mint that Redis has just failed shares nothing: it would wait on
// a failing Redis again.
func (r *Resolver) StoreMinted(ctx context.Context, p cache.Policy, now time.Time, ids []string, entity func(i int) chittyid.Entity, share bool) {
	for i, id := range ids {
		if id != "" {
			_ = r.cache.Store(id, Minted(entity(i), now))
		}
	}
	if r.fleet == nil || !share {
		return
	}
	life := Settings{Policy: p}.fleetPolicy().Life(fleet.Verdict{Valid: true})
	put := func(i int) {
		v := fleet.Verdict{Valid: true, Value: []byte(entity(i).String()), FetchedAt: now}
		_ = r.fleet.Put(ctx, ids[i], v, life) // counted by the tier
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
