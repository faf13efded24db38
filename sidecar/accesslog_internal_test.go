package sidecar

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestAppendAccessJSONIsValidJSON(t *testing.T) {
	t.Parallel()
	rec := accessRecord{
		time: time.Date(2026, 11, 25, 12, 0, 0, 5, time.UTC), requestID: []byte("id-\"1\"\\"), method: []byte("GET"),
		route: "validate", path: []byte("/v1/validate/\x00\xff\u00e9\n"), status: 200, duration: 1500 * time.Nanosecond,
		cache: "HIT", tier: []byte("fleet"), reason: "STALE_SERVED", caller: []byte("app<1>"),
	}
	line := appendAccessJSON(nil, &rec)
	if line[len(line)-1] != '\n' {
		t.Fatalf("line does not end in a newline: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	for k, want := range map[string]any{
		"time": "2026-11-25T12:00:00.000000005Z", "level": "INFO", "msg": "request", "type": "access",
		"requestId": `id-"1"\`, "method": "GET", "route": "validate", "path": "/v1/validate/\x00\ufffd\u00e9\n",
		"status": float64(200), "durationMs": 0.001, "cache": "HIT", "tier": "fleet", "reason": "STALE_SERVED", "caller": "app<1>",
	} {
		if m[k] != want {
			t.Errorf("%s = %#v, want %#v", k, m[k], want)
		}
	}
}

func BenchmarkAppendAccessJSON(b *testing.B) {
	rec := accessRecord{time: time.Now(), requestID: []byte("0a1b2c3d-42"), method: []byte("GET"), route: "validate",
		path: []byte("/v1/validate/CT-A-CHI-1234-I-24-A-0"), status: 200, duration: 12 * time.Microsecond, cache: "HIT"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAccessJSON(buf[:0], &rec)
	}
}

// TestAccessRecordAllocatesNothing: the access record of a request is made
// of the request's own bytes, X-Client-ID among them: no copy, so a cached
// validate's batched access line allocates nothing.
func TestAccessRecordAllocatesNothing(t *testing.T) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI("/v1/validate/" + unitID)
	ctx.Request.Header.Set("X-Client-ID", " billing-app ")
	ctx.Response.Header.Set(headerRequestID, "0a1b2c3d-1")
	ctx.Response.Header.SetCanonical(keyXCacheTier, tierLocal)
	var rec accessRecord
	if n := testing.AllocsPerRun(100, func() { rec = newAccessRecord(&ctx, result{route: routeValidate, xc: xcHit}, time.Microsecond) }); n != 0 {
		t.Errorf("newAccessRecord: %v allocations, want 0", n)
	}
	if string(rec.caller) != "billing-app" || string(rec.requestID) != "0a1b2c3d-1" || rec.cache != "HIT" || string(rec.tier) != "local" {
		t.Errorf("record %+v: want caller billing-app, requestId 0a1b2c3d-1, cache HIT, tier local", rec)
	}
}
