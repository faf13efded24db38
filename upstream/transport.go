package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// HandshakeObserver, if the Options.Observer also implements it, is told
// about every TLS handshake with upstream, for metrics. It must be fast and
// safe for concurrent use.
type HandshakeObserver interface {
	// Handshake reports one handshake: its outcome (HandshakeOK or a
	// failure, see HandshakeOutcomes) and, if it succeeded, whether it
	// resumed an earlier session.
	Handshake(outcome string, resumed bool)
}

type noHandshakes struct{}

func (noHandshakes) Handshake(string, bool) {}

// Sessions is a TLS session cache that outlives Clients
// (Options.Sessions): a Client rebuilt on a reload resumes the sessions of
// the one before, so a warm sidecar does no full handshake after a reload
// either. It keeps the sessions of one set of trust settings only (CA
// bundle, client certificate, server name, minimum version): a Client
// with others starts it afresh, as a resumed session skips the certificate
// checks the new settings would make. Safe for concurrent use.
type Sessions struct {
	// mu guards the fields below.
	mu    sync.Mutex
	key   string
	cache tls.ClientSessionCache
}

// NewSessions returns an empty session cache.
func NewSessions() *Sessions { return &Sessions{} }

// sessionCacheSize bounds the cache: there is one upstream, so a handful
// of server names at most.
const sessionCacheSize = 8

// forKey returns the cache for the settings key, a new one if they changed.
func (s *Sessions) forKey(key string) tls.ClientSessionCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache == nil || s.key != key {
		s.key, s.cache = key, tls.NewLRUClientSessionCache(sessionCacheSize)
	}
	return s.cache
}

// transport opens the client's connections (HostClient.DialTimeout): a TCP
// connection to upstream, or a CONNECT tunnel through a proxy, and for an
// https upstream the TLS handshake on it. fasthttp does no handshake of its
// own on a connection that already is a *tls.Conn, so the handshake is
// ours: bounded by the dial timeout, counted, its failure explained.
type transport struct {
	proxy   proxyChoice // url nil: direct
	tls     *tls.Config
	info    TLSInfo       // the TLS settings, for Client.TLS and for explaining failures
	timeout time.Duration // when fasthttp gives none
	obs     HandshakeObserver
	alerts  alertLog
}

// dial connects to addr (upstream's host:port) within timeout.
func (t *transport) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = t.timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := t.connect(ctx, addr)
	if err != nil || t.tls == nil {
		return conn, err
	}
	tc := tls.Client(conn, t.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, t.handshakeFailed(err)
	}
	t.obs.Handshake(HandshakeOK, tc.ConnectionState().DidResume)
	return &alertConn{Conn: tc, alerts: &t.alerts}, nil
}

// handshakeFailed explains a failed handshake and counts it.
func (t *transport) handshakeFailed(err error) *TLSError {
	te := t.info.explain(err, t.timeout)
	t.obs.Handshake(te.Kind, false)
	return te
}

// refusedAfterHandshake returns, for err of a request sent on the
// connection from local, the TLSError of the handshake alert upstream sent
// with its first read, nil if there was none. Upstream then refused the
// handshake after the client's side of it was done (TLS 1.3, client
// certificates): the request was never processed. Other alerts may come
// after it was, and stay what fasthttp says (the connection closed).
func (t *transport) refusedAfterHandshake(err error, local net.Addr) *TLSError {
	if t.tls == nil || isConnectError(err) {
		return nil
	}
	alert := t.alerts.take(local)
	if alert == nil || !handshakeAlert(remoteAlert(alert)) {
		return nil
	}
	return t.handshakeFailed(alert)
}

// alertConn remembers a TLS alert upstream sends on the connection. A TLS
// 1.3 server refuses a client certificate only after the client's side of
// the handshake is done, so the alert comes with the first read of the
// answer, and fasthttp reports any error there as "server closed
// connection". The client looks the alert up by the connection's local
// address (Client.do). fasthttp takes the connection as already TLS, as
// it has a Handshake method.
type alertConn struct {
	*tls.Conn
	alerts *alertLog
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && remoteAlert(err) != 0 {
		c.alerts.put(c.LocalAddr().String(), err)
	}
	return n, err
}

// alertLog holds the last alerts received, by connection local address.
type alertLog struct {
	// mu guards byAddr.
	mu     sync.Mutex
	byAddr map[string]error
}

// maxAlerts bounds the log: an alert nobody asks about (one on an idle
// connection) must not accumulate.
const maxAlerts = 16

func (l *alertLog) put(addr string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddr == nil {
		l.byAddr = make(map[string]error)
	}
	if len(l.byAddr) >= maxAlerts {
		clear(l.byAddr)
	}
	l.byAddr[addr] = err
}

// take returns and forgets the alert received on the connection from
// addr, nil if none.
func (l *alertLog) take(addr net.Addr) error {
	if addr == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := addr.String()
	err := l.byAddr[k]
	delete(l.byAddr, k)
	return err
}

// connect opens a TCP connection to addr, directly or through the proxy.
func (t *transport) connect(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	if t.proxy.url == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	conn, err := d.DialContext(ctx, "tcp", hostPort(t.proxy.url, "80"))
	if err != nil {
		return nil, t.proxyErr(addr, err)
	}
	tunnel, err := t.tunnel(ctx, conn, addr)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tunnel, nil
}

// tunnel asks the proxy on conn for a CONNECT tunnel to addr.
func (t *transport) tunnel(ctx context.Context, conn net.Conn, addr string) (net.Conn, error) {
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			return nil, t.proxyErr(addr, err)
		}
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if auth := proxyAuthorization(t.proxy.url); auth != "" {
		req.Header.Set("Proxy-Authorization", auth)
	}
	if err := req.Write(conn); err != nil {
		return nil, t.proxyErr(addr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, t.proxyErr(addr, err)
	}
	_ = resp.Body.Close() // a 2xx answer to CONNECT has no body
	if resp.StatusCode/100 != 2 {
		e := t.proxyErr(addr, nil)
		e.Status, e.StatusCode = resp.Status, resp.StatusCode
		return nil, e
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, t.proxyErr(addr, err)
	}
	if br.Buffered() > 0 { // bytes of the tunnel read along with the answer
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// proxyErr is a failure to reach target through the proxy.
func (t *transport) proxyErr(target string, err error) *ProxyError {
	return &ProxyError{Proxy: redactProxy(t.proxy.url), Target: target, Err: err}
}

// bufferedConn is a connection whose first bytes were read into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ProxyError is a failure to reach upstream through the egress proxy: the
// proxy could not be reached, or it refused the CONNECT tunnel (Status).
// Proxy is the proxy's URL with any credentials replaced by [redacted].
type ProxyError struct {
	Proxy      string
	Target     string
	Status     string // the proxy's answer to CONNECT, if it answered
	StatusCode int
	Err        error
}

func (e *ProxyError) Error() string {
	if e.Status != "" {
		hint := ""
		if e.StatusCode == http.StatusProxyAuthRequired {
			hint = " (check the credentials in the proxy URL)"
		}
		return fmt.Sprintf("proxy %s refused the tunnel to %s: %s%s", e.Proxy, e.Target, e.Status, hint)
	}
	return fmt.Sprintf("reaching %s through proxy %s: %v", e.Target, e.Proxy, e.Err)
}

func (e *ProxyError) Unwrap() error { return e.Err }

// proxyAuthorization is the Proxy-Authorization header for the proxy
// URL's userinfo, "" without.
func proxyAuthorization(u *url.URL) string {
	if u.User == nil {
		return ""
	}
	cred := u.User.Username()
	if p, ok := u.User.Password(); ok {
		cred += ":" + p
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
}

// isConnectError reports whether err means no request reached upstream's
// HTTP server: the proxy failed, or the TLS handshake did (including an
// alert upstream sent on the first read, which is how a TLS 1.3 server
// refuses a client certificate).
func isConnectError(err error) bool {
	var te *TLSError
	var pe *ProxyError
	return errors.As(err, &te) || errors.As(err, &pe)
}
