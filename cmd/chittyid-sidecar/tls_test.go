package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestCheckConfigTransportRefusals: check-config refuses the upstream
// settings docs/upstream.md, "Production upstream", lists, naming the key, with exit
// code 2, and never prints a proxy's credentials.
func TestCheckConfigTransportRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := sim.NewCA("check-config test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := ca.WriteFile(caFile); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		code       int
		want       []string
	}{
		{"http with a token", "upstream: {url: 'http://id.internal:8080/v1', token: s3cret-token}\n", 2,
			[]string{"upstream.url is plain http://", "upstream.allowInsecure"}},
		{"http with a token, allowed", "upstream: {url: 'http://id.internal:8080/v1', token: s3cret-token, allowInsecure: true}\n", 0,
			[]string{"ok:", "tls=off", "insecure=allowed"}},
		{"credentials in the URL", "upstream: {url: 'https://bob:s3cret-token@id.chitty.cc/v1'}\n", 2,
			[]string{"upstream.url must not hold credentials"}},
		{"query in the URL", "upstream: {url: 'https://id.chitty.cc/v1?x=1'}\n", 2, []string{"upstream.url must not have a query"}},
		{"tls with http", "upstream: {url: 'http://127.0.0.1:8080/v1', tls: {caFile: " + caFile + "}}\n", 2,
			[]string{"upstream.tls.caFile applies to https:// upstreams only"}},
		{"missing CA file", "upstream: {tls: {caFile: /nonexistent/ca.pem}}\n", 2, []string{"upstream.tls.caFile", "no such file"}},
		{"private CA and a proxy", "upstream: {proxy: 'http://bob:s3cret-token@proxy.corp:3128', tls: {caFile: " + caFile + "}}\n", 0,
			[]string{"ok:", "tls=caFile", "proxy=http://[redacted]@proxy.corp:3128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out := exitCode(t, "check-config", path)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d: %s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q: %s", w, out)
				}
			}
			if strings.Contains(out, "s3cret-token") {
				t.Errorf("output shows a secret: %s", out)
			}
		})
	}
}

func TestUpstreamSimTLSFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert", "x.crt"}, "--tls-cert and --tls-key go together"},
		{"client CA without cert", []string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert"},
		{"missing files", []string{"--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"}, "loading the TLS certificate"},
	} {
		code, out := exitCode(t, append([]string{"upstream-sim", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"}, tc.args...)...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, %q; want 2 and %q", tc.name, code, out, tc.want)
		}
	}
}

// TestDevTLS: dev --tls runs the pair over TLS with a client certificate,
// prints what it made, and removes it at exit.
func TestDevTLS(t *testing.T) {
	t.Parallel()
	dev := startBackground(t, "dev", "--tls", "--listen", "127.0.0.1:0")
	dev.await(t, &dev.out, "curl the simulator")
	text := dev.out.String()
	base := regexp.MustCompile(`sidecar: +(http://\S+)`).FindStringSubmatch(text)
	dir := regexp.MustCompile(`TLS: a throwaway CA and certificates in (\S+) \(removed at exit\)`).FindStringSubmatch(text)
	if base == nil || dir == nil || !strings.Contains(text, "upstream simulator: https://127.0.0.1:") {
		t.Fatalf("dev --tls printed:\n%s", text)
	}
	for _, f := range []string{"ca.pem", "simulator.crt", "simulator.key", "sidecar-client.crt", "sidecar-client.key"} {
		if _, err := os.Stat(filepath.Join(dir[1], f)); err != nil {
			t.Errorf("dev --tls made no %s: %v", f, err)
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Post(base[1]+"/v1/mint", "application/json", strings.NewReader(`{"entity":"PEO"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("mint through dev --tls: %d %s\nstderr: %s", resp.StatusCode, b, testout.Last(t, "stderr.txt", dev.errOut.String(), nil))
	}
	resp, err = hc.Get(base[1] + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Upstream struct {
			TLS struct {
				Enabled            bool       `json:"enabled"`
				ClientCertNotAfter *time.Time `json:"clientCertNotAfter"`
			} `json:"tls"`
		} `json:"upstream"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || !doc.Upstream.TLS.Enabled || doc.Upstream.TLS.ClientCertNotAfter == nil {
		t.Errorf("/health upstream.tls = %+v, %v", doc.Upstream.TLS, err)
	}
	hc.CloseIdleConnections()
	if err := dev.stop(); err != nil {
		t.Fatalf("dev --tls returned %v; stderr: %s", err, testout.Last(t, "stderr.txt", dev.errOut.String(), nil))
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("the certificate directory %s is still there after exit (%v)", dir[1], err)
	}
}
