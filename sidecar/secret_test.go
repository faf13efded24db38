package sidecar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestTokenNeverLeaks runs good mints, an upstream 401, a reload with a
// rotated token and bad requests with debug logging, and checks that neither
// token appears in anything the sidecar wrote or served.
func TestTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	const first, second = "s3cr3t-first-token-ABCDEF", "s3cr3t-second-token-UVWXYZ"
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startFile(t, sim.Config{Token: first}, "log: {level: debug}\nupstream:\n  tokenFile: "+tok+"\n  retry: {maxAttempts: 2, baseDelay: 1ms, maxDelay: 1ms}\n")
	var served strings.Builder
	keep := func(r reply) {
		served.WriteString(r.raw)
		for k, v := range r.header {
			served.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	keep(h.mint("PEO"))
	keep(h.do("POST", "/v1/mint/batch", `{"requests":[{"entity":"PLACE"},{"entity":"EVNT"}]}`))
	h.sim.SetToken(second) // upstream rotated first: the sidecar's token is refused
	keep(h.mint("PEO"))
	if err := os.WriteFile(tok, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	h.reload <- os.Interrupt
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.watcher.Wait(ctx, func(s config.Status) bool { return s.Generation == 2 }); err != nil {
		t.Fatal(err)
	}
	keep(h.mint("AUTH"))
	keep(h.do("POST", "/v1/mint", `{"entity":`))
	keep(h.do("POST", "/v1/mint", `{"entity":"PEO","metadata":{"__proto__":1}}`))
	keep(h.do("GET", "/v1/validate/"+first, ""))
	keep(h.do("POST", "/v1/validate", `{"id":"`+second+`"}`))
	keep(h.do("GET", "/health", ""))
	keep(h.do("GET", "/readyz", ""))
	resp, err := h.http.Get(h.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	_, _ = copyTo(&metrics, resp)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	// The requests that carried the token in their own path or body are
	// the caller's echo; the sidecar must not add it anywhere else.
	servedText := strings.NewReplacer(`"chittyId":"`+first+`"`, "", `"chittyId":"`+second+`"`, "").Replace(served.String())
	logs := h.logs.String()
	logs = strings.ReplaceAll(logs, `"path":"/v1/validate/`+first+`"`, "")
	for name, text := range map[string]string{"answers": servedText, "/metrics": metrics.String(), "logs": logs} {
		for _, secret := range []string{first, second} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain the token %q:\n%s", name, secret, testout.Cut(t, "text.txt", text, func(l string) bool { return strings.Contains(l, secret) }))
			}
		}
	}
	// The scenario really ran: an upstream 401, a good mint after the
	// rotation, and a rejected body.
	for _, want := range []string{`"outcome":"UNAUTHORIZED"`, `"entities":["AUTH"],"outcome":"ok"`, `"outcome":"BAD_REQUEST"`, `"outcome":"INVALID_METADATA"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s; their audit lines:\n%s", want, testout.Cut(t, "log.jsonl", logs, func(l string) bool { return strings.Contains(l, `"type":"audit"`) }))
		}
	}
}
