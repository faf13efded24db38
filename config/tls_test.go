package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// tlsFiles writes a CA bundle and a client certificate with its key and
// returns their paths.
func tlsFiles(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	ca, err := sim.NewCA("config test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(sim.LeafSpec{Names: []string{"sidecar"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	if err := ca.WriteFile(caFile); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = cert.WriteFiles(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	return caFile, certFile, keyFile
}

// TestParseUpstreamTransportRefusals: the settings of docs/upstream.md,
// "Production upstream", that are refused at load, each naming its key and where it
// came from, and those that are accepted.
func TestParseUpstreamTransportRefusals(t *testing.T) {
	t.Parallel()
	caFile, certFile, keyFile := tlsFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tokenFile := writeFile(t, t.TempDir(), "token", "tok\n")
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want []string // nil: accepted
	}{
		{"http with a token to another host", "upstream:\n  url: http://id.internal:8080/v1\n  token: tok\n", nil,
			[]string{`line 2: upstream.url is plain http:// to "id.internal:8080", which would send the token unencrypted: use https://, or set upstream.allowInsecure: true`}},
		{"http from the environment with a token", "upstream: {token: tok}\n", map[string]string{EnvServiceURL: "http://10.1.2.3/v1"},
			[]string{`env CHITTYID_SERVICE_URL: upstream.url is plain http:// to "10.1.2.3"`}},
		{"http with a token file to another host", "upstream:\n  url: http://id.internal/v1\n  tokenFile: " + tokenFile + "\n", nil,
			[]string{`line 2: upstream.url is plain http:// to "id.internal"`}},
		{"http with a token and allowInsecure", "upstream:\n  url: http://id.internal:8080/v1\n  token: tok\n  allowInsecure: true\n", nil, nil},
		{"http without a token", "upstream:\n  url: http://id.internal:8080/v1\n", nil, nil},
		{"http to 127.0.0.1", "upstream: {url: 'http://127.0.0.1:8080/v1', token: tok}\n", nil, nil},
		{"http to 127.9.9.9", "upstream: {url: 'http://127.9.9.9:8080/v1', token: tok}\n", nil, nil},
		{"http to [::1]", "upstream: {url: 'http://[::1]:8080/v1', token: tok}\n", nil, nil},
		{"http to localhost", "upstream: {url: 'http://LocalHost:8080/v1', token: tok}\n", nil, nil},
		{"http to a name under localhost", "upstream: {url: 'http://x.localhost:8080/v1', token: tok}\n", nil,
			[]string{`line 1: upstream.url is plain http:// to "x.localhost:8080"`}},
		{"userinfo in the URL", "upstream:\n  url: https://alice:s3cret@id.chitty.cc/v1\n", nil,
			[]string{`line 2: upstream.url must not hold credentials (user:password@): the token goes in upstream.tokenFile, got "https://id.chitty.cc/v1"`}},
		{"query in the URL", "upstream:\n  url: https://id.chitty.cc/v1?key=x\n", nil,
			[]string{`line 2: upstream.url must not have a query or a fragment, got "https://id.chitty.cc/v1?key=x"`}},
		{"tls with http", "upstream:\n  url: http://127.0.0.1:8080/v1\n  tls: {caFile: " + caFile + "}\n", nil,
			[]string{`line 3: upstream.tls.caFile applies to https:// upstreams only; upstream.url is "http://127.0.0.1:8080/v1"`}},
		{"tls 1.3 with http", "upstream:\n  url: http://127.0.0.1:8080/v1\n  tls: {minVersion: '1.3'}\n", nil,
			[]string{`line 3: upstream.tls.minVersion applies to https:// upstreams only`}},
		{"minVersion 1.1", "upstream:\n  tls:\n    minVersion: '1.1'\n", nil,
			[]string{`line 3: upstream.tls.minVersion must be "1.2" or "1.3", got "1.1"`}},
		{"certFile without keyFile", "upstream:\n  tls: {certFile: " + certFile + "}\n", nil,
			[]string{`upstream.tls.certFile and upstream.tls.keyFile must be set together`}},
		{"serverName with a scheme", "upstream:\n  tls: {serverName: 'https://id.chitty.cc'}\n", nil,
			[]string{`upstream.tls.serverName must be a host name or IP address without scheme or port, got "https://id.chitty.cc"`}},
		{"missing CA file", "upstream:\n  tls:\n    caFile: " + missing + "\n", nil,
			[]string{`line 3: upstream.tls.caFile "` + missing + `" cannot be read: no such file or directory`}},
		{"a key as CA file", "upstream:\n  tls:\n    caFile: " + keyFile + "\n", nil,
			[]string{`line 3: upstream.tls.caFile "` + keyFile + `" holds no PEM certificate`}},
		{"key and certificate swapped", "upstream:\n  tls: {certFile: " + keyFile + ", keyFile: " + certFile + "}\n", nil,
			[]string{`upstream.tls.certFile "` + keyFile + `" and upstream.tls.keyFile "` + certFile + `" are not a certificate and its key`}},
		{"allowInsecure with https", "upstream:\n  allowInsecure: true\n", nil,
			[]string{`upstream.allowInsecure only permits a plain http:// upstream.url; it never turns off certificate checks`}},
		{"socks proxy", "upstream:\n  proxy: socks5://alice:s3cret@proxy:1080\n", nil,
			[]string{`line 2: upstream.proxy must be "" (from the environment), "none" or an http:// proxy URL with a host, got "socks5://[redacted]@proxy:1080"`}},
		{"proxy without a host", "upstream: {proxy: 'http://'}\n", nil, []string{`upstream.proxy must be`}},
		{"good https with everything", "upstream:\n  proxy: http://alice:s3cret@proxy.corp:3128\n  tls: {caFile: " + caFile + ", certFile: " + certFile + ", keyFile: " + keyFile + ", serverName: id.chitty.cc, minVersion: '1.3'}\n", nil, nil},
		{"proxy none", "upstream: {proxy: none}\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), env(tc.env))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse refused:\n%v", err)
				}
				return
			}
			if c != nil {
				t.Errorf("Parse returned a config with errors")
			}
			checkErrs(t, err, tc.want)
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("an error shows a secret: %v", err)
			}
		})
	}
}

// TestParseReadsTLSFiles: Parse reads the TLS files into the config, so a
// config whose files changed compares unequal.
func TestParseReadsTLSFiles(t *testing.T) {
	t.Parallel()
	caFile, certFile, keyFile := tlsFiles(t)
	yaml := fmt.Sprintf("upstream:\n  tls: {caFile: %s, certFile: %s, keyFile: %s}\n", caFile, certFile, keyFile)
	c, err := Parse([]byte(yaml), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Upstream.TLS.Files
	if !strings.Contains(f.CA, "BEGIN CERTIFICATE") || !strings.Contains(f.Cert, "BEGIN CERTIFICATE") || !strings.Contains(f.Key.Reveal(), "PRIVATE KEY") {
		t.Fatalf("Files = %+v", f)
	}
	if s := fmt.Sprintf("%v %+v %#v", *c, *c, *c); strings.Contains(s, "PRIVATE KEY") {
		t.Errorf("printing the config shows the key: %s", s)
	}
	other, _, _ := tlsFiles(t)
	b, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c2, err := Parse([]byte(yaml), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Upstream == c.Upstream {
		t.Error("a config with another CA bundle compares equal")
	}
}

// TestWatcherReloadsOnTLSFileChange: replacing the CA bundle on disk alone
// reloads; a broken one is rejected, named in the status, and the running
// config kept.
func TestWatcherReloadsOnTLSFileChange(t *testing.T) {
	t.Parallel()
	caFile, _, _ := tlsFiles(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	mustWrite(t, path, "upstream:\n  tls: {caFile: "+caFile+"}\n")
	w := newLoaded(t, path)
	var r recorder
	if w.Check(r.apply, false) {
		t.Fatal("Check reloaded an unchanged file")
	}
	other, _, _ := tlsFiles(t)
	b, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, caFile, string(b))
	if !w.Check(r.apply, false) || r.last().Upstream.TLS.Files.CA != string(b) {
		t.Fatal("a replaced CA file was not reloaded")
	}
	mustWrite(t, caFile, "not a certificate\n")
	if w.Check(r.apply, false) {
		t.Fatal("a broken CA file was applied")
	}
	if s := w.Status(); !strings.Contains(s.LastError, "line 2: upstream.tls.caFile") || !strings.Contains(s.LastError, "holds no PEM certificate") || s.Generation != 2 {
		t.Errorf("status after a broken CA file: %+v", s)
	}
}

// TestParseChecksFleetTLSFiles: the fleet tier's TLS files are checked
// when the config is read (check-config, a reload), not first when the
// tier starts, each problem naming its key and where it was set.
func TestParseChecksFleetTLSFiles(t *testing.T) {
	t.Parallel()
	caFile, certFile, keyFile := tlsFiles(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := "fleet:\n  redis:\n    addrs: [\"127.0.0.1:6379\"]\n    tls: {enabled: true, %s}\n"
	if _, err := Parse(fmt.Appendf(nil, section, fmt.Sprintf("caFile: %s, certFile: %s, keyFile: %s", caFile, certFile, keyFile)), noEnv); err != nil {
		t.Fatalf("good files refused: %v", err)
	}
	for _, tc := range []struct{ name, tls, want string }{
		{"missing CA", "caFile: /nonexistent/ca.pem", `line 4: fleet.redis.tls.caFile "/nonexistent/ca.pem" cannot be read: no such file or directory`},
		{"CA without a certificate", "caFile: " + notPEM, `line 4: fleet.redis.tls.caFile "` + notPEM + `" holds no PEM certificate`},
		{"key of another certificate", fmt.Sprintf("certFile: %s, keyFile: %s", certFile, notPEM), "line 4: fleet.redis.tls.certFile and fleet.redis.tls.keyFile do not load as a key pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(fmt.Appendf(nil, section, tc.tls), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
