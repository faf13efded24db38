package cache

import (
	"context"
	"fmt"
)

// flight is what one coalesced load hands to every caller waiting on it.
type flight struct {
	e  Entry
	st Status
}

// Fetch is what a caller does once its Lookup (or LookupBytes) of id found
// no fresh entry: it returns the verdict from fetch, called once however
// many callers miss id at the same time. It does not look id up again, so
// a request's one lookup is counted once, by Lookup; the flight re-checks
// the cache before fetching (see load).
//
// fetch runs detached from any single caller, with context.WithoutCancel(ctx)
// of the caller that started it, so it must bound itself (its own timeout).
// Each caller waits until the result or its own ctx ends. On success the entry
// is stored and returned with StatusMiss (StatusHit if another flight stored it
// first), to every caller with the Shared mark fetch gave it. When fetch fails
// or ctx ends, an entry younger than p.StaleIfError is returned with
// StatusStale and a nil error; otherwise the error, wrapped, so errors.Is sees
// fetch's error or ctx.Err(). A failure is never stored.
//
// A fetch that fails may return, with its error, a stand-in: an entry it
// found elsewhere (a shared tier) past its TTL. Every caller of the flight
// that has no stale entry of its own in the cache gets the stand-in with
// StatusStale, while p judges it stale; it is never stored. A caller whose
// own ctx ended before the flight did gets no stand-in.
func (c *Cache) Fetch(ctx context.Context, id string, p Policy, fetch func(context.Context) (Entry, error)) (Entry, Status, error) {
	if !validID(id) {
		return Entry{}, StatusMiss, fmt.Errorf("fetching id of %d bytes: %w", len(id), ErrInvalidID)
	}
	if err := ctx.Err(); err != nil {
		return c.fallback(id, p, err, Entry{}) // nobody waits for a fetch: don't start one
	}
	// led is written by the flight goroutine before it sends on ch, so it is
	// read safely after receiving; a caller that gives up never reads it.
	led := false
	ch := c.group.DoChan(id, func() (any, error) {
		led = true
		return c.load(context.WithoutCancel(ctx), id, p, fetch)
	})
	select {
	case r := <-ch:
		if !led {
			c.coalesced.Add(1)
		}
		f, _ := r.Val.(flight) // none after Close
		if r.Err != nil {
			return c.fallback(id, p, r.Err, f.e)
		}
		return f.e, f.st, nil
	case <-ctx.Done():
		return c.fallback(id, p, ctx.Err(), Entry{})
	}
}

// load runs in the flight goroutine. The cache is re-checked first: this
// caller's Lookup may have missed just before another flight for id stored
// its result and ended, and DoChan would then start a second flight.
//
//	A: Lookup misses
//	B: flight stores the entry, flight ends
//	A: DoChan starts a new flight -> re-check hits, no second fetch
func (c *Cache) load(ctx context.Context, id string, p Policy, fetch func(context.Context) (Entry, error)) (any, error) {
	if !c.beginFlight() {
		return nil, ErrClosed
	}
	defer c.flights.Done()
	if e, st := c.lookup(id, p, c.now()); st == StatusHit {
		return flight{e, StatusHit}, nil
	}
	c.fetches.Add(1)
	e, err := fetch(ctx)
	if err != nil {
		return flight{e: e}, err // e: fetch's stand-in, if it gave one
	}
	e, err = c.store(id, e)
	if err != nil {
		// The verdict is still good; only caching it failed.
		c.storeErrors.Add(1)
	}
	return flight{e, StatusMiss}, nil
}

// beginFlight registers a flight for Close to wait on; false after Close.
func (c *Cache) beginFlight() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.flights.Add(1)
	return true
}

// fallback answers a caller whose fetch failed or whose ctx ended: with an
// entry stored meanwhile, a stale entry, the fetch's stale stand-in (zero:
// none), or cause.
func (c *Cache) fallback(id string, p Policy, cause error, standIn Entry) (Entry, Status, error) {
	now := c.now()
	e, st := c.lookup(id, p, now)
	switch st {
	case StatusHit:
		return e, st, nil
	case StatusStale:
		c.staleServed.Add(1)
		return e, st, nil
	}
	if !standIn.FetchedAt.IsZero() && p.Judge(standIn, now) == StatusStale {
		c.staleServed.Add(1)
		return standIn, StatusStale, nil
	}
	return Entry{}, StatusMiss, fmt.Errorf("fetching %q: %w", id, cause)
}
