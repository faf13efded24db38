package upstream_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// pki is a CA, written to a file for upstream.tls.caFile, and a server
// certificate it issued for the simulator's address.
type pki struct {
	ca     *sim.CA
	caFile string
	server *sim.Leaf
}

func newPKI(t *testing.T, spec sim.LeafSpec) pki {
	t.Helper()
	ca, err := sim.NewCA("upstream test CA")
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Names) == 0 {
		spec.Names = []string{"127.0.0.1", "localhost"}
	}
	srv, err := ca.Issue(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{ca: ca, caFile: filepath.Join(t.TempDir(), "ca.pem"), server: srv}
	if err := ca.WriteFile(p.caFile); err != nil {
		t.Fatal(err)
	}
	return p
}

// handshakes counts what a HandshakeObserver hears.
type handshakes struct {
	mu       sync.Mutex
	outcomes map[string]int
	resumed  int
}

func (h *handshakes) Attempt(string, string, time.Duration) {}
func (h *handshakes) Retry(string)                          {}
func (h *handshakes) Handshake(outcome string, resumed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.outcomes == nil {
		h.outcomes = map[string]int{}
	}
	h.outcomes[outcome]++
	if resumed {
		h.resumed++
	}
}

func (h *handshakes) count(outcome string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outcomes[outcome]
}

// newClient builds a client for cfg with its own breaker.
func newClient(t *testing.T, cfg upstream.Config, opts upstream.Options) *upstream.Client {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts.Version = "test"
	c, err := upstream.New(cfg, chittyid.FormatOfficial, upstream.NewBreaker(cfg.Breaker, nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestClientOverTLS: every call works against an https upstream (it used
// to fail before connecting: a bare request path is scheme http, which a
// TLS HostClient refuses), and a warm client keeps one connection.
func TestClientOverTLS(t *testing.T) {
	t.Parallel()
	for _, d := range []upstream.Dialect{upstream.DialectClientV1, upstream.DialectWorker} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			p := newPKI(t, sim.LeafSpec{})
			s, c := setup(t, sim.Config{Dialect: d, TLS: p.server.ServerConfig(nil)}, func(cfg *upstream.Config) { cfg.TLS.CAFile = p.caFile })
			if info := c.TLS(); !info.Enabled || info.ServerName != "127.0.0.1" || info.MinVersion != "1.2" || info.CAFile != p.caFile || info.ClientCert != nil {
				t.Errorf("TLS() = %+v", info)
			}
			if err := c.Health(ctxFor(t, time.Second)); err != nil {
				t.Fatalf("Health: %v", err)
			}
			m, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if v, err := c.Validate(ctxFor(t, time.Second), m.ID, upstream.CallInfo{}); err != nil || !v.Valid {
				t.Fatalf("Validate(minted) = %+v, %v", v, err)
			}
			ids, err := c.MintBatch(ctxFor(t, 2*time.Second), []upstream.MintRequest{{Entity: chittyid.EntityPLACE}, {Entity: chittyid.EntityEVNT}}, "", upstream.CallInfo{})
			if err != nil || len(ids) != 2 {
				t.Fatalf("MintBatch = %v, %v", ids, err)
			}
			for range 50 {
				if _, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{}); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.Conns(); got.Accepted > 2 || got.Handshakes != got.Accepted || got.HandshakeErrors != 0 {
				t.Errorf("after 54 sequential calls: %+v, want the connection kept alive", got)
			}
		})
	}
}

// TestClientTLSFailuresExplained: each kind of TLS failure is refused and
// explained in words that name what to change.
func TestClientTLSFailuresExplained(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-48 * time.Hour)
	for _, tc := range []struct {
		name     string
		spec     sim.LeafSpec
		untrust  bool // give the client another CA
		clientCA bool // the server requires a client certificate
		kind     string
		want     []string
	}{
		{"another name", sim.LeafSpec{Names: []string{"id.example.com", "10.9.8.7"}}, false, false,
			upstream.HandshakeNameMismatch, []string{"is for DNS:id.example.com, IP:10.9.8.7", `not "127.0.0.1"`, "upstream.tls.serverName"}},
		{"untrusted CA", sim.LeafSpec{}, true, false,
			upstream.HandshakeUnknownAuthority, []string{"not signed by a trusted authority", "upstream.tls.caFile", `issued by "CN=upstream test CA`}},
		{"expired", sim.LeafSpec{NotBefore: past, NotAfter: past.Add(time.Hour)}, false, false,
			upstream.HandshakeExpired, []string{"expired on " + past.Add(time.Hour).UTC().Format(time.RFC3339)}},
		{"client certificate required", sim.LeafSpec{}, false, true,
			upstream.HandshakeRefused, []string{"upstream refused the handshake", "set upstream.tls.certFile and upstream.tls.keyFile"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPKI(t, tc.spec)
			scfg := sim.Config{TLS: p.server.ServerConfig(nil)}
			if tc.clientCA {
				scfg.TLS = p.server.ServerConfig(p.ca)
			}
			caFile := p.caFile
			if tc.untrust {
				caFile = newPKI(t, sim.LeafSpec{}).caFile
			}
			obs := &handshakes{}
			s, cfg := startSim(t, scfg)
			cfg.Timeout, cfg.TLS.CAFile = time.Second, caFile
			cfg.Retry = upstream.RetryConfig{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
			c := newClient(t, cfg, upstream.Options{Observer: obs})

			err := c.Health(ctxFor(t, 2*time.Second))
			var te *upstream.TLSError
			if !errors.As(err, &te) || te.Kind != tc.kind {
				t.Fatalf("Health error = %v, want a TLSError of kind %s", err, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Health error %q lacks %q", err, w)
				}
			}
			if tc.kind == upstream.HandshakeUnknownAuthority {
				// The certificate that could not be verified is the
				// server's, not the CA it sent along.
				if w := fmt.Sprintf("upstream's certificate %q", p.server.Cert.Subject.String()); !strings.Contains(err.Error(), w) {
					t.Errorf("Health error %q does not name the server's certificate (%s)", err, w)
				}
			}
			// A mint never reached upstream's HTTP server: it counts as
			// "cannot connect", so it is retried like a refused connection.
			_, err = c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
			if !errors.Is(err, upstream.ErrUnavailable) || !errors.As(err, &te) || upstream.AttemptsOf(err) != 2 {
				t.Errorf("Mint error = %v (attempts %d), want unavailable after 2 attempts with a TLSError", err, upstream.AttemptsOf(err))
			}
			if st := s.Stats(); st.Mint != 0 || st.Health != 0 {
				t.Errorf("upstream's HTTP server saw %+v, want nothing", st)
			}
			if n := obs.count(tc.kind); n != 3 {
				t.Errorf("handshakes of outcome %s = %d, want 3 (health, two mint attempts): %v", tc.kind, n, obs.outcomes)
			}
		})
	}
}

// TestClientMutualTLS: an upstream that requires a client certificate
// accepts the one in certFile/keyFile, and TLS() reports its expiry.
func TestClientMutualTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, sim.LeafSpec{})
	cert, err := p.ca.Issue(sim.LeafSpec{Names: []string{"sidecar.test"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := cert.WriteFiles(t.TempDir(), "client")
	if err != nil {
		t.Fatal(err)
	}
	_, c := setup(t, sim.Config{TLS: p.server.ServerConfig(p.ca)}, func(cfg *upstream.Config) {
		cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile = p.caFile, certFile, keyFile
	})
	if _, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{}); err != nil {
		t.Fatalf("Mint with a client certificate: %v", err)
	}
	if got := c.TLS().ClientCertNotAfter(); !got.Equal(cert.Cert.NotAfter) {
		t.Errorf("ClientCertNotAfter = %v, want %v", got, cert.Cert.NotAfter)
	}
}

// TestSessionsResumeAcrossClients: a client rebuilt with the same
// Sessions resumes the session of the one before instead of a full
// handshake; one with another CA bundle does not.
func TestSessionsResumeAcrossClients(t *testing.T) {
	t.Parallel()
	p := newPKI(t, sim.LeafSpec{})
	s, cfg := startSim(t, sim.Config{TLS: p.server.ServerConfig(nil)})
	cfg.TLS.CAFile = p.caFile
	sessions := upstream.NewSessions()
	obs := &handshakes{}
	mint := func(c *upstream.Client) {
		t.Helper()
		if _, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	first := newClient(t, cfg, upstream.Options{Sessions: sessions, Observer: obs})
	mint(first)
	first.Close()
	mint(newClient(t, cfg, upstream.Options{Sessions: sessions, Observer: obs}))
	if got := s.Conns(); got.Handshakes != 2 || got.Resumed != 1 || obs.resumed != 1 {
		t.Fatalf("two clients sharing Sessions: %+v (observer: %d resumed), want the second handshake resumed", got, obs.resumed)
	}
	// The same CA in a new bundle file with a second certificate: the
	// trust settings changed, so the session is not resumed.
	both := filepath.Join(t.TempDir(), "both.pem")
	if err := os.WriteFile(both, append(append([]byte{}, p.ca.CertPEM...), newPKI(t, sim.LeafSpec{}).ca.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.TLS.CAFile = both
	mint(newClient(t, cfg, upstream.Options{Sessions: sessions, Observer: obs}))
	if got := s.Conns(); got.Handshakes != 3 || got.Resumed != 1 {
		t.Errorf("a client with another CA bundle: %+v, want a full handshake", got)
	}
}

func TestTLSConfigReadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newPKI(t, sim.LeafSpec{})
	certFile, keyFile, err := p.server.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.ca.Issue(sim.LeafSpec{Names: []string{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := other.WriteFiles(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		tls  upstream.TLSConfig
		want string
	}{
		{"good", upstream.TLSConfig{CAFile: p.caFile, CertFile: certFile, KeyFile: keyFile}, ""},
		{"missing CA file", upstream.TLSConfig{CAFile: missing}, `upstream.tls.caFile "` + missing + `" cannot be read: no such file or directory`},
		{"CA file is a key", upstream.TLSConfig{CAFile: keyFile}, `upstream.tls.caFile "` + keyFile + `" holds no PEM certificate`},
		{"key of another certificate", upstream.TLSConfig{CertFile: certFile, KeyFile: otherKey}, "upstream.tls.certFile " + `"` + certFile + `" and upstream.tls.keyFile "` + otherKey + `" are not a certificate and its key`},
		{"missing key", upstream.TLSConfig{CertFile: certFile, KeyFile: missing}, "upstream.tls.keyFile \"" + missing + "\" cannot be read"},
	} {
		err := tc.tls.ReadFiles()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: ReadFiles() = %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error shows the key: %v", tc.name, err)
		}
	}
}
