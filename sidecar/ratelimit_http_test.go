package sidecar

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestCallerID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		set          bool
		want         string
	}{
		{"absent", "", false, "default"},
		{"empty", "", true, "default"},
		{"plain", "billing-app", true, "billing-app"},
		{"trimmed", " \tbilling\t ", true, "billing"},
		{"only spaces", "   ", true, "default"},
		{"128 bytes", strings.Repeat("x", 128), true, strings.Repeat("x", 128)},
		{"129 bytes", strings.Repeat("x", 129), true, "default"},
		{"129 bytes before trimming", " " + strings.Repeat("x", 128), true, strings.Repeat("x", 128)},
		{"inner space", "billing app", true, "default"},
		{"control byte", "billing\x01", true, "default"},
		{"DEL", "billing\x7f", true, "default"},
		{"non-ASCII", "bílling", true, "default"},
		{"punctuation", `a.b/c:d@e{"}~`, true, `a.b/c:d@e{"}~`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ctx fasthttp.RequestCtx
			if tc.set {
				ctx.Request.Header.Set("X-Client-ID", tc.header)
			}
			if got := callerID(&ctx); got != tc.want {
				t.Errorf("callerID(%q) = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
}

func TestRateLimitedAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		d         time.Duration
		wantSecs  int
		wantInMsg string
	}{
		{"whole seconds", 3 * time.Second, 3, "local mint rate limit exceeded; retry in 3s"},
		{"rounded up", 1500 * time.Millisecond, 2, "retry in 2s"},
		{"at least one second", 0, 1, "retry in 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ctx fasthttp.RequestCtx
			ctx.Response.Header.Set(headerRequestID, "req-1")
			rateLimited(&ctx, shapeClient, "local mint", tc.d)
			if got := ctx.Response.StatusCode(); got != fasthttp.StatusTooManyRequests {
				t.Errorf("status = %d, want 429", got)
			}
			if got, want := string(ctx.Response.Header.Peek("Retry-After")), fmt.Sprint(tc.wantSecs); got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
			var body errorBody
			if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil {
				t.Fatalf("body %s: %v", ctx.Response.Body(), err)
			}
			if body.Error != codeRateLimited || body.RetryAfter != tc.wantSecs || body.RequestID != "req-1" || !strings.Contains(body.Message, tc.wantInMsg) {
				t.Errorf("body = %+v, want RATE_LIMITED, retryAfter %d, requestId req-1, message with %q", body, tc.wantSecs, tc.wantInMsg)
			}
		})
	}
}
