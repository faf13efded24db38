package sidecar_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chittyos/chittyid-sidecar/sidecar"
)

// TestUpstreamEchoingTheTokenNeverReachesAppOrLog: an upstream that
// echoes the token it was sent in a mint answer's version or chittyId,
// whole, inside longer text or in capitals: the app's answer never holds
// it (a version that carries it is replaced by the sidecar's own, an ID
// that carries it is refused), and neither does any log line: the audit
// line's refusedIds, placeholderIds and error show [redacted]. Before, the
// version was relayed as is and a refused ID was logged as is.
func TestUpstreamEchoingTheTokenNeverReachesAppOrLog(t *testing.T) {
	t.Parallel()
	var answer atomic.Value // the mint answer; {token} stands for the token
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"status":"ok"}`) })
	mux.HandleFunc("/v1/mint", func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, strings.NewReplacer("{token}", tok, "{TOKEN}", strings.ToUpper(tok)).Replace(answer.Load().(string)))
	})
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	h := newHarness(t)
	h.run("listen: 127.0.0.1:0\nlog: {level: debug}\nupstream:\n  url: "+up.URL+"/v1\n  token: "+testToken+"\n  retry: {maxAttempts: 1}\n", false, sidecar.Timeouts{})

	var answers strings.Builder
	for _, tc := range []struct {
		name, answer string
		status       int
	}{
		{"version is the token", `{"chittyId":"CT-A-AAA-0100-P-26-A-0","version":"{token}"}`, 200},
		{"version ends with the token", `{"chittyId":"CT-A-AAA-0100-P-26-A-0","version":"1.0-{token}"}`, 200},
		{"chittyId is the token", `{"chittyId":"{token}"}`, 502},
		{"chittyId is the token in capitals", `{"chittyId":"{TOKEN}"}`, 502},
		{"chittyId holds the token", `{"chittyId":"CT-{token}","version":"{token}"}`, 502},
		{"placeholder is the token", `{"chittyId":"{token}","fallback":true}`, 503},
	} {
		answer.Store(tc.answer)
		r := h.mint("PEO")
		if r.status != tc.status {
			t.Errorf("%s: HTTP %d, want %d: %s", tc.name, r.status, tc.status, r.raw)
		}
		if tc.status == 200 && r.body["version"] != "test" {
			t.Errorf("%s: version %v, want the sidecar's own", tc.name, r.body["version"])
		}
		answers.WriteString(r.raw + "\n")
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	for what, text := range map[string]string{"answers": answers.String(), "logs": logs} {
		if strings.Contains(strings.ToLower(text), strings.ToLower(testToken)) {
			t.Errorf("%s carry the token:\n%s", what, text)
		}
	}
	audits := h.logs.lines(t, "audit")
	refused, placeholders := 0, 0
	for _, a := range audits {
		for _, id := range asStrings(a["refusedIds"]) {
			if strings.Contains(id, "[redacted]") {
				refused++
			}
		}
		for _, id := range asStrings(a["placeholderIds"]) {
			if id == "[redacted]" {
				placeholders++
			}
		}
	}
	if len(audits) != 6 || refused != 3 || placeholders != 1 {
		t.Errorf("%d audit lines with %d refused and %d placeholder IDs redacted, want 6, 3 and 1:\n%s", len(audits), refused, placeholders, logs)
	}
}

// asStrings is a JSON array of strings (nil for anything else).
func asStrings(v any) []string {
	a, _ := v.([]any)
	var out []string
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
