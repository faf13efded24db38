package upstream

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// The worker's fallback codes: when its own mint backend fails it answers
// HTTP 200 with a placeholder ID 03-0-ERR-<code>-… and "errorCode". See
// docs/upstream.md, "Upstream dialects".
const (
	fallbackUnavailable    = 1  // 0001: the mint backend is unreachable
	fallbackTimeout        = 2  // 0002: it did not answer in time
	fallbackRejected       = 3  // 0003 MINT_REJECTED: it answered 401 or 5xx
	fallbackRateLimited    = 7  // 0007 RATE_LIMITED: it answered 429
	fallbackInvalidRequest = 8  // 0008 INVALID_REQUEST: it answered 400
	fallbackInternal       = 99 // 0099: the worker's own error
)

// BriefRetryAfter is the Retry-After suggested after a brief failure that
// named none: a rate-limited answer (a 429 without Retry-After, or the
// fallback 0007, whose backend's Retry-After the worker drops), which is
// not retried, and the sidecar's answers for an unavailable upstream.
const BriefRetryAfter = time.Second

// errorCode is the worker's "errorCode" field as sent: a string of digits
// ("0007"), a name ("RATE_LIMITED"), or a number (7). Anything else reads as
// no code, leaving the placeholder's own sequence to tell.
type errorCode string

// UnmarshalJSON reads a string or a number; other JSON values give "".
func (c *errorCode) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*c = errorCode(s)
		return nil
	}
	var n json.Number
	if json.Unmarshal(b, &n) == nil {
		*c = errorCode(n.String())
		return nil
	}
	*c = ""
	return nil
}

// fallbackCode derives a fallback's code from the answer's errorCode field
// and, when that says nothing known, the placeholder's sequence (the SSSS of
// 03-0-ERR-SSSS-…). 0 means unknown.
func fallbackCode(field errorCode, id string) int {
	if n, ok := codeOfField(string(field)); ok {
		return n
	}
	if n, ok := chittyid.FallbackCode(id); ok {
		return n
	}
	return 0
}

// codeOfField reads an errorCode field: up to four digits, or one of the
// names the worker gives its codes.
func codeOfField(s string) (int, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n <= fallbackInternal && len(s) <= 4 {
		return n, true
	}
	switch strings.ReplaceAll(s, "-", "_") {
	case "UNAVAILABLE", "SERVICE_UNAVAILABLE", "MINT_UNAVAILABLE":
		return fallbackUnavailable, true
	case "TIMEOUT", "MINT_TIMEOUT":
		return fallbackTimeout, true
	case "REJECTED", "MINT_REJECTED":
		return fallbackRejected, true
	case "RATE_LIMITED", "RATE_LIMIT", "RATE_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS":
		return fallbackRateLimited, true
	case "INVALID_REQUEST", "BAD_REQUEST":
		return fallbackInvalidRequest, true
	case "INTERNAL", "INTERNAL_ERROR":
		return fallbackInternal, true
	}
	return 0, false
}

// fallbackErr is the failure a fallback answer stands for, by its code:
// rate limited (0007) is ErrRateLimited with a Retry-After, invalid request
// (0008) is ErrRejected, the others ErrFallback. The placeholder goes into
// Placeholders, for the audit log, and never into the message.
func fallbackErr(op string, code int, id string) *CallError {
	var e *CallError
	switch code {
	case fallbackRateLimited:
		e = callErr(op, ErrRateLimited, 200, "upstream is rate limiting (fallback code 0007)")
		e.RetryAfter = BriefRetryAfter
	case fallbackInvalidRequest:
		e = callErr(op, ErrRejected, 200, "upstream refused the request as invalid (fallback code 0008)")
	case 0:
		e = callErr(op, ErrFallback, 200, "upstream answered with a placeholder instead of an ID")
	default:
		e = callErr(op, ErrFallback, 200, "upstream answered with a placeholder instead of an ID (fallback code %04d)", code)
	}
	if id != "" {
		e.Placeholders = []string{clip(id)}
	}
	return e
}
