// Package fleet is the sidecar's second cache tier and its fleet-wide
// limits, shared by every sidecar of a fleet through Redis (or Valkey):
// verdicts one sidecar fetched are hits for the others (Get, Put), at most
// one sidecar in the fleet asks upstream about an ID at a time (Fetch, a
// Redis lock per ID with fleet.lockTtl), and the fleet mint limit is one
// GCRA bucket in Redis (AllowMint).
//
// Redis must never fail or slow a request beyond fleet.timeout: every call
// is bounded by it; after a few failed calls in a row the tier is skipped
// (calls return ErrSkipped at once) while one goroutine probes Redis with
// backoff; a Redis restarted empty is only misses. Fetch falls back to
// calling fetch itself whenever Redis cannot help, and AllowMint fails
// open. docs/fleet.md is the operator's view.
//
// rueidis is wrapped here and nowhere else; none of its types cross the
// API. The package imports no other package of the sidecar.
package fleet
