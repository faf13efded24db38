package upstream

import (
	"fmt"
	"net"
	"net/url"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"golang.org/x/net/http/httpproxy"
)

// ProxyNone is upstream.proxy's word for connecting directly, whatever the
// environment says.
const ProxyNone = "none"

// ProxyURL is upstream.proxy: "" (take the proxy from the environment),
// "none", or an http:// proxy URL whose userinfo, if any, are the proxy's
// credentials. It never prints them: fmt, slog, JSON and YAML see the URL
// with "[redacted]" in their place.
type ProxyURL string

// String returns the setting with any credentials redacted.
func (p ProxyURL) String() string {
	switch p {
	case "", ProxyNone:
		return string(p)
	}
	u, err := url.Parse(string(p))
	if err != nil {
		return "(unparsable)"
	}
	return redactProxy(u)
}

// GoString keeps %#v from printing the credentials.
func (p ProxyURL) GoString() string { return p.String() }

// MarshalText keeps encoders from writing the credentials.
func (p ProxyURL) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// validate checks the setting.
func (p ProxyURL) validate() error {
	if p == "" || p == ProxyNone {
		return nil
	}
	u, err := url.Parse(string(p))
	if err != nil || u.Scheme != "http" || u.Host == "" || u.Hostname() == "" {
		return field.Errorf("upstream.proxy", `must be "" (from the environment), "none" or an http:// proxy URL with a host, got %q`, p.String())
	}
	return nil
}

// redactProxy is the proxy's scheme and address, with "[redacted]@" in
// place of credentials it had.
func redactProxy(u *url.URL) string {
	cred := ""
	if u.User != nil {
		cred = "[redacted]@"
	}
	return u.Scheme + "://" + cred + u.Host
}

// proxyChoice is the proxy a client goes through, nil for none, and where
// that came from: "upstream.proxy" or the environment variable's name.
type proxyChoice struct {
	url    *url.URL
	source string
}

// chooseProxy picks the proxy for target: upstream.proxy's URL, none for
// "none", or for "" the environment with the meaning Go's net/http gives
// it (golang.org/x/net/http/httpproxy): HTTPS_PROXY for an https upstream,
// HTTP_PROXY for http (the lower-case names first), NO_PROXY exempting
// hosts, and loopback never proxied. lookupEnv reads the environment.
func chooseProxy(setting ProxyURL, target *url.URL, lookupEnv func(string) (string, bool)) (proxyChoice, error) {
	switch setting {
	case ProxyNone:
		return proxyChoice{}, nil
	case "":
	default:
		u, err := url.Parse(string(setting))
		if err != nil {
			return proxyChoice{}, fmt.Errorf("upstream.proxy %q does not parse", setting.String())
		}
		return proxyChoice{url: u, source: "upstream.proxy"}, nil
	}
	env := func(names ...string) (string, string) {
		for _, n := range names {
			if v, ok := lookupEnv(n); ok && v != "" {
				return v, n
			}
		}
		return "", ""
	}
	httpsProxy, httpsName := env("https_proxy", "HTTPS_PROXY")
	httpProxy, httpName := env("http_proxy", "HTTP_PROXY")
	noProxy, _ := env("no_proxy", "NO_PROXY")
	name := httpName
	if target.Scheme == "https" {
		name = httpsName
	}
	// A value that does not parse is ignored, as net/http ignores it.
	cfg := httpproxy.Config{HTTPProxy: httpProxy, HTTPSProxy: httpsProxy, NoProxy: noProxy}
	u, err := cfg.ProxyFunc()(target)
	if err != nil {
		// Not reached without CGI; httpproxy's messages may quote the
		// value, credentials and all.
		return proxyChoice{}, fmt.Errorf("choosing a proxy from %s failed", name)
	}
	if u == nil {
		return proxyChoice{}, nil
	}
	if u.Scheme != "http" || u.Hostname() == "" {
		return proxyChoice{}, fmt.Errorf("environment variable %s names the proxy %s: only http:// proxies (reached with CONNECT) are supported", name, redactProxy(u))
	}
	return proxyChoice{url: u, source: name}, nil
}

// hostPort is u's host:port, with port when the URL has none.
func hostPort(u *url.URL, port string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), port)
}
