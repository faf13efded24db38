package sidecar_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// Tests of the sidecar in front of the simulator in the worker dialect,
// which behaves as the public service's worker does (docs/upstream.md, "Upstream
// dialects").

// TestWorkerFallbackCodes: each of the worker's fallback answers (HTTP 200
// with a placeholder ID) through the sidecar: the status and error code,
// whether the breaker counted it, retries, Retry-After; the placeholder is
// absent from the answer and present in the audit line.
func TestWorkerFallbackCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fault      sim.Fault
		code       string // the placeholder's
		status     int
		errCode    string
		counted    bool  // a breaker failure
		attempts   int64 // upstream mints
		retryAfter string
	}{
		{"backend 401", sim.Fault{Mode: "status", Status: 401}, "0003", 503, "UPSTREAM_FALLBACK", true, 1, "1"},
		{"backend 503", sim.Fault{Mode: "status", Status: 503, RetryAfter: 30}, "0003", 503, "UPSTREAM_FALLBACK", true, 1, "1"},
		{"backend 500", sim.Fault{Mode: "status", Status: 500}, "0003", 503, "UPSTREAM_FALLBACK", true, 1, "1"},
		{"backend 429", sim.Fault{Mode: "status", Status: 429, RetryAfter: 30}, "0007", 429, "RATE_LIMITED", false, 1, "1"},
		{"rate limited", sim.Fault{Mode: "fallback", ErrorCode: "0007"}, "0007", 429, "RATE_LIMITED", false, 1, "1"},
		{"backend 400", sim.Fault{Mode: "status", Status: 400}, "0008", 400, "BAD_REQUEST", false, 1, ""},
		{"unavailable", sim.Fault{Mode: "fallback"}, "0001", 503, "UPSTREAM_FALLBACK", true, 1, "1"},
		{"timeout", sim.Fault{Mode: "fallback", ErrorCode: "0002"}, "0002", 503, "UPSTREAM_FALLBACK", true, 1, "1"},
		{"internal", sim.Fault{Mode: "fallback", ErrorCode: "0099"}, "0099", 503, "UPSTREAM_FALLBACK", true, 1, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, sim.Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric},
				"upstream:\n"+fastRetry+"  breaker: {failures: 50, openTimeout: 1m}\n")
			h.fault(tc.fault)
			r := h.do("POST", "/v1/mint", `{"entity":"EVNT"}`, "X-Request-ID", "req-fallback")
			r.expect(t, "mint", tc.status, tc.errCode)
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if n := h.sim.Stats().Mint; n != tc.attempts {
				t.Errorf("upstream mints = %d, want %d", n, tc.attempts)
			}
			cb := h.do("GET", "/health", "").body["resilience"].(map[string]any)["circuitBreaker"].(map[string]any)
			if got := cb["failures"] != float64(0); got != tc.counted {
				t.Errorf("breaker failures %v: counted %v, want %v", cb["failures"], got, tc.counted)
			}
			placeholder := "03-0-ERR-" + tc.code + "-E-"
			if strings.Contains(r.raw, "-ERR-") || strings.Contains(r.raw, placeholder) {
				t.Errorf("the answer carries the placeholder: %s", r.raw)
			}
			a := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-fallback" })
			ph, _ := a["placeholderIds"].([]any)
			if len(ph) == 0 || !strings.HasPrefix(fmt.Sprint(ph[0]), placeholder) || a["outcome"] != tc.errCode {
				t.Errorf("audit line %v, want outcome %s and the placeholder %s… in placeholderIds", a, tc.errCode, placeholder)
			}
			if ids, _ := a["ids"].([]any); len(ids) != 0 {
				t.Errorf("audit line ids %v, want none: a placeholder is not an ID", ids)
			}
		})
	}
}

// boundaryRow is one row of upstream/chittyid's table of numeric boundary IDs.
type boundaryRow struct{ verdict, id, what string }

func readBoundaryIDs(t *testing.T) []boundaryRow {
	t.Helper()
	f, err := os.Open("../upstream/chittyid/testdata/numeric-boundary-ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []boundaryRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		rows = append(rows, boundaryRow{fields[0], fields[1], strings.Join(fields[2:], " ")})
	}
	if err := sc.Err(); err != nil || len(rows) == 0 {
		t.Fatalf("reading the boundary IDs: %v, %d rows", err, len(rows))
	}
	return rows
}

// TestValidateBoundaryIDsAgreeWithWorker: every row of the boundary-ID table
// through POST /v1/validate (validate.mode upstream) in front of the
// simulator in worker dialect, and straight to the simulator's
// /api/validate: the local check, the sidecar's answer and the worker's
// verdict agree on every row. IDs the local check passes go upstream
// (X-Cache MISS); the others are answered locally with the table's reason.
func TestValidateBoundaryIDsAgreeWithWorker(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}, "validate: {mode: upstream}\n")
	for _, row := range readBoundaryIDs(t) {
		want := row.verdict == "valid"
		local := chittyid.FormatNumeric.Check(row.id) == nil
		worker := workerVerdict(t, h, row.id)
		body, _ := json.Marshal(map[string]string{"id": row.id})
		r := h.do("POST", "/v1/validate", string(body))
		r.expect(t, row.id, 200, "")
		if local != want || worker != want || r.body["valid"] != want {
			t.Errorf("%s (%s): local %v, worker %v, sidecar %s; the table says %s", row.id, row.what, local, worker, r.raw, row.verdict)
			continue
		}
		if xc := r.header.Get("X-Cache"); want && xc != "MISS" {
			t.Errorf("%s: X-Cache %q, want MISS (asked upstream)", row.id, xc)
		} else if !want && (xc != "LOCAL" || r.body["reason"] != row.verdict) {
			t.Errorf("%s: X-Cache %q, reason %v; want LOCAL, %s", row.id, xc, r.body["reason"], row.verdict)
		}
	}
}

// workerVerdict asks the simulator's POST /api/validate about id.
func workerVerdict(t *testing.T, h *harness, id string) bool {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"id": id})
	req, err := http.NewRequest("POST", h.sim.URL()+"/api/validate", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Success bool
		Valid   *bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 || !v.Success || v.Valid == nil {
		t.Fatalf("the worker's validate of %q: %d, %+v, %v", id, resp.StatusCode, v, err)
	}
	return *v.Valid
}
