package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// logBuffer collects log output and wakes waiters on every write.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
	discard bool // drop what is written (the soak: the buffer would grow)
	// tap, if set, receives every complete line instead of the buffer (the
	// drill: it keeps what it needs, the rest is dropped).
	tap  func(line []byte)
	part []byte // an incomplete line, for tap
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.discard {
		return len(p), nil
	}
	if b.tap != nil {
		b.part = append(b.part, p...)
		for {
			i := bytes.IndexByte(b.part, '\n')
			if i < 0 {
				break
			}
			b.tap(b.part[:i])
			b.part = b.part[i+1:]
		}
		b.part = append([]byte(nil), b.part...)
		return len(p), nil
	}
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	text, _ := b.next()
	return text
}

// next returns what was written and a channel closed by the next write,
// taken together: a write between reading the text and asking for the
// channel would otherwise go unnoticed by a waiter.
func (b *logBuffer) next() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.buf.String(), b.changed
}

// lines returns the logged lines of a type ("access", "audit"), decoded.
func (b *logBuffer) lines(t *testing.T, typ string) []map[string]any {
	t.Helper()
	return linesOf(t, b.String(), typ)
}

// linesOf decodes the lines of text of a type ("access", "audit").
func linesOf(t *testing.T, text, typ string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["type"] == typ {
			out = append(out, m)
		}
	}
	return out
}

// waitFor blocks until a logged line of type typ satisfies ok (10s at most).
func (b *logBuffer) waitFor(t *testing.T, typ string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		text, ch := b.next()
		for _, l := range linesOf(t, text, typ) {
			if ok(l) {
				return l
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no matching %s line within 10s; the last %s lines:\n%s", typ, typ,
				testout.Last(t, "log.jsonl", b.String(), func(l string) bool { return strings.Contains(l, `"type":"`+typ+`"`) }))
		}
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "")
	id := h.mustMint("PEO")
	h.do("GET", "/v1/validate/"+id, "", "X-Request-ID", "req-access-1", "X-Client-ID", "billing")
	h.validate("nope")
	h.do("POST", "/v1/mint", `{"entity":"X"}`)
	hit := h.logs.waitFor(t, "access", func(m map[string]any) bool { return m["requestId"] == "req-access-1" })
	for k, want := range map[string]any{"method": "GET", "route": "validate", "status": float64(200), "cache": "HIT", "caller": "billing", "msg": "request"} {
		if hit[k] != want {
			t.Errorf("access line %s = %v, want %v (%v)", k, hit[k], want, hit)
		}
	}
	if d, ok := hit["durationMs"].(float64); !ok || d < 0 {
		t.Errorf("durationMs = %v", hit["durationMs"])
	}
	h.logs.waitFor(t, "access", func(m map[string]any) bool { return m["reason"] == "BAD_FORMAT" && m["cache"] == "LOCAL" })
	h.logs.waitFor(t, "access", func(m map[string]any) bool { return m["reason"] == "UNSUPPORTED_ENTITY" && m["status"] == float64(400) })
}

func TestAccessLogCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "log: {access: false}\n")
	h.mustMint("PEO")
	h.validate("nope")
	if n := len(h.logs.lines(t, "access")); n != 0 {
		t.Errorf("%d access lines with log.access false", n)
	}
	if n := len(h.logs.lines(t, "audit")); n != 1 {
		t.Errorf("%d audit lines, want 1 (audit is not the access log)", n)
	}
}

func TestAuditLines(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  retry: {maxAttempts: 2, baseDelay: 1ms, maxDelay: 1ms}\n")
	r := h.do("POST", "/v1/mint", `{"entity":"EVNT","metadata":{"a":1}}`, "Idempotency-Key", "idem-1", "X-Client-ID", "app-a", "X-Request-ID", "req-audit-ok")
	r.expect(t, "mint", 200, "")
	ok := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-audit-ok" })
	ids, _ := ok["ids"].([]any)
	if ok["outcome"] != "ok" || ok["idempotencyKey"] != "idem-1" || ok["caller"] != "app-a" || len(ids) != 1 || ids[0] != r.body["chittyId"] ||
		ok["upstreamAttempts"] != float64(1) || ok["metadataBytes"] != float64(7) || len(ok["metadataSha256"].(string)) != 64 {
		t.Errorf("success audit line: %v", ok)
	}
	if strings.Contains(h.logs.String(), `"a":1`) {
		t.Error("metadata itself was logged")
	}

	h.fault(sim.Fault{Mode: "status", Status: 503, Routes: []string{"mint"}})
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Request-ID", "req-audit-fail").expect(t, "failing mint", 503, "UPSTREAM_UNAVAILABLE")
	fail := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-audit-fail" })
	if fail["outcome"] != "UPSTREAM_UNAVAILABLE" || fail["upstreamAttempts"] != float64(2) {
		t.Errorf("failure audit line: %v", fail)
	}
	h.do("POST", "/v1/mint", `{"entity":"NOPE"}`, "X-Request-ID", "req-audit-bad")
	bad := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-audit-bad" })
	if bad["outcome"] != "UNSUPPORTED_ENTITY" || bad["upstreamAttempts"] != float64(0) {
		t.Errorf("bad request audit line: %v", bad)
	}
}

// TestAuditOrphanedMint: the caller gives up while upstream is still
// minting; when the ID arrives it cannot be delivered and is logged as
// orphaned, so it is not silently lost.
func TestAuditOrphanedMint(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  mintTimeout: 10s\n  timeout: 10s\n")
	h.fault(sim.Fault{Mode: "hang", Routes: []string{"mint"}})
	impatient := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{}}
	defer impatient.CloseIdleConnections()
	req, _ := http.NewRequest("POST", h.base+"/v1/mint", strings.NewReader(`{"entity":"PEO"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "req-orphan")
	if resp, err := impatient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the impatient caller got an answer: %d", resp.StatusCode)
	}
	if err := h.sim.WaitHung(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	h.fault(sim.Fault{Mode: "ok"}) // upstream now mints the ID nobody waits for
	line := h.logs.waitFor(t, "audit", func(m map[string]any) bool { return m["requestId"] == "req-orphan" })
	minted := h.sim.Minted()
	ids, _ := line["ids"].([]any)
	if line["outcome"] != "orphaned" || len(ids) != 1 || len(minted) != 1 || ids[0] != minted[0] {
		t.Errorf("orphan audit line %v; upstream minted %v", line, minted)
	}
}

// copyTo reads an HTTP answer's body into b and closes it.
func copyTo(b *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(b, resp.Body)
}

// TestLateMintIsRecorded: upstream answers a mint after the sidecar gave up
// on it (504 to the caller); the ID it minted is logged as orphaned.
func TestLateMintIsRecorded(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  timeout: 200ms\n  mintTimeout: 2s\n")
	h.fault(sim.Fault{Mode: "slow", Latency: "500ms", Routes: []string{"mint"}})
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Request-ID", "req-late").expect(t, "slow mint", 504, "UPSTREAM_TIMEOUT")
	line := h.logs.waitFor(t, "audit", func(m map[string]any) bool {
		return m["requestId"] == "req-late" && m["outcome"] == "orphaned"
	})
	minted := h.sim.Minted()
	ids, _ := line["ids"].([]any)
	if len(minted) != 1 || len(ids) != 1 || ids[0] != minted[0] {
		t.Errorf("late audit line %v; upstream minted %v", line, minted)
	}
}

// TestMintNeverAnsweredIsRecorded: upstream never answers a mint, not even
// after the sidecar's late window. Whether it minted is unknown, and the
// audit log says so, with the idempotency key that reconciles it.
func TestMintNeverAnsweredIsRecorded(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "upstream:\n  timeout: 200ms\n  mintTimeout: 300ms\n  lateAnswerWindow: 300ms\n  retry: {maxAttempts: 1}\n")
	h.fault(sim.Fault{Mode: "hang", Routes: []string{"mint"}})
	h.do("POST", "/v1/mint", `{"entity":"PEO"}`, "X-Request-ID", "req-never").expect(t, "hung mint", 504, "UPSTREAM_TIMEOUT")
	first := h.logs.waitFor(t, "audit", func(m map[string]any) bool {
		return m["requestId"] == "req-never" && m["msg"] == "mint"
	})
	unknown := h.logs.waitFor(t, "audit", func(m map[string]any) bool {
		return m["requestId"] == "req-never" && m["outcome"] == "unknown"
	})
	if unknown["idempotencyKey"] == "" || unknown["idempotencyKey"] != first["idempotencyKey"] || unknown["error"] == nil {
		t.Errorf("unknown-outcome line %v; the request's audit line %v", unknown, first)
	}
	if n := len(h.sim.Minted()); n != 0 {
		t.Errorf("upstream minted %d IDs for a hung request", n)
	}
}
