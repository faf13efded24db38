package sidecar

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// Error codes of the local API (docs/api.md). Each maps to one HTTP status.
const (
	codeBadRequest        = "BAD_REQUEST"
	codeUnsupportedEntity = "UNSUPPORTED_ENTITY"
	codeInvalidMetadata   = "INVALID_METADATA"
	codePayloadTooLarge   = "PAYLOAD_TOO_LARGE"
	codeUnauthorized      = "UNAUTHORIZED"
	codeRateLimited       = "RATE_LIMITED"
	codeCircuitOpen       = "CIRCUIT_OPEN"
	codeUnavailable       = "UPSTREAM_UNAVAILABLE"
	codeFallback          = "UPSTREAM_FALLBACK"
	codeBadResponse       = "UPSTREAM_BAD_RESPONSE"
	codeTimeout           = "UPSTREAM_TIMEOUT"
	codeShuttingDown      = "SHUTTING_DOWN"
	codeNotFound          = "NOT_FOUND"
	codeMethodNotAllowed  = "METHOD_NOT_ALLOWED"
	codeInternal          = "INTERNAL"
	codeHeadersTooLarge   = "HEADERS_TOO_LARGE"
	codeRequestTimeout    = "REQUEST_TIMEOUT"
	codeForbidden         = "FORBIDDEN"
	codeUnsupportedMedia  = "UNSUPPORTED_MEDIA_TYPE"
)

var codeStatus = map[string]int{
	codeBadRequest:        400,
	codeUnsupportedEntity: 400,
	codeInvalidMetadata:   400,
	codePayloadTooLarge:   413,
	codeUnauthorized:      401,
	codeRateLimited:       429,
	codeCircuitOpen:       503,
	codeUnavailable:       503,
	codeFallback:          503,
	codeBadResponse:       502,
	codeTimeout:           504,
	codeShuttingDown:      503,
	codeNotFound:          404,
	codeMethodNotAllowed:  405,
	codeInternal:          500,
	codeHeadersTooLarge:   431,
	codeRequestTimeout:    408,
	codeForbidden:         403,
	codeUnsupportedMedia:  415,
}

// apiError is an error answer: the JSON body's code and message, and when a
// retry makes sense, how long to wait.
type apiError struct {
	code       string
	message    string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newAPIError(code, message string) *apiError { return &apiError{code: code, message: message} }

// fromUpstream maps an upstream failure to the local API's error: the one
// place where upstream error kinds become HTTP statuses. The message is
// fixed per kind (with upstream's HTTP status, if any): upstream's own text
// never reaches the caller, since it may echo what it was sent. It logs
// nothing: err is logged once, where upstream was called
// (logUpstreamFailure, or the mint's audit line).
func fromUpstream(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	e := &apiError{code: codeUnavailable, message: "the ChittyID service is unavailable"}
	var ce *upstream.CallError
	errors.As(err, &ce)
	switch {
	case errors.Is(err, upstream.ErrCircuitOpen):
		e.code = codeCircuitOpen
		if ce != nil {
			e.message = ce.Detail // the sidecar's own words: the JS layer's, which apps may match on
		}
	case errors.Is(err, upstream.ErrUnauthorized):
		e.code, e.message = codeUnauthorized, "the ChittyID service refused the token"
		if ce != nil && ce.Status == 0 {
			e.message = "no upstream token is configured and the request has no Authorization header"
		}
	case errors.Is(err, upstream.ErrRateLimited):
		e.code, e.message = codeRateLimited, "the ChittyID service is rate limiting requests"
	case errors.Is(err, upstream.ErrFallback):
		e.code, e.message = codeFallback, "the ChittyID service answered with a fallback placeholder instead of an ID: its minting backend failed"
	case errors.Is(err, upstream.ErrBadResponse):
		e.code, e.message = codeBadResponse, "the ChittyID service's answer could not be used (not JSON, a missing field, or an ID in the wrong format); the sidecar's log has the detail"
	case errors.Is(err, upstream.ErrTimeout):
		e.code, e.message = codeTimeout, "the ChittyID service did not answer in time"
	case errors.Is(err, upstream.ErrRejected):
		e.code, e.message = codeBadRequest, "the ChittyID service rejected the request"
	}
	if ce != nil && ce.Status >= 400 && e.code != codeCircuitOpen { // not a fallback's 200
		e.message += " (HTTP " + strconv.Itoa(ce.Status) + ")"
	}
	if d, ok := upstream.RetryAfterOf(err); ok {
		e.retryAfter = d
	} else if e.code == codeUnavailable || e.code == codeFallback {
		e.retryAfter = upstream.BriefRetryAfter
	}
	return e
}

// errorBody is the JSON of an error answer. On the worker's routes it
// also says "success": false and carries a timestamp, as the worker's own
// errors do.
type errorBody struct {
	Success    *bool  `json:"success,omitempty"`
	Error      string `json:"error"`
	Message    string `json:"message"`
	RequestID  string `json:"requestId"`
	RetryAfter int    `json:"retryAfter,omitempty"`
	// ChittyIDs carries the IDs a failed batch did mint (null where none).
	ChittyIDs []*string `json:"chittyIds,omitempty"`
	Timestamp string    `json:"timestamp,omitempty"`
}

// writeError answers with e as JSON in the 1.0.0 client's shape, with the
// matching status and Retry-After, and returns the result that says so.
func writeError(ctx *fasthttp.RequestCtx, e *apiError, ids []*string) result {
	return shapeClient.fail(ctx, e, ids)
}

// fail answers with e as JSON in shape sh, with the matching status and
// Retry-After, and returns the result that says so.
func (sh shape) fail(ctx *fasthttp.RequestCtx, e *apiError, ids []*string) result {
	body := errorBody{Error: e.code, Message: e.message, RequestID: string(ctx.Response.Header.Peek(headerRequestID)), ChittyIDs: ids}
	if sh == shapeWorker {
		no := false
		body.Success, body.Timestamp = &no, ctx.Time().UTC().Format(time.RFC3339)
	}
	if e.retryAfter > 0 {
		secs := retrySeconds(e.retryAfter)
		body.RetryAfter = secs
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(secs))
	}
	writeJSON(ctx, codeStatus[e.code], body)
	return result{code: e.code}
}

// retrySeconds is d in whole seconds, rounded up: Retry-After's value.
func retrySeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are encoded here
		status, b = 500, []byte(`{"error":"INTERNAL","message":"encoding the answer failed"}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentJSON)
	ctx.SetBody(b)
}
