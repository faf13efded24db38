package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/upstream"
)

// Security is the security section: who may call the local API, which
// spends the upstream token for whoever calls it. Only the app beside the
// sidecar may: not a web page in a browser on the same machine, not another
// host. docs/security.md says what each check refuses and why.
type Security struct {
	// AllowRemote lets listen be an address other than loopback
	// (127.0.0.0/8, ::1, localhost). Anything that reaches that address can
	// then spend the upstream token. Default false.
	AllowRemote bool `yaml:"allowRemote"`
	// AllowedHosts are host names (or IP addresses), besides the loopback
	// names and addresses, that a request's Host header may carry; the port
	// is not compared, case is ignored. Any other Host gets 403 FORBIDDEN:
	// that is what defeats DNS rebinding. Reloadable. Default none.
	AllowedHosts []string `yaml:"allowedHosts"`
	// AllowedOrigins are browser origins ("https://app.example",
	// scheme://host[:port], compared exactly) whose requests may mint and
	// validate. Any other Origin, and a Sec-Fetch-Site other than none or
	// same-origin, gets 403 FORBIDDEN on those routes. Non-browser clients
	// send neither header. Reloadable. Default none.
	AllowedOrigins []string `yaml:"allowedOrigins"`
}

func (s Security) validate(listen string) error {
	var errs []error
	if !s.AllowRemote && validateAddr("listen", listen) == nil && !isLoopbackAddr(listen) {
		errs = append(errs, field.Errorf("listen", "%q is not a loopback address (127.0.0.0/8, ::1, localhost): anything that reaches it could spend the upstream token; set security.allowRemote: true to allow it", listen).With("security.allowRemote"))
	}
	errs = append(errs, validateHosts("security.allowedHosts", s.AllowedHosts)...)
	for i, o := range s.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, field.Errorf(fmt.Sprintf("security.allowedOrigins[%d]", i), "%v, got %q", err, o))
		}
	}
	return errors.Join(errs...)
}

// validateHosts checks a list of Host names (security.allowedHosts,
// metrics.allowedHosts) named key.
func validateHosts(key string, hosts []string) []error {
	var errs []error
	for i, h := range hosts {
		if h == "" || strings.ContainsAny(h, "/:@ \t") && !isIPv6Literal(h) {
			errs = append(errs, field.Errorf(fmt.Sprintf("%s[%d]", key, i), "must be a host name or IP address without scheme, port or path, got %q", h))
		}
	}
	return errs
}

func isIPv6Literal(h string) bool {
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.Is6()
}

// checkOrigin accepts what a browser sends as Origin: scheme://host[:port].
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	switch {
	case err != nil || u.Host == "" || u.User != nil:
		return errors.New("must be an origin such as https://app.example")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with http:// or https://")
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("must be scheme://host[:port] with no path")
	}
	return nil
}

// isLoopbackAddr reports whether the host of addr (host:port) is loopback:
// an address in 127.0.0.0/8, ::1, or the name localhost.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && upstream.IsLoopbackHost(host)
}
