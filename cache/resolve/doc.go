// Package resolve answers a validate from the sidecar's tiers: the
// process's own cache, then the fleet tier (when fleet.redis is set), then
// upstream, and stores the IDs the sidecar mints in both tiers.
//
// A request looks its ID up once in the local cache (Lookup): a fresh
// entry is the answer, without allocation. Anything else goes to Resolve,
// which asks upstream through one flight per ID however many callers miss
// it at once (cache.Cache.Fetch): the flight asks the fleet tier first,
// and only when no sidecar of the fleet holds a fresh verdict does one
// sidecar of the whole fleet ask upstream (fleet.Tier.Fetch, a Redis lock
// per ID) while the others wait for its verdict. While upstream fails, a
// verdict past its TTL but younger than validate.staleIfError is served
// stale, the local cache's before the fleet tier's; while upstream is
// known down (state FAILED) nothing is sent upstream at all.
//
// An Answer says which tier answered and whether it is stale; errors are
// only errors. Entries that come from outside the process (the fleet
// tier's verdicts, a snapshot file's entries) are re-checked by Admit
// before they are served.
//
// The package speaks no HTTP and reads no config file: a request passes
// the Settings of the config snapshot it read and an Ask that carries its
// own details upstream, and the sidecar's handlers turn an Answer into
// X-Cache, X-Cache-Tier and Age.
package resolve
