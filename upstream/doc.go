// Package upstream is the sidecar's client of the ChittyID service: it
// mints, validates and polls health in either dialect the service speaks
// (client-v1 under /v1, or the worker's routes), holds the token, and
// keeps every failure a kind callers can classify (CallError and the Err
// values, with errors.Is).
//
// Every mint and validate goes through the circuit breaker (Breaker, the
// only user of go-circuitbreaker), which opens after consecutive failures
// (a refusal, such as a 429, is none) and fails calls fast while it is
// open, and through the retry policy: a request upstream certainly did not
// process may be sent again, one it may have processed only when it is
// idempotent, each mint attempt with the same Idempotency-Key, each retry
// after a full-jitter backoff or the Retry-After upstream named, all
// within the caller's deadline. Health polls bypass the breaker. At most
// upstream.maxInFlight mints run at once. A fallback
// (placeholder) ID is never handed out as a real one; a mint whose caller
// gave up is still awaited (LateAnswers) so that no minted ID goes
// unrecorded. Upstream's own text reaches errors only cut short, with the
// credential sent redacted.
//
// Connections are fasthttp's client (the only place it is used), over TLS
// with the trust settings of upstream.tls (TLS sessions kept across client
// rebuilds, Sessions) and, when configured or named by the environment,
// through an egress proxy. Config is the upstream section of the config
// file; a Client is rebuilt when it changes. upstream/chittyid is the ID
// grammar; upstream/sim a simulator of the service for tests and dev.
package upstream
