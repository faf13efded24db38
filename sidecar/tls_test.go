package sidecar_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestOverTLS runs the integration scenarios again with the simulator
// serving HTTPS: launch sees the test's name and gives the simulator a
// certificate from a throwaway CA that the sidecar trusts through
// upstream.tls.caFile. Everything the plain-HTTP runs prove must hold over
// TLS too (docs/upstream.md, "Production upstream").
func TestOverTLS(t *testing.T) {
	t.Parallel()
	for _, sc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"mint then validate is a cache hit", TestMintThenValidateIsCacheHit},
		{"mint faults including hang", TestMintFaults},
		{"retries reuse the idempotency key", TestMintRetriesReuseIdempotencyKey},
		{"batch in both dialects", TestMintBatch},
		{"batch partial failure", TestMintBatchPartialFailureKeepsMintedIDs},
		{"validate hit and miss by TTL", TestValidateTTLs},
		{"validate stale when upstream refuses", TestValidateServesStaleWhenUpstreamRefuses},
		{"validate misses coalesce", TestValidateCoalescesConcurrentMisses},
		{"breaker opens and fails fast", TestBreakerOpensAfterFailuresAndFailsFast},
		{"breaker recovery", TestBreakerRecovery},
		{"breaker trip moves the state", TestBreakerTripMovesStateBeforeNextPoll},
		{"lifecycle and health polls", TestLifecycleDrill},
		{"late answer audited", TestLateMintIsRecorded},
		{"hang never answered audited", TestMintNeverAnsweredIsRecorded},
		{"token reload", TestReloadTokenRotation},
		{"token never leaks", TestTokenNeverLeaks},
	} {
		t.Run(sc.name, sc.test)
	}
	t.Run("the harness serves TLS here", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{}, "")
		h.waitState(fsm.Connected)
		tlsDoc, _ := h.upstreamDoc()["tls"].(map[string]any)
		if !strings.HasPrefix(h.sim.URL(), "https://") || tlsDoc["enabled"] != true || h.sim.Conns().Handshakes == 0 {
			t.Errorf("simulator %s, /health upstream.tls %v, %+v: not over TLS", h.sim.URL(), tlsDoc, h.sim.Conns())
		}
	})
}

// overTLS reports whether t runs inside TestOverTLS.
func overTLS(t *testing.T) bool { return strings.HasPrefix(t.Name(), "TestOverTLS/") }

// tlsHealth is fastHealth with polls that may take 2s: a TLS handshake on
// a busy machine can take longer than fastHealth's 40ms, and a poll timing
// out first hides the handshake's own error, which these tests read (they
// wait for a poll that says it: waitPollError). The interval applies while
// CONNECTED only; failed polls are retried 10-40ms apart, as with
// fastHealth.
const tlsHealth = "health: {interval: 2s, timeout: 2s, failuresToReconnect: 1, maxReconnectAttempts: 3, reconnect: {baseDelay: 10ms, maxDelay: 40ms}}\n"

// testPKI is a throwaway CA with its bundle in a file.
type testPKI struct {
	ca     *sim.CA
	caFile string
}

func newTestPKI(t *testing.T, name string) testPKI {
	t.Helper()
	ca, err := sim.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: ca, caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := ca.WriteFile(p.caFile); err != nil {
		t.Fatal(err)
	}
	return p
}

// leaf issues a certificate; names default to the simulator's address.
func (p testPKI) leaf(t *testing.T, spec sim.LeafSpec) *sim.Leaf {
	t.Helper()
	if len(spec.Names) == 0 {
		spec.Names = []string{"127.0.0.1", "localhost"}
	}
	l, err := p.ca.Issue(spec)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tlsUpstream returns TLS settings for the simulator and the CA file that
// trusts them.
func tlsUpstream(t *testing.T) (*tls.Config, string) {
	t.Helper()
	p := newTestPKI(t, "sidecar test CA")
	return p.leaf(t, sim.LeafSpec{}).ServerConfig(nil), p.caFile
}

// lastPollError is /health's connection.stats.lastPoll.error.
func (h *harness) lastPollError() string {
	h.t.Helper()
	conn, _ := h.do("GET", "/health", "").body["connection"].(map[string]any)
	stats, _ := conn["stats"].(map[string]any)
	poll, _ := stats["lastPoll"].(map[string]any)
	s, _ := poll["error"].(string)
	return s
}

// waitPollError waits for a health poll that failed with an error
// containing want, and returns that error. On a busy machine a poll can
// end at its timeout before the handshake does, and its error then says
// only that; the next poll, tens of milliseconds later, shakes hands
// again. The errors seen on the way are logged (shown on failure).
func (h *harness) waitPollError(want string) string {
	h.t.Helper()
	var msg string
	waitUntil(h.t, fmt.Sprintf("a health poll failing with %q", want), func() bool {
		last := msg
		if msg = h.lastPollError(); msg != last {
			h.t.Logf("last poll error: %q", msg)
		}
		return strings.Contains(msg, want)
	})
	return msg
}

// upstreamDoc is /health's upstream section.
func (h *harness) upstreamDoc() map[string]any {
	h.t.Helper()
	u, _ := h.do("GET", "/health", "").body["upstream"].(map[string]any)
	return u
}

// TestTLSRefusesBadCertificates: a certificate for another name, from an
// untrusted CA, or expired is refused; the sidecar does not become ready,
// and /health and the log say what is wrong and what to change.
func TestTLSRefusesBadCertificates(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-72 * time.Hour)
	for _, tc := range []struct {
		name    string
		spec    sim.LeafSpec
		untrust bool
		outcome string
		want    []string
	}{
		{"another name", sim.LeafSpec{Names: []string{"id.example.com"}}, false, "name_mismatch",
			[]string{"TLS: upstream's certificate is for DNS:id.example.com, not \"127.0.0.1\"", "upstream.tls.serverName"}},
		{"untrusted CA", sim.LeafSpec{}, true, "unknown_authority",
			[]string{"is not signed by a trusted authority (upstream.tls.caFile", "add the issuing CA"}},
		{"expired", sim.LeafSpec{NotBefore: past, NotAfter: past.Add(24 * time.Hour)}, false, "expired",
			[]string{"expired on " + past.Add(24*time.Hour).UTC().Format(time.RFC3339)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newTestPKI(t, "sidecar test CA")
			caFile := p.caFile
			if tc.untrust {
				caFile = newTestPKI(t, "another CA").caFile
			}
			h := start(t, sim.Config{TLS: p.leaf(t, tc.spec).ServerConfig(nil)}, tlsHealth+"upstream:\n  tls: {caFile: "+caFile+"}\n")
			h.waitDown()
			if r := h.do("GET", "/health", ""); r.status != 503 {
				t.Errorf("/health %d, want 503 (not ready)", r.status)
			}
			if got := h.ready(); got != 503 {
				t.Errorf("/readyz %d, want 503", got)
			}
			msg := h.waitPollError(tc.want[0])
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("last poll error %q lacks %q", msg, w)
				}
			}
			h.logs.waitForLine(t, func(m map[string]any) bool {
				e, _ := m["error"].(string)
				return m["msg"] == "cannot reach upstream" && strings.Contains(e, tc.want[0])
			})
			h.mint("PEO").expect(t, "mint", 503, "UPSTREAM_UNAVAILABLE")
			if n := h.sim.Stats().Mint + h.sim.Stats().Health; n != 0 {
				t.Errorf("upstream's HTTP server got %d requests", n)
			}
			if got := value(h.scrape(), "chittyid_sidecar_upstream_tls_handshakes_total", "outcome="+tc.outcome); got < 1 {
				t.Errorf("handshakes{outcome=%s} = %v, want at least 1", tc.outcome, got)
			}
		})
	}
}

// TestTLSCAFileReload: a CA bundle replaced on disk is picked up by the
// reload poll without a restart; a broken one is rejected and the last
// good settings stay in force.
func TestTLSCAFileReload(t *testing.T) {
	t.Parallel()
	right := newTestPKI(t, "the upstream's CA")
	wrong := newTestPKI(t, "some other CA")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, wrong.caFile, caFile)
	h := startFile(t, sim.Config{TLS: right.leaf(t, sim.LeafSpec{}).ServerConfig(nil)},
		tlsHealth+"reload: {interval: 100ms}\nupstream:\n  tls: {caFile: "+caFile+"}\n")
	h.waitDown()
	h.waitPollError("not signed by a trusted authority")

	copyFile(t, right.caFile, caFile) // no signal: the poll sees the new content
	waitGeneration(t, h, 2)
	h.waitState(fsm.Connected)
	h.mint("PEO").expect(t, "mint with the new CA", 200, "")

	if err := os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := h.reloadTo(mustRead(t, h.file), 0)
	if !strings.Contains(st.LastError, "upstream.tls.caFile") || st.Generation != 2 {
		t.Errorf("config status after a broken CA file: %+v", st)
	}
	if last, _ := h.configDoc()["lastError"].(string); !strings.Contains(last, "holds no PEM certificate") {
		t.Errorf("/health config.lastError = %q", last)
	}
	h.mint("PEO").expect(t, "mint with the last good CA", 200, "")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitGeneration(t *testing.T, h *harness, gen int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.watcher.Wait(ctx, func(s config.Status) bool { return s.Generation >= gen }); err != nil {
		t.Fatalf("generation %d: %v; status %+v", gen, err, h.watcher.Status())
	}
}

// TestTLSClientCertificate: an upstream that requires a client certificate
// works with upstream.tls.certFile/keyFile, whose expiry /health and the
// metrics show; without them the sidecar is not ready and says what to set.
func TestTLSClientCertificate(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t, "sidecar test CA")
	clients := newTestPKI(t, "client CA")
	serverCfg := p.leaf(t, sim.LeafSpec{}).ServerConfig(clients.ca)
	cert := clients.leaf(t, sim.LeafSpec{Names: []string{"sidecar.test"}, Client: true})
	certFile, keyFile, err := cert.WriteFiles(t.TempDir(), "client")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("with certFile and keyFile", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{TLS: serverCfg}, tlsHealth+
			fmt.Sprintf("upstream:\n  tls: {caFile: %s, certFile: %s, keyFile: %s}\n", p.caFile, certFile, keyFile))
		h.waitState(fsm.Connected)
		h.mint("PEO").expect(t, "mint", 200, "")
		tlsDoc, _ := h.upstreamDoc()["tls"].(map[string]any)
		want := cert.Cert.NotAfter.UTC().Format(time.RFC3339)
		if tlsDoc["enabled"] != true || tlsDoc["serverName"] != "127.0.0.1" || tlsDoc["minVersion"] != "1.2" ||
			tlsDoc["caFile"] != p.caFile || !strings.HasPrefix(fmt.Sprint(tlsDoc["clientCertNotAfter"]), want[:19]) {
			t.Errorf("/health upstream.tls = %v, want clientCertNotAfter %s", tlsDoc, want)
		}
		most := time.Until(cert.Cert.NotAfter).Seconds() // before the scrape, after it: the bounds of what it said
		left := value(h.scrape(), "chittyid_sidecar_upstream_tls_client_cert_expiry_seconds", "subject=CN=sidecar.test")
		if least := time.Until(cert.Cert.NotAfter).Seconds(); left < least || left > most {
			t.Errorf("client_cert_expiry_seconds = %v, want between %v and %v", left, least, most)
		}
	})
	t.Run("without", func(t *testing.T) {
		t.Parallel()
		h := start(t, sim.Config{TLS: serverCfg}, tlsHealth+"upstream:\n  tls: {caFile: "+p.caFile+"}\n")
		h.waitDown()
		if got := h.ready(); got != 503 {
			t.Errorf("/readyz %d, want 503", got)
		}
		msg := h.waitPollError("upstream refused the handshake")
		if !strings.Contains(msg, "upstream refused the handshake") || !strings.Contains(msg, "set upstream.tls.certFile and upstream.tls.keyFile") {
			t.Errorf("last poll error %q, want a refused handshake and the keys to set", msg)
		}
		h.mint("PEO").expect(t, "mint", 503, "UPSTREAM_UNAVAILABLE")
		if value(h.scrape(), "chittyid_sidecar_upstream_tls_client_cert_expiry_seconds") != -1 {
			t.Error("client_cert_expiry_seconds served without a client certificate")
		}
	})
}

// TestTLSWarmSidecarReusesConnections: 1,000 sequential mints through a
// warm sidecar open at most a handful of TLS connections, and a client
// rebuilt by a reload resumes the TLS session instead of a full handshake.
func TestTLSWarmSidecarReusesConnections(t *testing.T) {
	t.Parallel()
	serverCfg, caFile := tlsUpstream(t)
	extra := "health: {interval: 1h}\nupstream:\n  tls: {caFile: " + caFile + "}\n"
	h := startFile(t, sim.Config{TLS: serverCfg}, extra)
	for i := range 1000 {
		if r := h.mint("PEO"); r.status != 200 {
			t.Fatalf("mint %d: HTTP %d %s", i, r.status, r.raw)
		}
	}
	got := h.sim.Conns()
	if got.Accepted > 3 || got.Handshakes != got.Accepted || got.HandshakeErrors != 0 {
		t.Errorf("1000 sequential mints: %+v, want at most 3 connections, one handshake each", got)
	}
	if ok := value(h.scrape(), "chittyid_sidecar_upstream_tls_handshakes_total", "outcome=ok"); ok != float64(got.Handshakes) {
		t.Errorf("handshakes_total{outcome=ok} = %v, the simulator counted %d", ok, got.Handshakes)
	}

	// A reload that changes the upstream section rebuilds the client; its
	// first connection resumes the session.
	h.reloadTo(strings.Replace(mustRead(t, h.file), "upstream:\n", "upstream:\n  timeout: 4s\n", 1), 2)
	h.mint("PEO").expect(t, "mint after the reload", 200, "")
	if after := h.sim.Conns(); after.Handshakes != got.Handshakes+1 || after.Resumed != got.Resumed+1 {
		t.Errorf("after a reload: %+v (before %+v), want one more handshake, resumed", after, got)
	}
	if r := value(h.scrape(), "chittyid_sidecar_upstream_tls_resumed_total"); r < 1 {
		t.Errorf("resumed_total = %v, want at least 1", r)
	}
}
