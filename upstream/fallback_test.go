package upstream

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFallbackCode(t *testing.T) {
	t.Parallel()
	const (
		rateLimitedID = "03-0-ERR-0007-L-2612-0-92"
		invalidID     = "03-0-ERR-0008-A-2612-0-36"
		unavailableID = "03-0-ERR-0001-T-2601-0-35"
	)
	for _, tc := range []struct {
		name  string
		field errorCode
		id    string
		want  int
	}{
		{"digits", "0007", "", fallbackRateLimited},
		{"digits without zeros", "8", "", fallbackInvalidRequest},
		{"name", "RATE_LIMITED", "", fallbackRateLimited},
		{"name in lower case with dashes", " rate-limited ", "", fallbackRateLimited},
		{"invalid request name", "INVALID_REQUEST", "", fallbackInvalidRequest},
		{"rejected name", "MINT_REJECTED", "", fallbackRejected},
		{"field wins over the ID", "0003", rateLimitedID, fallbackRejected},
		{"no field: the ID's sequence", "", invalidID, fallbackInvalidRequest},
		{"unknown name: the ID's sequence", "BACKEND_EXPLODED", rateLimitedID, fallbackRateLimited},
		{"digits beyond the codes: the ID's sequence", "0100", unavailableID, fallbackUnavailable},
		{"zero: the ID's sequence", "0000", unavailableID, fallbackUnavailable},
		{"five digits: the ID's sequence", "00007", invalidID, fallbackInvalidRequest},
		{"ID with a damaged checksum still tells", "", "03-0-ERR-0007-L-2612-0-00", fallbackRateLimited},
		{"nothing to tell", "", "03-1-USA-0001-P-2601-3-92", 0},
		{"nothing at all", "", "", 0},
	} {
		if got := fallbackCode(tc.field, tc.id); got != tc.want {
			t.Errorf("%s: fallbackCode(%q, %q) = %d, want %d", tc.name, tc.field, tc.id, got, tc.want)
		}
	}
}

func TestErrorCodeField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{`{"errorCode":"0007"}`, "0007"},
		{`{"errorCode":"RATE_LIMITED"}`, "RATE_LIMITED"},
		{`{"errorCode":7}`, "7"},
		{`{"errorCode":null}`, ""},
		{`{"errorCode":{"code":7}}`, ""},
		{`{"errorCode":[7]}`, ""},
		{`{}`, ""},
	} {
		var a mintAnswer
		if err := json.Unmarshal([]byte(tc.body), &a); err != nil || string(a.ErrorCode) != tc.want {
			t.Errorf("%s: errorCode %q, err %v; want %q", tc.body, a.ErrorCode, err, tc.want)
		}
	}
}

// TestFallbackErr: each code's kind, Retry-After and breaker outcome, and
// the placeholder kept for the audit log but never in the message.
func TestFallbackErr(t *testing.T) {
	t.Parallel()
	const id = "03-0-ERR-0007-L-2612-0-92"
	for _, tc := range []struct {
		code       int
		kind       error
		retryAfter time.Duration
	}{
		{fallbackRateLimited, ErrRateLimited, time.Second},
		{fallbackInvalidRequest, ErrRejected, 0},
		{fallbackUnavailable, ErrFallback, 0},
		{fallbackTimeout, ErrFallback, 0},
		{fallbackRejected, ErrFallback, 0},
		{fallbackInternal, ErrFallback, 0},
		{0, ErrFallback, 0},
	} {
		e := fallbackErr("mint", tc.code, id)
		if !errors.Is(e, tc.kind) || e.RetryAfter != tc.retryAfter {
			t.Errorf("code %d: %v, Retry-After %v; want %v, %v", tc.code, e, e.RetryAfter, tc.kind, tc.retryAfter)
		}
		if strings.Contains(e.Error(), "ERR") || len(e.Placeholders) != 1 || e.Placeholders[0] != id {
			t.Errorf("code %d: message %q, placeholders %q; want the placeholder only in Placeholders", tc.code, e.Error(), e.Placeholders)
		}
	}
}

func TestJoinItemErrors(t *testing.T) {
	t.Parallel()
	if joinItemErrors([]error{nil, nil}) != nil {
		t.Fatal("no item failed, but an error came back")
	}
	a := fallbackErr("mint", fallbackUnavailable, "03-0-ERR-0001-T-2601-0-35")
	b := fallbackErr("mint", fallbackRateLimited, "03-0-ERR-0007-L-2612-0-92")
	c := callErr("mint", ErrBadResponse, 200, "wrong format")
	c.Refused = []string{"CT-A-CHI-1234-I-24-A-0"}
	err := joinItemErrors([]error{nil, a, b, c})
	if !errors.Is(err, ErrFallback) || errors.Is(err, ErrRateLimited) {
		t.Errorf("joined error %v, want the first item's kind", err)
	}
	if got := strings.Join(PlaceholdersOf(err), " "); got != "03-0-ERR-0001-T-2601-0-35 03-0-ERR-0007-L-2612-0-92" {
		t.Errorf("placeholders %q, want both", got)
	}
	if got := RefusedIDs(err); len(got) != 1 || got[0] != c.Refused[0] {
		t.Errorf("refused %q, want the third item's", got)
	}
	if len(a.Placeholders) != 1 {
		t.Error("joining changed an item's error")
	}
}
