// Package fleettest is a fleet tier in a map, for the tests of the
// packages that sit on one (cache/resolve, sidecar): it keeps the
// contract of fleet.Tier's Get, Put, Fetch and AllowMint for one sidecar,
// without Redis, and lets a test set the faults a real tier meets (Redis
// down, the lock held by another sidecar, that sidecar's fetch failed).
// cache/fleet's own tests run real redis-server processes instead.
package fleettest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
)

// ErrRedis is what every call returns while the tier is Down.
var ErrRedis = errors.New("fleettest: redis down")

// Tier is the fleet tier of one sidecar. A test reads and sets its fields
// directly, holding Mu while calls may be running.
type Tier struct {
	Mu sync.Mutex
	// Verdicts is what the tier holds, by ID (Put's and Fetch's verdicts),
	// and Lives the life each was given.
	Verdicts map[string]fleet.Verdict
	Lives    map[string]time.Duration
	// Written is what Put wrote, by ID (minted IDs shared).
	Written map[string]fleet.Verdict
	// Gets, Puts and Fetches count the calls.
	Gets, Puts, Fetches int
	// Down fails every call, as Redis unavailable does: Fetch calls fetch
	// itself and keeps nothing, AllowMint fails open.
	Down bool
	// Held makes another sidecar hold the lock: Fetch waits for its
	// verdict, sent on Held, or for ctx. PeerFailed says that sidecar's
	// fetch failed: Fetch returns fleet.ErrPeerFailed at once.
	Held       chan fleet.Verdict
	PeerFailed bool
	// Gate, if set, holds every Fetch until it is closed.
	Gate chan struct{}
	// MintOK and RetryAfter are AllowMint's answer; Mints the tokens each
	// call asked for.
	MintOK     bool
	RetryAfter time.Duration
	Mints      []int
}

// New is an empty tier, up, whose mint limit allows every mint.
func New() *Tier {
	return &Tier{
		Verdicts: map[string]fleet.Verdict{},
		Lives:    map[string]time.Duration{},
		Written:  map[string]fleet.Verdict{},
		MintOK:   true,
	}
}

// Get is fleet.Tier.Get.
func (f *Tier) Get(_ context.Context, id string) (fleet.Verdict, bool, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Gets++
	if f.Down {
		return fleet.Verdict{}, false, ErrRedis
	}
	v, ok := f.Verdicts[id]
	return v, ok, nil
}

// Put is fleet.Tier.Put.
func (f *Tier) Put(_ context.Context, id string, v fleet.Verdict, life time.Duration) error {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Puts++
	if f.Down {
		return ErrRedis
	}
	f.Verdicts[id], f.Written[id], f.Lives[id] = v, v, life
	return nil
}

// Fetch is fleet.Tier.Fetch: a fresh verdict is SourceFleet; otherwise
// fetch runs (this sidecar holds the lock) and its verdict is kept for
// its life; when no fresh verdict can be had, one past its TTL comes back
// as SourceStale with the error.
func (f *Tier) Fetch(ctx context.Context, id string, p fleet.Policy, fetch func(context.Context) (fleet.Verdict, error)) (fleet.Verdict, fleet.Source, error) {
	f.Mu.Lock()
	gate := f.Gate
	f.Mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.Mu.Lock()
	f.Fetches++
	v, found := f.Verdicts[id]
	down, held, peerFailed := f.Down, f.Held, f.PeerFailed
	f.Mu.Unlock()
	if down {
		got, err := fetch(ctx)
		if err != nil {
			return fleet.Verdict{}, fleet.SourceNone, err
		}
		return got, fleet.SourceFetched, nil
	}
	ttl := p.NegativeTTL
	if v.Valid {
		ttl = p.TTL
	}
	if found && time.Since(v.FetchedAt) < ttl {
		return v, fleet.SourceFleet, nil
	}
	staleOr := func(err error) (fleet.Verdict, fleet.Source, error) {
		if found {
			return v, fleet.SourceStale, err
		}
		return fleet.Verdict{}, fleet.SourceNone, err
	}
	switch {
	case peerFailed:
		return staleOr(fleet.ErrPeerFailed)
	case held != nil:
		select {
		case got := <-held:
			return got, fleet.SourceFleet, nil
		case <-ctx.Done():
			return staleOr(fmt.Errorf("waiting for the fleet's fetch: %w", ctx.Err()))
		}
	}
	got, err := fetch(ctx)
	if err != nil {
		return staleOr(err)
	}
	f.Mu.Lock()
	f.Verdicts[id], f.Lives[id] = got, p.Life(got)
	f.Mu.Unlock()
	return got, fleet.SourceFetched, nil
}

// AllowMint is fleet.Tier.AllowMint: MintOK and RetryAfter, or, while
// Down, an error with the mint allowed (the limit fails open).
func (f *Tier) AllowMint(_ context.Context, n, _, _ int) (bool, time.Duration, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.Down {
		return true, 0, ErrRedis
	}
	f.Mints = append(f.Mints, n)
	return f.MintOK, f.RetryAfter, nil
}
