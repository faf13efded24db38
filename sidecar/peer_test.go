//go:build linux

package sidecar_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestAuditHalfClosedCallerGetsItsID: a caller that sends its mint and
// half-closes (shutdown(SHUT_WR), as `nc -N` or a client that signals the
// end of its request does) still reads the answer; the audit line says
// "ok", not "orphaned". Before, the FIN alone counted as a caller gone.
func TestAuditHalfClosedCallerGetsItsID(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "")
	h.fault(sim.Fault{Mode: "hang", Routes: []string{"mint"}})
	c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"entity":"PEO"}`
	req := "POST /v1/mint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Request-ID: req-half-closed\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.WaitHung(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil { // FIN, while upstream is minting
		t.Fatal(err)
	}
	h.fault(sim.Fault{Mode: "ok"}) // upstream now answers
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the half-closed caller got no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	minted := h.sim.Minted()
	if resp.StatusCode != 200 || len(minted) != 1 || !strings.Contains(string(b), minted[0]) {
		t.Fatalf("answer %d %s; upstream minted %v", resp.StatusCode, b, minted)
	}
	line := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-half-closed" })
	if line["outcome"] != "ok" {
		t.Errorf("audit line %v, want outcome ok: the ID was delivered", line)
	}
}
