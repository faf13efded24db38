package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// rawRequest sends one HTTP/1.1 request with exactly the given head lines
// and returns the status line's code and the body.
func rawRequest(t *testing.T, base, head, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", head, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBrowserRequestsRefused: what a web page in a browser on the same
// machine can send is refused before it can spend the token, and what the
// apps' clients send still passes.
func TestBrowserRequestsRefused(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "security:\n  allowedOrigins: [\"https://app.example\"]\n  allowedHosts: [sidecar.internal]\n")
	id := h.mustMint("PEO") // as the official 1.0.0 client sends it: JSON, no Origin
	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code                     string
	}{
		{"client 1.0.0 mint", "POST", "/v1/mint", `{"entity":"EVNT"}`, nil, 200, ""},
		{"client 1.0.0 validate", "GET", "/v1/validate/" + id, "", nil, 200, ""},
		{"JSON with charset", "POST", "/v1/mint", `{"entity":"PEO"}`, []string{"Content-Type", "application/json; charset=utf-8"}, 200, ""},
		{"Sec-Fetch-Site none (typed into the address bar)", "GET", "/v1/validate/" + id, "", []string{"Sec-Fetch-Site", "none"}, 200, ""},
		{"listed origin", "POST", "/v1/mint", `{"entity":"PEO"}`, []string{"Origin", "https://app.example"}, 200, ""},
		{"foreign origin mint", "POST", "/v1/mint", `{"entity":"PEO"}`, []string{"Origin", "http://evil.example"}, 403, "FORBIDDEN"},
		{"foreign origin batch", "POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"}]}`, []string{"Origin", "http://evil.example"}, 403, "FORBIDDEN"},
		{"foreign origin validate", "GET", "/v1/validate/" + id, "", []string{"Origin", "http://evil.example"}, 403, "FORBIDDEN"},
		{"null origin", "POST", "/v1/validate", `{"id":"` + id + `"}`, []string{"Origin", "null"}, 403, "FORBIDDEN"},
		{"cross-site", "POST", "/v1/mint", `{"entity":"PEO"}`, []string{"Sec-Fetch-Site", "cross-site"}, 403, "FORBIDDEN"},
		{"same-site", "GET", "/api/v1/validate/" + id, "", []string{"Sec-Fetch-Site", "same-site"}, 403, "FORBIDDEN"},
		{"text/plain mint", "POST", "/v1/mint", `{"entity":"PEO"}`, []string{"Content-Type", "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"form mint", "POST", "/v1/mint/batch", `requests=1`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"text/plain validate", "POST", "/v1/validate", `{"id":"` + id + `"}`, []string{"Content-Type", "text/plain;charset=UTF-8"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"health is not a browser check", "GET", "/health", "", []string{"Origin", "http://evil.example"}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.path, tc.body, tc.header...)
			r.expect(t, tc.name, tc.status, tc.code)
			if tc.status == 403 && !strings.Contains(r.body["message"].(string), "refused") && !strings.Contains(r.body["message"].(string), "security.allowedOrigins") {
				t.Errorf("%s: message does not say why: %s", tc.name, r.raw)
			}
		})
	}
	if n := h.sim.Stats().Mint; n != 4 {
		t.Errorf("upstream saw %d mints, want the 4 that passed", n)
	}
}

// TestHostCheck: a request whose Host names neither loopback nor a listed
// host (DNS rebinding) is refused on every route but the liveness and
// readiness probes.
func TestHostCheck(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "security: {allowedHosts: [sidecar.internal, \"fd00::7\"]}\n")
	h.waitState(fsm.Connected) // /readyz says 200 from then on
	id := h.mustMint("PEO")
	for _, tc := range []struct {
		host, path string
		status     int
	}{
		{"127.0.0.1:8787", "/v1/validate/" + id, 200},
		{"localhost", "/v1/validate/" + id, 200},
		{"LOCALHOST:1", "/v1/validate/" + id, 200},
		{"127.3.2.1:9", "/v1/validate/" + id, 200},
		{"[::1]:8787", "/v1/validate/" + id, 200},
		{"sidecar.internal:8787", "/v1/validate/" + id, 200},
		{"[fd00::7]:8787", "/v1/validate/" + id, 200},
		{"evil.example", "/v1/validate/" + id, 403},
		{"evil.example:8787", "/health", 403},
		{"127.0.0.1.evil.example", "/v1/validate/" + id, 403},
		{"127.0.0.256", "/v1/validate/" + id, 403},
		{"sidecar.internal.evil.example", "/v1/validate/" + id, 403},
		{"10.0.0.1:8787", "/v1/validate/" + id, 403},
		{"evil.example", "/v1/nope", 403},
		{"evil.example", "/healthz", 200},
		{"evil.example", "/readyz", 200},
	} {
		code, body := rawRequest(t, h.base, "GET "+tc.path+" HTTP/1.1\r\nHost: "+tc.host, "")
		if code != tc.status {
			t.Errorf("Host %q %s: HTTP %d, want %d: %s", tc.host, tc.path, code, tc.status, body)
		}
		if code == 403 && !strings.Contains(body, `"error":"FORBIDDEN"`) {
			t.Errorf("Host %q: %s", tc.host, body)
		}
	}
	code, body := rawRequest(t, h.base, "POST /v1/mint HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json", `{"entity":"PEO"}`)
	if code != 403 {
		t.Errorf("mint with a foreign Host: HTTP %d %s", code, body)
	}
	code, body = rawRequest(t, h.base, "GET /v1/validate/"+id+" HTTP/1.0", "")
	if code != 403 || !strings.Contains(body, "no Host header") {
		t.Errorf("HTTP/1.0 without Host: HTTP %d %s", code, body)
	}
	if n := h.sim.Stats().Mint; n != 1 {
		t.Errorf("upstream saw %d mints, want 1", n)
	}
}

// TestUpstreamErrorTextNeverReachesCaller: an upstream whose 4xx answers
// echo the credentials it was sent. The caller gets a fixed message, and
// the log (which has upstream's text, for the operator) has the token
// redacted, for mints, validates and health polls alike.
func TestUpstreamErrorTextNeverReachesCaller(t *testing.T) {
	t.Parallel()
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, `{"error":"BAD_REQUEST","message":"you sent %s; we do not accept token %s here"}`,
			r.Header.Get("Authorization"), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", echo)
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)

	h := newHarness(t)
	h.run("listen: 127.0.0.1:0\nlog: {level: debug}\nupstream:\n  url: "+up.URL+"/v1\n  token: "+testToken+"\n", false, sidecar.Timeouts{})
	r := h.mint("PEO")
	r.expect(t, "mint", 400, "BAD_REQUEST")
	if r.body["message"] != "the ChittyID service rejected the request (HTTP 422)" {
		t.Errorf("mint message: %s", r.raw)
	}
	v := h.validate("CT-A-CHI-1234-I-24-A-0")
	v.expect(t, "validate", 400, "BAD_REQUEST")
	health := h.do("GET", "/health", "")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	for what, text := range map[string]string{"mint answer": r.raw, "validate answer": v.raw, "/health": health.raw, "logs": logs} {
		if strings.Contains(text, testToken) {
			t.Errorf("%s carries the token:\n%s", what, testout.Cut(t, "text.txt", text, func(l string) bool { return strings.Contains(l, testToken) }))
		}
	}
	for what, text := range map[string]string{"mint answer": r.raw, "validate answer": v.raw} {
		if strings.Contains(text, "accept") {
			t.Errorf("%s carries upstream's text:\n%s", what, text)
		}
	}
	// The operator still sees what upstream said, redacted.
	if !strings.Contains(logs, "we do not accept token [redacted] here") {
		t.Errorf("the log lacks upstream's redacted text; its lines about upstream:\n%s",
			testout.Cut(t, "log.jsonl", logs, func(l string) bool { return strings.Contains(l, "upstream") }))
	}
}
