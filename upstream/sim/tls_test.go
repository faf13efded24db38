package sim

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsClient is a net/http client that trusts ca, presents cert (if not
// nil) and resumes sessions from its own cache.
func tlsClient(t testing.TB, ca *CA, cert *Leaf) *client {
	cfg := &tls.Config{RootCAs: ca.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// newPKI makes a CA and a server certificate for 127.0.0.1 and localhost.
func newPKI(t testing.TB) (*CA, *Leaf) {
	t.Helper()
	ca, err := NewCA("sim test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(LeafSpec{Names: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	return ca, srv
}

func TestTLSServesAndCountsHandshakes(t *testing.T) {
	t.Parallel()
	ca, srv := newPKI(t)
	s := start(t, Config{TLS: srv.ServerConfig(nil)})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL() = %q, want https", s.URL())
	}
	c := tlsClient(t, ca, nil)
	for range 3 {
		c.mint(s, "PEO")
	}
	if got := s.Conns(); got.Accepted != 1 || got.Handshakes != 1 || got.Resumed != 0 || got.HandshakeErrors != 0 {
		t.Fatalf("after three mints on one connection: %+v, want one connection and one full handshake", got)
	}
	// A new connection from the same client resumes the session.
	c.hc.Transport.(*http.Transport).CloseIdleConnections()
	c.mint(s, "PEO")
	if got := s.Conns(); got.Accepted != 2 || got.Handshakes != 2 || got.Resumed != 1 {
		t.Fatalf("after a reconnect: %+v, want a second, resumed handshake", got)
	}
	// A client that does not trust the CA fails its handshake; the control
	// API reports it and stays plain HTTP.
	if _, err := newClient(t).try("GET", s.URL()+"/health", nil); err == nil {
		t.Fatal("a client without the CA got an answer")
	}
	var got ConnStats
	newClient(t).do("GET", s.ControlURL()+"/sim/conns", nil).decode(t, &got)
	if got.Accepted != 3 || got.HandshakeErrors != 1 {
		t.Errorf("GET /sim/conns = %+v, want 3 accepted, 1 failed handshake", got)
	}
	s.Reset()
	if got := s.Conns(); got.Accepted != 0 || got.Handshakes != 0 || got.HandshakeErrors != 0 {
		t.Errorf("after Reset: %+v, want zeroes", got)
	}
}

func TestTLSRequiresClientCertificate(t *testing.T) {
	t.Parallel()
	ca, srv := newPKI(t)
	clientCA, err := NewCA("sim test client CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := clientCA.Issue(LeafSpec{Names: []string{"sidecar"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	// The same files upstream-sim --tls-cert/--tls-key/--tls-client-ca reads.
	dir := t.TempDir()
	certFile, keyFile, err := srv.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	clientCAFile := filepath.Join(dir, "client-ca.crt")
	if err := clientCA.WriteFile(clientCAFile); err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerTLS(certFile, keyFile, clientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{TLS: cfg})
	tlsClient(t, ca, cert).mint(s, "PEO")
	if _, err := tlsClient(t, ca, nil).try("GET", s.URL()+"/health", nil); err == nil {
		t.Fatal("a client without a certificate got an answer")
	}
	// With TLS 1.3 the client is done with its side of the handshake before
	// the server refuses it: the server's count may come a moment later.
	deadline := time.Now().Add(5 * time.Second)
	got := s.Conns()
	for got.HandshakeErrors == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		got = s.Conns()
	}
	if got.Handshakes != 1 || got.HandshakeErrors != 1 {
		t.Errorf("Conns() = %+v, want one good and one refused handshake", got)
	}
}

func TestServerTLSErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, srv := newPKI(t)
	certFile, keyFile, err := srv.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key, clientCA, want string }{
		{"missing key", certFile, filepath.Join(dir, "nope.key"), "", "loading the TLS certificate"},
		{"client CA is not PEM", certFile, keyFile, keyFile, "holds no PEM certificate"},
		{"client CA missing", certFile, keyFile, filepath.Join(dir, "nope.crt"), "reading the client CA file"},
	} {
		if _, err := ServerTLS(tc.cert, tc.key, tc.clientCA); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ServerTLS error = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Start(Config{TLS: &tls.Config{}}, "", ""); err == nil {
		t.Error("Start with a TLS config without a certificate succeeded")
	}
}
