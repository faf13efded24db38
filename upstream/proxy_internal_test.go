package upstream

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestChooseProxy: upstream.proxy wins over the environment; "" reads the
// environment with net/http's rules (lower-case first, NO_PROXY, loopback
// never proxied); a bad value is refused without showing credentials.
func TestChooseProxy(t *testing.T) {
	t.Parallel()
	const secretEnv = "http://user:s3cret@proxy.corp:3128"
	for _, tc := range []struct {
		name      string
		setting   ProxyURL
		target    string
		env       map[string]string
		want      string // redacted proxy, "" for direct
		source    string
		wantError string
	}{
		{"no proxy anywhere", "", "https://id.chitty.cc/v1", nil, "", "", ""},
		{"HTTPS_PROXY for https", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128"}, "http://proxy.corp:3128", "HTTPS_PROXY", ""},
		{"lower case wins", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "http://lower:2", "https_proxy", ""},
		{"HTTP_PROXY is not for https", "", "https://id.chitty.cc/v1", map[string]string{"HTTP_PROXY": "http://proxy.corp:3128"}, "", "", ""},
		{"HTTP_PROXY for http", "", "http://id.internal:8080", map[string]string{"HTTP_PROXY": "proxy.corp:3128"}, "http://proxy.corp:3128", "HTTP_PROXY", ""},
		{"NO_PROXY exempts the domain", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "chitty.cc"}, "", "", ""},
		{"NO_PROXY for another domain", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": "example.com,10.0.0.0/8"}, "http://proxy.corp:3128", "HTTPS_PROXY", ""},
		{"loopback is never proxied", "", "https://127.0.0.1:8443/v1", map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128"}, "", "", ""},
		{"credentials are redacted", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": secretEnv}, "http://[redacted]@proxy.corp:3128", "HTTPS_PROXY", ""},
		{"upstream.proxy wins over the environment", "http://cfg:8080", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "*"}, "http://cfg:8080", "upstream.proxy", ""},
		{"upstream.proxy is used for loopback too", "http://cfg:8080", "https://127.0.0.1/v1", nil, "http://cfg:8080", "upstream.proxy", ""},
		{"none ignores the environment", ProxyNone, "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128"}, "", "", ""},
		{"socks5 from the environment", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "socks5://u:pw@proxy.corp:1080"}, "", "",
			"environment variable HTTPS_PROXY names the proxy socks5://[redacted]@proxy.corp:1080: only http:// proxies"},
		{"a bad URL in the environment is ignored, as net/http does", "", "https://id.chitty.cc/v1", map[string]string{"HTTPS_PROXY": "http://u:pw@[::1%"}, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target, err := url.Parse(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			got, err := chooseProxy(tc.setting, target, lookup)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error = %v, want %q", err, tc.wantError)
				}
				if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the credentials: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			shown := ""
			if got.url != nil {
				shown = redactProxy(got.url)
			}
			if shown != tc.want || got.source != tc.source {
				t.Errorf("proxy = %q from %q, want %q from %q", shown, got.source, tc.want, tc.source)
			}
		})
	}
}

// TestProxyURLNeverPrintsCredentials: fmt, %#v and text encoders see the
// URL with its userinfo redacted.
func TestProxyURLNeverPrintsCredentials(t *testing.T) {
	t.Parallel()
	p := ProxyURL("http://alice:s3cret@proxy.corp:3128")
	txt, _ := p.MarshalText()
	for _, s := range []string{p.String(), fmt.Sprintf("%v %s %#v %+v", p, p, p, struct{ P ProxyURL }{p}), string(txt)} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "alice") {
			t.Errorf("printed %q", s)
		}
	}
	if p.String() != "http://[redacted]@proxy.corp:3128" {
		t.Errorf("String() = %q", p.String())
	}
	if err := ProxyURL("socks5://alice:s3cret@proxy:1080").validate(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("validate(socks5) = %v", err)
	}
}
