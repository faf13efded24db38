package sidecar

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// The local API spends the upstream token for whoever calls it, so it
// answers only the app beside it: not a web page in a browser on the same
// machine (which can reach 127.0.0.1 too), not another host. These checks
// are docs/security.md's.

// Request header names in fasthttp's canonical form, read with
// PeekCanonical: Peek would copy and normalise the name on every request.
var (
	keySecFetchSite = []byte("Sec-Fetch-Site")
	keyOrigin       = []byte("Origin")
	siteNone        = []byte("none")
	siteSameOrigin  = []byte("same-origin")
	mediaJSON       = []byte(contentJSON)
)

// checkHost refuses a request whose Host header names neither this
// machine's loopback (127.0.0.0/8, ::1, localhost, any port) nor a host of
// security.allowedHosts. A web page that rebinds its own DNS name to
// 127.0.0.1 still sends that name as Host: this is what stops it.
func checkHost(ctx *fasthttp.RequestCtx, sec *config.Security) *apiError {
	return hostCheck(ctx, sec.AllowedHosts, nil, "nor listed in security.allowedHosts")
}

// checkOpsHost is checkHost for the operations listener (metrics.listen),
// whose list is metrics.allowedHosts, and which also accepts the IP
// address the request arrived at: what the kubelet and a scraper that
// connect to the pod's IP send. A page rebound by DNS sends a name, and
// one served from that address itself is another origin than the
// listener's, which the browser keeps from reading the answer.
func checkOpsHost(ctx *fasthttp.RequestCtx, m *config.Metrics) *apiError {
	return hostCheck(ctx, m.AllowedHosts, arrivedAt, "nor the address this listener was reached at, nor listed in metrics.allowedHosts")
}

// hostCheck refuses a request whose Host names neither loopback, nor a
// host of allowed, nor one also accepts (nil: none); refusal says what
// else it would have taken.
func hostCheck(ctx *fasthttp.RequestCtx, allowed []string, also func(*fasthttp.RequestCtx, []byte) bool, refusal string) *apiError {
	h := ctx.Request.Header.Host()
	if len(h) == 0 {
		return newAPIError(codeForbidden, "the request has no Host header")
	}
	name := hostName(h)
	if loopbackName(name) {
		return nil
	}
	for _, a := range allowed {
		if bytes.EqualFold(name, []byte(trimBrackets(a))) {
			return nil
		}
	}
	if also != nil && also(ctx, name) {
		return nil
	}
	return newAPIError(codeForbidden, "Host "+clipQuote(h)+" is neither a loopback name or address "+refusal)
}

// arrivedAt reports whether name is the IP address of the connection's
// own end: the address the request was sent to.
func arrivedAt(ctx *fasthttp.RequestCtx, name []byte) bool {
	local, ok := ctx.LocalAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	a, err := netip.ParseAddr(string(name))
	if err != nil {
		return false
	}
	l, ok := netip.AddrFromSlice(local.IP)
	return ok && l.Unmap() == a.Unmap()
}

// checkBrowser refuses what a browser sends on behalf of another site: a
// Sec-Fetch-Site other than none or same-origin, or an Origin that is not
// in security.allowedOrigins. Apps' own HTTP clients send neither header.
func checkBrowser(ctx *fasthttp.RequestCtx, sec *config.Security) *apiError {
	h := &ctx.Request.Header
	if site := h.PeekCanonical(keySecFetchSite); len(site) > 0 && !bytes.Equal(site, siteNone) && !bytes.Equal(site, siteSameOrigin) {
		return newAPIError(codeForbidden, "browser requests from another site are refused (Sec-Fetch-Site: "+clipQuote(site)+")")
	}
	origin := h.PeekCanonical(keyOrigin)
	if len(origin) == 0 {
		return nil
	}
	for _, o := range sec.AllowedOrigins {
		if string(origin) == o {
			return nil
		}
	}
	return newAPIError(codeForbidden, "Origin "+clipQuote(origin)+" is not listed in security.allowedOrigins")
}

// checkJSON refuses a POST body that is not declared application/json
// (parameters such as charset are allowed). Browsers send text/plain, form
// and multipart bodies cross-site without asking first; this closes that
// door even for a browser that sends neither Origin nor Sec-Fetch-Site.
func checkJSON(ctx *fasthttp.RequestCtx) *apiError {
	ct := ctx.Request.Header.ContentType()
	mt := ct
	if i := bytes.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	if bytes.EqualFold(bytes.TrimSpace(mt), mediaJSON) {
		return nil
	}
	if len(ct) == 0 {
		return newAPIError(codeUnsupportedMedia, "the body must be JSON sent with Content-Type: application/json; the request has no Content-Type")
	}
	return newAPIError(codeUnsupportedMedia, "the body must be JSON sent with Content-Type: application/json, got "+clipQuote(ct))
}

// hostName strips the port (and an IPv6 address's brackets) from a Host
// header's value.
func hostName(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := bytes.IndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[i+1:], ':') < 0 {
		return h[:i]
	}
	return h
}

// loopbackName reports whether a Host name is localhost or a loopback
// address (upstream.IsLoopbackHost), recognising the usual spellings
// without allocating.
func loopbackName(name []byte) bool {
	switch {
	case len(name) > 4 && string(name[:4]) == "127.":
		return dottedDigits(name[4:])
	case bytes.EqualFold(name, []byte("localhost")), string(name) == "::1":
		return true
	}
	// What is left is an IP address in another spelling (0:0::1,
	// ::ffff:127.0.0.1, a stray bracket): never a name without ':', '[' or
	// ']', whose string(name) would be an allocation on every request.
	return len(name) > 0 && len(name) <= 64 && bytes.ContainsAny(name, ":[]") && upstream.IsLoopbackHost(string(name))
}

// dottedDigits reports whether b is three dot-separated numbers of one to
// three digits each up to 255: the rest of a 127.x.y.z address.
func dottedDigits(b []byte) bool {
	parts, n, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n, digits = n*10+int(c-'0'), digits+1
			if digits > 3 || n > 255 {
				return false
			}
		case c == '.' && digits > 0:
			parts, n, digits = parts+1, 0, 0
		default:
			return false
		}
	}
	return parts == 2 && digits > 0
}

func trimBrackets(s string) string {
	if len(s) > 1 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}
