package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/valyala/fasthttp"
)

// attemptResult is one attempt, classified.
type attemptResult struct {
	res   response
	err   *CallError // nil on success
	count outcome
	// safe means upstream certainly did not process the request (no
	// connection, or it said 429/503), so another attempt is always allowed.
	safe bool
	// unknown means upstream may have processed the request (a timeout or a
	// broken connection after sending, a 5xx): retry only idempotent calls.
	unknown bool
	// lost means the request may have reached upstream and its answer was
	// lost or unusable (unknown, and a timeout past the caller's deadline):
	// the call's error says so (CallError.MayHaveProcessed).
	lost bool
}

// call sends r through the breaker until it succeeds, fails for good, runs
// out of attempts, or ctx ends. accept vets a 2xx answer. idempotent says a
// repeat is harmless even when an earlier attempt may have been processed.
//
// A rate-limited answer (429, or the worker's fallback 0007) is retried
// only after a Retry-After that upstream named and that fits ctx's
// deadline, and only once per call: a backend that asks for less load must
// not get more from the sidecar. Without one, the caller gets the error at
// once, with BriefRetryAfter.
func (c *Client) call(ctx context.Context, r *request, idempotent bool, accept func(response) *CallError) (response, error) {
	reason := ""         // why the attempt is a retry: the previous one's failure
	rateRetried := false // a retry after a rate-limited answer was made
	lost := false        // an attempt's answer was lost
	fail := func(e *CallError) (response, error) {
		e.MayHaveProcessed = e.MayHaveProcessed || lost
		return response{}, e
	}
	for attempt := 1; ; attempt++ {
		actx, span := ctx, tracing.Span{}
		if tracing.Traced(ctx) { // the span's name is built only then
			actx, span = tracing.Start(ctx, c.spanName(r), tracing.KindClient)
			c.attemptAttributes(span, r, attempt, reason)
		}
		var ar attemptResult
		err := c.breaker.do(actx, func() (outcome, error) {
			began := time.Now()
			ar = c.attempt(actx, r, accept)
			if ar.err == nil { // a nil *CallError is not a nil error: test it here
				c.observe(span, r.op, "ok", time.Since(began))
				return countSuccess, nil
			}
			c.observe(span, r.op, Outcome(ar.err), time.Since(began))
			return ar.count, ar.err
		})
		if err == nil {
			endAttempt(span, ar.res.status, nil)
			ar.res.attempts = attempt
			return ar.res, nil
		}
		if errors.Is(err, ErrCircuitOpen) {
			endAttempt(span, 0, err)
			wait := c.breaker.RetryIn() // whole seconds: the message and Retry-After agree
			e := callErr(r.op, ErrCircuitOpen, 0, "ChittyID service circuit breaker is OPEN - service unavailable. Will retry in %ds", int(wait/time.Second))
			e.RetryAfter = wait
			e.Attempts = attempt - 1
			return fail(e)
		}
		ce := ar.err
		endAttempt(span, ar.res.status, ce)
		ce.Attempts = attempt
		lost = lost || ar.lost
		if attempt >= c.cfg.Retry.MaxAttempts || !(ar.safe || (ar.unknown && idempotent)) {
			return fail(ce)
		}
		wait := ar.res.retryAfter
		if errors.Is(ce, ErrRateLimited) {
			if wait == 0 || rateRetried {
				return fail(ce) // no wait named, or the one retry made
			}
			rateRetried = true
		}
		if wait == 0 {
			wait = c.backoff(attempt)
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			if ce.RetryAfter == 0 {
				ce.RetryAfter = ar.res.retryAfter
			}
			return fail(ce) // the next try would not fit the caller's deadline
		}
		c.obs.Retry(r.op)
		reason = retryReason(ce)
		if !c.wait(ctx, wait, reason, ar.res.retryAfter != 0) {
			e := callErr(r.op, ErrTimeout, ce.Status, "deadline ran out while waiting to retry")
			e.Attempts, e.Cause = attempt, ctx.Err()
			return fail(e)
		}
	}
}

// wait sleeps d before a retry (a span "backoff" when the call is traced);
// it reports whether the wait was complete.
func (c *Client) wait(ctx context.Context, d time.Duration, reason string, retryAfter bool) bool {
	_, span := tracing.Start(ctx, "backoff", tracing.KindInternal)
	if span.Recording() {
		span.SetInt("chittyid.backoff.ms", int(d.Milliseconds()))
		span.SetString("chittyid.retry.reason", reason)
		span.SetBool("chittyid.backoff.retry_after", retryAfter) // upstream named the wait
	}
	ok := sleep(ctx, d)
	if !ok {
		span.Fail("timeout")
	}
	span.End()
	return ok
}

// retryReason names the failure a retry follows: the status upstream
// answered with, else the kind of failure (Outcome).
func retryReason(e *CallError) string {
	if e.Status != 0 {
		return "status " + strconv.Itoa(e.Status)
	}
	return Outcome(e)
}

// observe reports an attempt to the Observer, with the trace's ID when
// its span is sampled and the Observer keeps exemplars.
func (c *Client) observe(span tracing.Span, op, outcome string, d time.Duration) {
	if to, ok := c.obs.(TraceObserver); ok && span.Recording() {
		if id := span.TraceID(); id != "" {
			to.AttemptTraced(op, outcome, d, id)
			return
		}
	}
	c.obs.Attempt(op, outcome, d)
}

// attemptAttributes describes an attempt on its span, as OpenTelemetry's
// HTTP client conventions name things, plus the attempt's number, why it
// is a retry and the breaker's state. Never a header: the token stays out.
func (c *Client) attemptAttributes(span tracing.Span, r *request, attempt int, reason string) {
	if !span.Recording() {
		return
	}
	attrs := append(make([]tracing.Attr, 0, 11),
		tracing.String("http.request.method", r.method),
		tracing.String("url.full", c.origin+r.path),
		tracing.String("url.template", c.base+r.template),
		tracing.String("server.address", c.hostname),
		tracing.Int("server.port", c.port),
		tracing.String("chittyid.operation", r.op),
		tracing.Int("chittyid.attempt", attempt))
	if attempt > 1 {
		attrs = append(attrs, tracing.Int("http.request.resend_count", attempt-1), tracing.String("chittyid.retry.reason", reason))
	}
	if r.op != "health" {
		attrs = append(attrs, tracing.String("chittyid.breaker.state", string(c.breaker.State())))
	}
	span.SetAttrs(attrs...)
}

// endAttempt records an attempt's outcome on its span and ends it.
func endAttempt(span tracing.Span, status int, err error) {
	if span.Recording() {
		if status != 0 {
			span.SetInt("http.response.status_code", status)
		}
		if err != nil {
			span.Fail(Outcome(err))
		}
	}
	span.End()
}

// attempt sends r once and classifies the outcome.
func (c *Client) attempt(ctx context.Context, r *request, accept func(response) *CallError) attemptResult {
	deadline := time.Now().Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := ctx.Err(); err != nil {
		e := callErr(r.op, ErrTimeout, 0, "deadline ran out before sending")
		e.Cause = err
		return attemptResult{err: e, count: countIgnore}
	}
	res, err := c.send(r, deadline, traceHeadersFor(ctx, r.info))
	if err != nil {
		if errors.Is(err, fasthttp.ErrConnectionClosed) {
			// Upstream closed a pooled connection: after a restart or an
			// outage every idle one is as dead, so drop them all now.
			c.hc.CloseIdleConnections()
		}
		return classifyTransport(ctx, r.op, err)
	}
	ar := attemptResult{res: res}
	switch s := res.status; {
	case s >= 200 && s < 300:
		if ce := accept(res); ce != nil {
			// A rate-limited fallback minted nothing: another attempt is safe.
			ar.err, ar.safe = ce, errors.Is(ce, ErrRateLimited) && !ce.minted
		}
	case s == 401 || s == 403:
		ar.err = callErr(r.op, ErrUnauthorized, s, "upstream refused the token")
	case s == 429:
		ar.err, ar.safe = callErr(r.op, ErrRateLimited, s, "upstream is rate limiting"), true
		ar.err.RetryAfter = res.retryAfter
		if ar.err.RetryAfter == 0 {
			ar.err.RetryAfter = BriefRetryAfter
		}
	case s == 503:
		ar.err, ar.safe = callErr(r.op, ErrUnavailable, s, "upstream is unavailable"), true
		ar.err.RetryAfter = res.retryAfter
	case s >= 500:
		ar.err, ar.unknown, ar.lost = callErr(r.op, ErrUnavailable, s, "upstream failed"), true, true
	default:
		ar.err = callErr(r.op, ErrRejected, s, "%s", upstreamMessage(res.body, r.auth))
	}
	ar.count = answerCount(ar.err)
	return ar
}

// answerCount is how the breaker counts an attempt that upstream answered,
// by the kind of its failure e, whatever the dialect said it with (a status
// or a worker's fallback code): a refusal (rate limited, the token
// refused, the request rejected) comes from an upstream that is up and
// answering, and one that asks for less load when it rate limits, so it is
// not a failure; any other (a 5xx, a fallback, an unusable answer) is.
func answerCount(e *CallError) outcome {
	switch {
	case e == nil:
		return countSuccess
	case errors.Is(e, ErrRateLimited), errors.Is(e, ErrUnauthorized), errors.Is(e, ErrRejected):
		return countIgnore
	}
	return countFailure
}

func classifyTransport(ctx context.Context, op string, err error) attemptResult {
	switch {
	case isDialError(err) || errors.Is(err, syscall.ECONNREFUSED):
		e := callErr(op, ErrUnavailable, 0, "cannot connect")
		e.Cause = err
		return attemptResult{err: e, count: countFailure, safe: true}
	case errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded):
		e := callErr(op, ErrTimeout, 0, "no answer in time")
		e.Cause = err
		// Past the caller's own deadline there is no point in retrying.
		return attemptResult{err: e, count: countFailure, unknown: ctx.Err() == nil && !pastDeadline(ctx), lost: true}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e := callErr(op, ErrBadResponse, 0, "response body too large")
		e.Cause = err
		return attemptResult{err: e, count: countFailure, lost: true}
	}
	e := callErr(op, ErrUnavailable, 0, "connection failed")
	e.Cause = err
	return attemptResult{err: e, count: countFailure, unknown: true, lost: true}
}

func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// backoff is full jitter: a uniform wait in [0, min(maxDelay, baseDelay·2^(n-1))].
func (c *Client) backoff(n int) time.Duration {
	ceil := c.cfg.Retry.BaseDelay << min(n-1, 30)
	if ceil <= 0 || ceil > c.cfg.Retry.MaxDelay {
		ceil = c.cfg.Retry.MaxDelay
	}
	return rand.N(ceil + 1)
}

// sleep waits d or until ctx ends; it reports whether the wait was complete.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
