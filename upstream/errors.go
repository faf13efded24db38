package upstream

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

// Kinds of upstream failure. A CallError wraps exactly one of them, so
// callers classify with errors.Is and never look at strings.
var (
	// ErrUnavailable means upstream could not be reached, or answered 5xx,
	// after every allowed attempt.
	ErrUnavailable = errors.New("upstream: unavailable")
	// ErrCircuitOpen means the breaker is open: no request was sent.
	ErrCircuitOpen = errors.New("upstream: circuit breaker is open")
	// ErrFallback means upstream answered with a fallback (placeholder) ID
	// instead of a real one.
	ErrFallback = errors.New("upstream: answered with a fallback id")
	// ErrBadResponse means upstream's answer could not be used: not JSON, a
	// missing field, or a minted ID that fails the configured format.
	ErrBadResponse = errors.New("upstream: bad response")
	// ErrTimeout means the request's deadline ran out before upstream answered.
	ErrTimeout = errors.New("upstream: timed out")
	// ErrUnauthorized means there was no token to send, or upstream answered
	// 401 or 403.
	ErrUnauthorized = errors.New("upstream: unauthorized")
	// ErrRateLimited means upstream answered 429 (or the worker's fallback
	// 0007) and no retry was allowed: it named no Retry-After, its
	// Retry-After did not fit the deadline, or the one retry after it was
	// rate limited too.
	ErrRateLimited = errors.New("upstream: rate limited")
	// ErrRejected means upstream refused the request with another 4xx.
	ErrRejected = errors.New("upstream: request rejected")
)

// CallError describes a failed upstream call. Unwrap yields the kind (one of
// the Err values above); Cause is what went wrong underneath, if anything.
type CallError struct {
	Kind       error         // ErrUnavailable, ErrCircuitOpen, …
	Op         string        // "mint", "mint batch", "validate", "health"
	Status     int           // upstream's HTTP status, 0 if none
	RetryAfter time.Duration // when the caller may retry, 0 if unknown
	Attempts   int           // upstream attempts made
	Detail     string        // a short explanation safe to show a caller
	Cause      error         // the transport error, if any
	// Refused lists IDs upstream answered with that were not handed out
	// (wrong format), so they can be logged rather than silently lost.
	Refused []string
	// Placeholders lists the fallback (placeholder) IDs upstream answered
	// with, for the audit log only: they are never shown to a caller, and
	// Detail never quotes them.
	Placeholders []string
	// MayHaveProcessed says an attempt may have reached upstream and its
	// answer was lost: a timeout, a connection broken or an answer cut
	// short once the request was on its way, or a 5xx other than 503.
	// Upstream may have done what was asked: for a mint, minted IDs that
	// nobody received, which the idempotency key reconciles.
	MayHaveProcessed bool
	// minted says the answer also carried IDs that were handed out (a
	// batch), so repeating the request is never safe.
	minted bool
}

func (e *CallError) Error() string {
	s := e.Op + ": " + e.Kind.Error()
	if e.Status != 0 {
		s += " (HTTP " + strconv.Itoa(e.Status) + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the kind and the cause, so errors.Is works with both.
func (e *CallError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

// RetryAfterOf returns how long the caller should wait before retrying err,
// if upstream or the breaker said so.
func RetryAfterOf(err error) (time.Duration, bool) {
	var ce *CallError
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		return ce.RetryAfter, true
	}
	return 0, false
}

// AttemptsOf returns the number of upstream attempts behind err.
func AttemptsOf(err error) int {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Attempts
	}
	return 0
}

func callErr(op string, kind error, status int, format string, a ...any) *CallError {
	return &CallError{Kind: kind, Op: op, Status: status, Detail: fmt.Sprintf(format, a...)}
}

// MayHaveProcessed reports whether upstream may have processed the call
// behind err although its answer was lost (CallError.MayHaveProcessed).
func MayHaveProcessed(err error) bool {
	var ce *CallError
	return errors.As(err, &ce) && ce.MayHaveProcessed
}

// PlaceholdersOf returns the fallback (placeholder) IDs behind err, for the
// audit log; they must never reach a caller.
func PlaceholdersOf(err error) []string {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Placeholders
	}
	return nil
}

// RefusedIDs returns the IDs upstream minted that err refused to hand out.
func RefusedIDs(err error) []string {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Refused
	}
	return nil
}

// What upstream says may carry the credential it was sent: a hostile or
// broken upstream can echo the Authorization header into any field. So
// every text from upstream that leaves this package, in an error (scrub)
// or a value, goes through one redaction (field.Redact) before it is cut
// short, and a value relayed to the caller (a minted ID, a version) that
// carries it is refused or dropped (exposes).

// exposes reports whether s, a value relayed to the caller, carries the
// credential of auth (in any letter case) or is a piece of it.
func exposes(s, auth string) bool {
	cred := field.CredentialOf(auth)
	return cred != "" && (field.IndexFold(s, cred) >= 0 || len(s) >= 4 && field.IndexFold(cred, s) >= 0)
}

// scrub returns err with the credential of auth redacted from every text
// it carries, before it leaves the package: Detail, the refused and
// placeholder IDs, and the cause, which for a malformed answer may quote
// upstream's bytes (the cause is then replaced by its redacted text).
func scrub(err error, auth string) error {
	var ce *CallError
	if !errors.As(err, &ce) || field.CredentialOf(auth) == "" {
		return err
	}
	c := *ce
	c.Detail = field.Redact(c.Detail, auth)
	c.Refused, c.Placeholders = redactAll(c.Refused, auth), redactAll(c.Placeholders, auth)
	c.Cause = field.RedactErr(c.Cause, auth)
	return &c
}

// redactAll redacts each of ids into a new slice (nil for none).
func redactAll(ids []string, auth string) []string {
	if ids == nil {
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = field.Redact(id, auth)
	}
	return out
}
