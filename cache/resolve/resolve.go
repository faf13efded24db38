package resolve

import (
	"context"
	"errors"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
)

// ErrDown means upstream is known down (state FAILED) and neither tier
// holds a verdict for the ID, fresh or stale: nothing was sent upstream.
var ErrDown = errors.New("resolve: upstream is down (state FAILED) and the ID is not cached")

// Tier says which tier gave an answer.
type Tier uint8

const (
	// TierNone is the zero Answer's: no answer.
	TierNone Tier = iota
	// TierLocal is the process's own cache.
	TierLocal
	// TierFleet is the fleet tier: a verdict another sidecar fetched.
	TierFleet
	// TierUpstream is a verdict upstream gave for this request, or for
	// another caller's request it waited for.
	TierUpstream
)

// Answer is a verdict and where it came from.
type Answer struct {
	// Entry is the verdict: Valid, FetchedAt (when upstream gave it) and
	// Value, the entity code of a valid ID or the reason of a "not valid"
	// one. Value is shared with the cache: never write to it.
	Entry cache.Entry
	// Tier is the tier that answered.
	Tier Tier
	// Stale says the verdict is past its TTL, served because upstream
	// failed or is known down.
	Stale bool
}

// Fresh reports whether a is an answer to give as it is: from a tier and
// not stale.
func (a Answer) Fresh() bool { return a.Tier != TierNone && !a.Stale }

// Settings are what a resolution reads of the running config: the values
// of the config snapshot its request read.
type Settings struct {
	// Policy is the validate section's freshness: validate.ttl,
	// validate.negativeTtl, validate.staleIfError.
	Policy cache.Policy
	// Timeout is upstream.validateTimeout: how long a caller waits for its
	// ID's flight, and how long the flight may take.
	Timeout time.Duration
	// Format is the ID format, for Admit.
	Format chittyid.Format
}

// fleetPolicy is the fleet tier's view of the same freshness.
func (s Settings) fleetPolicy() fleet.Policy {
	return fleet.Policy{TTL: s.Policy.TTL, NegativeTTL: s.Policy.NegativeTTL, StaleIfError: s.Policy.StaleIfError}
}

// Verdict is upstream's answer about an ID.
type Verdict struct {
	Valid bool
	// Entity is the entity code upstream named for a valid ID; "" or one
	// Admit does not know, and the ID's type letter decides.
	Entity string
}

// Ask asks upstream about id within ctx. A flight calls the Ask of the
// request that started it, once for all its callers; it carries that
// request's own details (request ID, trace headers) upstream.
type Ask func(ctx context.Context, id string) (Verdict, error)

// Cache is the process's own cache, as the resolution uses it.
type Cache interface {
	LookupBytes(id []byte, p cache.Policy, now time.Time) (cache.Entry, cache.Status)
	Store(id string, e cache.Entry) error
	Fetch(ctx context.Context, id string, p cache.Policy, fetch func(context.Context) (cache.Entry, error)) (cache.Entry, cache.Status, error)
	ServeStale()
}

// Fleet is the fleet tier, shared by the sidecars of a fleet.
type Fleet interface {
	Get(ctx context.Context, id string) (fleet.Verdict, bool, error)
	Put(ctx context.Context, id string, v fleet.Verdict, life time.Duration) error
	Fetch(ctx context.Context, id string, p fleet.Policy, fetch func(context.Context) (fleet.Verdict, error)) (fleet.Verdict, fleet.Source, error)
}

// Link is the upstream lifecycle's state, read on every resolution.
type Link interface {
	State() fsm.State
}

var (
	_ Cache = (*cache.Cache)(nil)
	_ Fleet = (*fleet.Tier)(nil)
	_ Link  = (*fsm.Lifecycle)(nil)
)

// Options are a Resolver's optional parts.
type Options struct {
	// Fleet is the fleet tier; nil while it is off.
	Fleet Fleet
	// Now is the clock of fetched-at times; nil means time.Now.
	Now func() time.Time
}

// Resolver answers validates from the tiers. It is safe for concurrent
// use. Build it with New.
type Resolver struct {
	flights tracing.Flights // links the traces that share a flight
	cache   Cache
	fleet   Fleet // nil while the fleet tier is off
	link    Link
	now     func() time.Time
}

// New returns a Resolver over the local cache c that asks upstream only
// while link is not FAILED.
func New(c Cache, link Link, opts Options) *Resolver {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Resolver{cache: c, fleet: opts.Fleet, link: link, now: opts.Now}
}

// FleetOn reports whether the fleet tier is on: answers then say which
// tier gave them.
func (r *Resolver) FleetOn() bool { return r.fleet != nil }

// Lookup answers id, which may still be in a request's buffer, from the
// local cache alone, judged by p at now: a fresh entry (Fresh) without
// allocating or copying id; an entry past its TTL, Stale, for Resolve to
// serve if nothing better can be had; or no answer. It is the request's
// one lookup, the only place a hit or a miss is counted.
func (r *Resolver) Lookup(p cache.Policy, id []byte, now time.Time) Answer {
	e, st := r.cache.LookupBytes(id, p, now)
	switch st {
	case cache.StatusHit:
		return Answer{Entry: e, Tier: TierLocal}
	case cache.StatusStale:
		return Answer{Entry: e, Tier: TierLocal, Stale: true}
	}
	return Answer{}
}

// Resolve answers id after Lookup found no fresh entry (local: what it
// found). While upstream is known down (FAILED), nothing goes upstream:
// a fresh verdict of the fleet tier, else a stale entry (local first),
// else ErrDown. Otherwise one flight per ID asks the fleet tier, then
// upstream (ask); each caller waits at most s.Timeout, and errors.Is sees
// context.DeadlineExceeded when it gave up. A verdict upstream gives is
// stored in both tiers ("not valid" ones for validate.negativeTtl); a
// failure never is, and an entry younger than validate.staleIfError is
// served stale instead, the local cache's before the fleet tier's.
func (r *Resolver) Resolve(ctx context.Context, s Settings, id string, local Answer, ask Ask) (Answer, error) {
	if r.link.State() == fsm.Failed {
		return r.whileDown(ctx, s, id, local)
	}
	return r.fetch(ctx, s, id, ask)
}

// whileDown answers while upstream is known down.
func (r *Resolver) whileDown(ctx context.Context, s Settings, id string, local Answer) (Answer, error) {
	if a, ok := r.fromFleet(ctx, s, id, local.Stale); ok {
		return a, nil
	}
	if local.Stale {
		r.cache.ServeStale()
		return local, nil
	}
	return Answer{}, ErrDown
}

// fetch asks upstream, through the fleet tier, in the local flight for
// id. The flight runs detached from every caller and bounds itself, the
// fleet tier's part included, by s.Timeout; so does each caller's wait
// for it. A caller whose wait ends first asks the fleet tier once more
// (fromFleet): another sidecar may have what its flight has not yet
// brought.
func (r *Resolver) fetch(ctx context.Context, s Settings, id string, ask Ask) (Answer, error) {
	wait, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	// Traced (a span in ctx): the caller's wait for the flight, linked to
	// a flight already under way; the flight's own span when this caller
	// starts it. The flight carries its leader's trace upstream
	// (tracing.Flights).
	wait, waitSpan := r.flights.StartWait(wait, "validate flight wait", id)
	e, st, err := r.cache.Fetch(wait, id, s.Policy, func(fctx context.Context) (cache.Entry, error) {
		fctx, cancel := context.WithTimeout(fctx, s.Timeout)
		defer cancel()
		fctx, span := tracing.Start(fctx, "validate flight", tracing.KindInternal)
		defer span.End()
		defer r.flights.Lead(fctx, id)()
		e, err := r.flight(fctx, s, id, ask)
		span.Fail(failure(err))
		return e, err
	})
	endWait(waitSpan, st, err)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			if a, ok := r.fromFleet(ctx, s, id, false); ok {
				return a, nil
			}
		}
		return Answer{}, err
	}
	return answerOf(e, st), nil
}

// failure names err for a span's error.type: "timeout", "error", or ""
// for none.
func failure(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// endWait ends a caller's flight wait span with what the flight gave it.
func endWait(s tracing.Span, st cache.Status, err error) {
	if s.Recording() {
		s.Fail(failure(err))
		if err == nil {
			s.SetString("chittyid.cache.status", st.String())
		}
	}
	s.End()
}

// answerOf is the answer for an entry cache.Fetch returned with status
// st. An entry the fleet tier gave (Shared) is the fleet tier's answer
// however this caller got it, even as a waiter of another caller's flight
// that Fetch reports as a miss: no upstream call was made for it.
func answerOf(e cache.Entry, st cache.Status) Answer {
	a := Answer{Entry: e, Tier: TierUpstream, Stale: st == cache.StatusStale}
	switch {
	case e.Shared:
		a.Tier = TierFleet
	case st != cache.StatusMiss:
		a.Tier = TierLocal
	}
	return a
}

// flight is the local flight's fetch: through the fleet tier when it is on.
func (r *Resolver) flight(ctx context.Context, s Settings, id string, ask Ask) (cache.Entry, error) {
	if r.fleet == nil {
		return r.upstream(ctx, s, id, ask)
	}
	return r.throughFleet(ctx, s, id, ask)
}

// upstream asks upstream for id's verdict and makes it an entry: a valid
// ID's entity code (upstream's, else the one its type letter stands for),
// or ReasonUpstream.
func (r *Resolver) upstream(ctx context.Context, s Settings, id string, ask Ask) (cache.Entry, error) {
	v, err := ask(ctx, id)
	if err != nil {
		return cache.Entry{}, err
	}
	if v.Valid {
		return cache.Entry{Valid: true, FetchedAt: r.now(), Value: []byte(entityOf(s.Format, id, v.Entity))}, nil
	}
	return cache.Entry{Valid: false, FetchedAt: r.now(), Value: []byte(ReasonUpstream)}, nil
}
