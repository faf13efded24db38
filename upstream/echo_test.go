package upstream_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// goodID is a well-formed official ID.
const goodID = "CT-A-AAA-0100-P-26-A-0"

// TestUpstreamEchoingTheTokenIsRedacted: an upstream that echoes the
// Authorization header it was sent, whole, inside longer text or in
// another letter case, in any field of its answers, never gets the token
// into what the client returns: a minted ID that carries it is refused
// (and listed redacted), a version that carries it is dropped, and every
// error, refused ID, placeholder, reason and late answer has it replaced
// by [redacted].
func TestUpstreamEchoingTheTokenIsRedacted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// answer is the mint answer; {token} is replaced by the token.
		answer string
		status int
		// wantID is the ID Mint returns ("" for an error).
		wantID string
	}{
		{"version is the token", `{"chittyId":"` + goodID + `","version":"{token}"}`, 200, goodID},
		{"version ends with the token", `{"chittyId":"` + goodID + `","version":"1.0-{token}"}`, 200, goodID},
		{"version is a piece of the token", `{"chittyId":"` + goodID + `","version":"{token4}"}`, 200, goodID},
		{"chittyId is the token", `{"chittyId":"{token}"}`, 200, ""},
		{"chittyId is the token in capitals", `{"chittyId":"{TOKEN}"}`, 200, ""},
		{"chittyId holds the token", `{"chittyId":"CT-{token}-0"}`, 200, ""},
		{"snake-case id is the bearer header", `{"chitty_id":"Bearer {token}"}`, 200, ""},
		{"fallback placeholder is the token", `{"chittyId":"{token}","fallback":true,"errorCode":"0001"}`, 200, ""},
		{"error message quotes the token", `{"message":"bad token {token}, try again"}`, 422, ""},
		{"error field is the header", `{"error":"Authorization: Bearer {token}"}`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := echoing(t, func(w http.ResponseWriter, r *http.Request, tok string) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				fmt.Fprint(w, strings.NewReplacer("{token}", tok, "{TOKEN}", strings.ToUpper(tok), "{token4}", tok[2:12]).Replace(tc.answer))
			})
			m, err := c.Mint(ctxFor(t, 5*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
			if m.ID != tc.wantID || (tc.wantID == "") != (err != nil) {
				t.Fatalf("Mint = %+v, %v; want ID %q", m, err, tc.wantID)
			}
			if tc.wantID != "" && m.Version != "" {
				t.Errorf("Version = %q, want it dropped", m.Version)
			}
			text := fmt.Sprintf("%+v %v %q %q", m, err, upstream.RefusedIDs(err), upstream.PlaceholdersOf(err))
			noToken(t, text)
			if err != nil && !strings.Contains(text, "[redacted]") && tc.status == 200 {
				t.Errorf("the refusal does not show where the token was: %s", text)
			}
		})
	}
}

// TestUpstreamEchoInBatchesAndValidates: the same for a batch's IDs and a
// validate's reason.
func TestUpstreamEchoInBatchesAndValidates(t *testing.T) {
	t.Parallel()
	c := echoing(t, func(w http.ResponseWriter, r *http.Request, tok string) {
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/validate/") {
			fmt.Fprintf(w, `{"valid":false,"reason":"token %s is not valid here"}`, tok)
			return
		}
		fmt.Fprintf(w, `{"chittyIds":["%s","%s"]}`, goodID, tok)
	})
	ids, err := c.MintBatch(ctxFor(t, 5*time.Second), []upstream.MintRequest{{Entity: chittyid.EntityPEO}, {Entity: chittyid.EntityPEO}}, "", upstream.CallInfo{})
	if err == nil || len(ids) != 2 || ids[0] != goodID || ids[1] != "" {
		t.Fatalf("MintBatch = %q, %v; want the good ID and the token refused", ids, err)
	}
	if r := upstream.RefusedIDs(err); len(r) != 1 || r[0] != "[redacted]" {
		t.Errorf("refused IDs %q, want [[redacted]]", r)
	}
	noToken(t, fmt.Sprintf("%q %v", ids, err))
	v, err := c.Validate(ctxFor(t, 5*time.Second), goodID, upstream.CallInfo{})
	if err != nil || v.Valid || v.Reason != "token [redacted] is not valid here" {
		t.Errorf("Validate = %+v, %v; want the reason redacted", v, err)
	}
}

// TestUpstreamEchoInMalformedAnswer: a malformed HTTP answer carrying the
// token does not bring it into the error (the transport quotes no bytes of
// it: SecureErrorLogMessage; scrub would redact a cause that did, see
// TestScrub).
func TestUpstreamEchoInMalformedAnswer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() { // owned by the test: ends when the listener closes
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = bufio.NewReader(conn).ReadString('\n')
				fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2%s\r\n\r\n{}", echoToken)
			}()
		}
	}()
	cfg := upstream.Defaults()
	cfg.URL, cfg.Token = "http://"+ln.Addr().String()+"/v1", echoToken
	cfg.Retry.MaxAttempts = 1
	c := newClient(t, cfg, upstream.Options{})
	_, err = c.Mint(ctxFor(t, 5*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
	if err == nil {
		t.Fatal("a malformed answer was accepted")
	}
	noToken(t, err.Error())
}

const echoToken = "echo-secret-Token-12345"

// echoing starts an upstream whose handler gets the token the request
// carried, and a client of it.
func echoing(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, tok string)) *upstream.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	t.Cleanup(srv.Close)
	cfg := upstream.Defaults()
	cfg.URL, cfg.Token = srv.URL+"/v1", echoToken
	cfg.Retry.MaxAttempts = 1
	return newClient(t, cfg, upstream.Options{})
}

// noToken fails the test if text holds the token, in any letter case.
func noToken(t *testing.T, text string) {
	t.Helper()
	if strings.Contains(strings.ToLower(text), strings.ToLower(echoToken)) {
		t.Errorf("the token got through: %s", text)
	}
}
