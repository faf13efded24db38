package sidecar

import (
	"bytes"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	// defaultCaller is the caller of requests without a usable X-Client-ID.
	defaultCaller = "default"
	// maxCallerIDLen caps X-Client-ID, in bytes; a longer one is not used.
	maxCallerIDLen = 128
)

// keyClientID is X-Client-ID in fasthttp's canonical form, read with
// PeekCanonical.
var keyClientID = []byte("X-Client-Id")

// defaultCallerBytes is defaultCaller for callerOf; never written to.
var defaultCallerBytes = []byte(defaultCaller)

// callerOf returns the caller an X-Client-ID value h names: h with
// surrounding spaces and tabs trimmed, if it is 1 to 128 bytes of visible
// ASCII (0x21–0x7E); otherwise the shared "default" caller. The bytes are
// h's own (or shared): copy them to keep them.
func callerOf(h []byte) []byte {
	c := bytes.Trim(h, " \t")
	if len(c) == 0 || len(c) > maxCallerIDLen || !printable(c) {
		return defaultCallerBytes
	}
	return c
}

// callerID returns the caller for rate limiting from X-Client-ID
// (callerOf); logs name callers the same way. The string is a copy, safe
// to keep.
func callerID(ctx *fasthttp.RequestCtx) string {
	return string(callerOf(ctx.Request.Header.PeekCanonical(keyClientID)))
}

// rateLimited answers 429 RATE_LIMITED with Retry-After: d rounded up to
// whole seconds, at least 1. what names the limit, e.g. "local mint".
func rateLimited(ctx *fasthttp.RequestCtx, sh shape, what string, d time.Duration) result {
	d = max(d, time.Second)
	secs := strconv.Itoa(retrySeconds(d)) // as fail writes Retry-After
	res := sh.fail(ctx, &apiError{
		code:       codeRateLimited,
		message:    what + " rate limit exceeded; retry in " + secs + "s",
		retryAfter: d,
	}, nil)
	res.limited = true
	return res
}
