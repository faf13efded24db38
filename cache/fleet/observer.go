package fleet

import (
	"strconv"
	"sync/atomic"
	"time"
)

// State is the tier's state, for /health.
type State string

const (
	// StateOff means the tier is not configured (no fleet.redis.addrs).
	StateOff State = "off"
	// StateConnecting means the tier has not reached Redis since it was
	// built; calls are skipped until it does.
	StateConnecting State = "connecting"
	// StateUp means calls go to Redis.
	StateUp State = "up"
	// StateSkipped means Redis failed several calls in a row: calls return
	// ErrSkipped at once, without touching Redis, until a probe succeeds.
	StateSkipped State = "skipped"
	// StateClosed means Close was called.
	StateClosed State = "closed"
)

// Observer is told about the tier's work, for metrics. It must be fast and
// safe for concurrent use; the sidecar implements it with Prometheus
// collectors.
type Observer interface {
	// Call reports one operation: op is "get", "put", "lock", "commit",
	// "release", "mint" or "probe". outcome is, for "get": "hit", "miss"
	// or "stale" (found past its TTL, by Fetch); for "lock": "acquired",
	// "held" (by another sidecar), "failed" (the holder's fetch failed)
	// or "verdict" (a verdict arrived); for "mint": "allowed" or
	// "refused"; for the others "ok"; for any op "error", "timeout" or
	// "skipped" (not sent: the tier is skipped or connecting; d is 0). d
	// is the time the call to Redis took.
	Call(op, outcome string, d time.Duration)
	// LockWait reports a Fetch that waited for another sidecar's fetch of
	// the same ID, how long and how the wait ended: "verdict" (the other
	// sidecar's verdict arrived), "takeover" (its lock expired and this
	// sidecar fetched), "failed" (its fetch failed), "gave_up" (the
	// caller's ctx ended) or "fallback" (Redis failed; fetched here).
	LockWait(outcome string, d time.Duration)
	// StateChanged reports a change of the tier's state.
	StateChanged(s State)
}

// noObserver is the Observer when none is given.
type noObserver struct{}

func (noObserver) Call(string, string, time.Duration) {}
func (noObserver) LockWait(string, time.Duration)     {}
func (noObserver) StateChanged(State)                 {}

// Stats is a snapshot of the tier's counters since it was built.
type Stats struct {
	// Hits counts lookups that found a verdict (Get: any; Fetch: a fresh
	// one), Misses those that found none (Fetch: or only a stale one).
	Hits, Misses int64
	// Errors counts calls to Redis that failed or timed out.
	Errors int64
	// Skipped counts calls not sent because the tier was skipped.
	Skipped int64
	// Fetches counts fetch functions Fetch called, here.
	Fetches int64
	// LockWaits counts Fetches that waited for another sidecar's fetch,
	// Takeovers those of them that took the lock over when it expired.
	LockWaits, Takeovers int64
	// PeerFailures counts Fetches that ended because another sidecar's
	// fetch of the ID had failed within fleet.lockTtl.
	PeerFailures int64
	// MintAllowed and MintRefused count AllowMint answers.
	MintAllowed, MintRefused int64
}

// counters are the atomics behind Stats.
type counters struct {
	hits, misses, errors, skipped, fetches atomic.Int64
	lockWaits, takeovers, peerFailures     atomic.Int64
	mintAllowed, mintRefused               atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Errors: c.errors.Load(),
		Skipped: c.skipped.Load(), Fetches: c.fetches.Load(),
		LockWaits: c.lockWaits.Load(), Takeovers: c.takeovers.Load(),
		PeerFailures: c.peerFailures.Load(),
		MintAllowed:  c.mintAllowed.Load(), MintRefused: c.mintRefused.Load(),
	}
}

// Source says where a verdict Fetch returned came from.
type Source uint8

const (
	// SourceNone means no verdict: the error says why.
	SourceNone Source = iota
	// SourceFleet means a fresh verdict from the fleet tier: there
	// already, or written by another sidecar whose fetch this call waited
	// for. The sidecar answers it X-Cache: HIT, X-Cache-Tier: fleet.
	SourceFleet
	// SourceFetched means this call ran fetch and returns its verdict.
	SourceFetched
	// SourceStale comes with an error: no fresh verdict could be had, and
	// the verdict returned is the fleet tier's entry past its TTL, for the
	// caller to serve stale if it is younger than StaleIfError.
	SourceStale
)

// String returns "none", "fleet", "fetched" or "stale".
func (s Source) String() string {
	switch s {
	case SourceNone:
		return "none"
	case SourceFleet:
		return "fleet"
	case SourceFetched:
		return "fetched"
	case SourceStale:
		return "stale"
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}
