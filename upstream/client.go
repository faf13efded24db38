package upstream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
	"github.com/valyala/fasthttp"
)

// Client calls the ChittyID service in the configured dialect, through the
// breaker, with the retry policy and the in-flight cap of the config. It is
// safe for concurrent use. A Client is cheap to rebuild on a config change;
// the Breaker passed in is kept.
type Client struct {
	cfg     Config
	format  chittyid.Format
	breaker *Breaker
	hc      *fasthttp.HostClient
	host    string // the request URI's host, sent as Host
	scheme  string // of the request URI: fasthttp refuses an http one on a TLS HostClient
	base    string // path prefix: "/v1" for client-v1, "" for worker
	tr      *transport
	slots   chan struct{}
	agent   string
	obs     Observer

	late       *LateAnswers // nil: answers after a caller gave up are not awaited
	lateWindow time.Duration

	tracer *tracing.Tracer // health polls' root spans; nil: none
	// url is scheme://host, for the spans' url.full; port is the
	// server's port.
	origin   string
	hostname string
	port     int
}

// Options are the parts of a Client that are not in the config file.
type Options struct {
	// Version is sent in the User-Agent ("chittyid-sidecar/<Version>").
	Version string
	// Observer, if set, is told about every attempt and retry.
	Observer Observer
	// Late, if set, awaits the answers of mints whose callers gave up, so
	// that no ID upstream minted goes unrecorded (see LateAnswers). Share
	// one between the Clients of a process. Nil: such answers are dropped.
	Late *LateAnswers
	// Sessions, if set, is the TLS session cache, kept by the owner across
	// Clients so that a rebuilt Client resumes sessions. Nil: the client's
	// own.
	Sessions *Sessions
	// LookupEnv reads the proxy variables when upstream.proxy is "" (when
	// New runs). Nil: os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Tracer, if on, gives each health poll a trace of its own. The spans
	// of calls made for a request hang off the span their context
	// carries (tracing.With), whatever the Tracer.
	Tracer *tracing.Tracer
}

// Observer is told about upstream attempts, for metrics. It must be fast
// and safe for concurrent use. If it also implements HandshakeObserver, it
// hears of TLS handshakes too.
type Observer interface {
	// Attempt reports one request sent upstream: its operation ("mint",
	// "mint batch", "validate"), its outcome (see Outcome) and how long it took.
	Attempt(op, outcome string, d time.Duration)
	// Retry reports that a failed attempt of op will be tried again.
	Retry(op string)
}

// Outcome names the result of an attempt for metrics and logs: "ok", or
// the failure kind ("unavailable", "timeout", "rate_limited",
// "unauthorized", "rejected", "fallback", "bad_response", "circuit_open").
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrCircuitOpen):
		return "circuit_open"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrRejected):
		return "rejected"
	case errors.Is(err, ErrFallback):
		return "fallback"
	case errors.Is(err, ErrBadResponse):
		return "bad_response"
	}
	return "unavailable"
}

// TraceObserver, if the Observer implements it too, hears of the attempts
// whose span is sampled through AttemptTraced instead of Attempt, with the
// trace's ID: a latency histogram keeps it as an exemplar.
type TraceObserver interface {
	AttemptTraced(op, outcome string, d time.Duration, traceID string)
}

// noObserver is the Observer when none is given.
type noObserver struct{}

func (noObserver) Attempt(string, string, time.Duration) {}
func (noObserver) Retry(string)                          {}

// New builds a client for cfg (with defaults filled in and validated) that
// expects IDs of format and counts failures on b. It reads the TLS files
// if cfg.TLS.ReadFiles has not, and the proxy variables of the environment
// when upstream.proxy is "".
func New(cfg Config, format chittyid.Format, b *Breaker, opts Options) (*Client, error) {
	if b == nil {
		panic("upstream: New with a nil Breaker")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold credentials
		}
		return nil, fmt.Errorf("parsing upstream.url: %w", err)
	}
	isTLS := u.Scheme == "https"
	port := "80"
	if isTLS {
		port = "443"
	}
	tr, err := newTransport(cfg, u, opts)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		format:  format,
		breaker: b,
		host:    u.Host,
		scheme:  u.Scheme,
		base:    strings.TrimRight(u.EscapedPath(), "/"),
		tr:      tr,
		slots:   make(chan struct{}, cfg.MaxInFlight),
		agent:   "chittyid-sidecar/" + opts.Version,
		obs:     opts.Observer,

		late:       opts.Late,
		lateWindow: cfg.LateAnswerWindow,
		tracer:     opts.Tracer,
		origin:     u.Scheme + "://" + u.Host,
		hostname:   u.Hostname(),
	}
	c.port, _ = strconv.Atoi(port)
	if p := u.Port(); p != "" {
		c.port, _ = strconv.Atoi(p)
	}
	if c.obs == nil {
		c.obs = noObserver{}
	}
	if cfg.Dialect == DialectWorker {
		c.base = "" // the worker's routes hang off the host root
	}
	c.hc = &fasthttp.HostClient{
		Addr:                hostPort(u, port),
		IsTLS:               isTLS,
		MaxConns:            cfg.MaxInFlight + 64, // mints plus validates and polls
		MaxConnWaitTimeout:  cfg.Timeout,
		MaxIdleConnDuration: 4 * time.Second, // below common upstream keep-alive timeouts
		// Reuse the connection used last: with fasthttp's default (FIFO), a
		// trickle of health polls cycles through every idle connection and
		// keeps them all open after a burst; this way the spares age out.
		ConnPoolStrategy: fasthttp.LIFO,
		// Deadlines come with every call (DoDeadline); this only bounds a
		// mint whose answer is awaited after its caller gave up (Late).
		ReadTimeout:         cfg.Timeout + cfg.LateAnswerWindow,
		WriteTimeout:        cfg.Timeout,
		MaxResponseBodySize: 1 << 20,
		// Retries are ours, counted by the breaker one by one, with one
		// exception: a GET (health, validate) that found its pooled
		// connection already closed by upstream is sent again at once on a
		// new one. It was never processed, and after an outage every pooled
		// connection is dead: without this each would fail one health poll.
		MaxIdemponentCallAttempts: 2,
		RetryIfErr: func(req *fasthttp.Request, _ int, err error) (bool, bool) {
			return false, req.Header.IsGet() && errors.Is(err, fasthttp.ErrConnectionClosed)
		},
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// Requests carry the token: keep their headers and bodies out of
		// fasthttp's error messages.
		SecureErrorLogMessage: true,
		// Our dialer (transport.go), not fasthttp's default one: that one
		// caches DNS answers in a package-level map with a cleaner goroutine
		// no one owns. It also tunnels through the proxy and does the TLS
		// handshake (TLSConfig is then unused).
		DialTimeout: tr.dial,
	}
	return c, nil
}

// newTransport builds the dialer for cfg's upstream u.
func newTransport(cfg Config, u *url.URL, opts Options) (*transport, error) {
	lookupEnv := opts.LookupEnv
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	proxy, err := chooseProxy(cfg.Proxy, u, lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("choosing the egress proxy: %w", err)
	}
	tr := &transport{proxy: proxy, timeout: cfg.Timeout, obs: noHandshakes{}}
	if h, ok := opts.Observer.(HandshakeObserver); ok {
		tr.obs = h
	}
	if u.Scheme != "https" {
		return tr, nil
	}
	t := cfg.TLS
	if (t.CAFile != "" && t.Files.CA == "") || (t.CertFile != "" && t.Files.Cert == "") {
		if err := t.ReadFiles(); err != nil {
			return nil, err
		}
	}
	m, err := t.material()
	if err != nil {
		return nil, err
	}
	serverName := t.ServerName
	if serverName == "" {
		serverName = u.Hostname()
	}
	sessions := opts.Sessions
	if sessions == nil {
		sessions = NewSessions()
	}
	tr.tls = &tls.Config{
		RootCAs:            m.roots,
		ServerName:         serverName,
		MinVersion:         tlsVersion(t.MinVersion),
		ClientSessionCache: sessions.forKey(t.trustKey(serverName)),
	}
	tr.info = TLSInfo{Enabled: true, ServerName: serverName, MinVersion: t.MinVersion, CAFile: t.CAFile}
	if tr.info.MinVersion == "" {
		tr.info.MinVersion = TLSVersion12
	}
	if m.cert != nil {
		tr.tls.Certificates = []tls.Certificate{*m.cert}
		tr.info.ClientCert = m.cert.Leaf
	}
	return tr, nil
}

// TLS describes the client's TLS settings; Enabled is false for http.
func (c *Client) TLS() TLSInfo { return c.tr.info }

// Proxy is the egress proxy the client goes through, credentials redacted,
// and where it came from ("upstream.proxy" or the environment variable);
// both "" when it connects directly.
func (c *Client) Proxy() (proxy, source string) {
	if c.tr.proxy.url == nil {
		return "", ""
	}
	return redactProxy(c.tr.proxy.url), c.tr.proxy.source
}

// Close releases idle upstream connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Breaker returns the breaker the client counts on.
func (c *Client) Breaker() *Breaker { return c.breaker }

// CallInfo is what a call carries from the app's request to upstream.
type CallInfo struct {
	RequestID string // X-Request-ID
	// Trace is the app's W3C trace context (traceparent, tracestate),
	// checked. Without a span in the call's context (tracing off) it is
	// forwarded unchanged; with one, the span's context goes instead
	// (tracing.Header).
	Trace tracing.Remote
	// CallerAuth is the app's own Authorization header, sent only when the
	// sidecar has no token of its own.
	CallerAuth string
}

func (c *Client) authorization(info CallInfo) (string, bool) {
	if tok := c.cfg.Token.Reveal(); tok != "" {
		return "Bearer " + tok, true
	}
	if info.CallerAuth != "" {
		return info.CallerAuth, true
	}
	return "", false
}

// HasToken reports whether the sidecar holds a token of its own.
func (c *Client) HasToken() bool { return c.cfg.Token != "" }

// request is one upstream HTTP exchange, repeated identically by retries.
type request struct {
	op, method, path string
	// template is path with the ID as {id}, for the spans.
	template       string
	body           []byte
	auth           string
	idempotencyKey string
	info           CallInfo
	// late, for mints, reads the IDs out of an answer that arrives after
	// the attempt's deadline (see sendWatched).
	late func(body []byte) []string
}

// response is what an attempt brings back; body is a private copy.
type response struct {
	status     int
	body       []byte
	retryAfter time.Duration
	attempts   int // set by call on success
}

// traceHeaders are the trace context headers of one attempt.
type traceHeaders struct {
	parent []byte // traceparent; nil: none
	state  string // tracestate
}

// traceHeadersFor returns the trace context to send with an attempt made
// in ctx for a call carrying info (tracing.Header).
func traceHeadersFor(ctx context.Context, info CallInfo) traceHeaders {
	tp, ts, ok := tracing.Header(ctx, info.Trace, nil)
	if !ok {
		return traceHeaders{}
	}
	return traceHeaders{parent: tp, state: ts}
}

// send performs one attempt with the given deadline.
func (c *Client) send(r *request, deadline time.Time, th traceHeaders) (response, error) {
	if r.late != nil && c.late != nil {
		return c.late.send(c, r, deadline, th)
	}
	return c.do(r, deadline, th)
}

// do sends r and waits for the answer until deadline.
func (c *Client) do(r *request, deadline time.Time, th traceHeaders) (response, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(r.method)
	req.SetRequestURI(r.path)
	// A bare path is scheme http, which a TLS HostClient refuses; and a
	// URI with a scheme supplies the Host header.
	req.URI().SetScheme(c.scheme)
	req.URI().SetHost(c.host)
	req.Header.SetUserAgent(c.agent)
	req.Header.Set("Accept", "application/json")
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", r.idempotencyKey)
	}
	setIf(req, "X-Request-ID", r.info.RequestID)
	if th.parent != nil {
		req.Header.SetBytesV("traceparent", th.parent)
		setIf(req, "tracestate", th.state)
	}
	if r.body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(r.body)
	}
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		if te := c.tr.refusedAfterHandshake(err, resp.LocalAddr()); te != nil {
			return response{}, te
		}
		return response{}, err
	}
	return response{
		status:     resp.StatusCode(),
		body:       append([]byte(nil), resp.Body()...),
		retryAfter: parseRetryAfter(resp.Header.Peek("Retry-After"), time.Now()),
	}, nil
}

// spanName is an attempt span's name: method and path template, as
// OpenTelemetry's HTTP conventions have it.
func (c *Client) spanName(r *request) string { return r.method + " " + c.base + r.template }

func setIf(req *fasthttp.Request, k, v string) {
	if v != "" {
		req.Header.Set(k, v)
	}
}

// acquire takes an in-flight slot, waiting no longer than ctx allows; a
// wait shows as a span.
func (c *Client) acquire(ctx context.Context, op string) (release func(), err error) {
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	default:
	}
	_, span := tracing.Start(ctx, "upstream slot wait", tracing.KindInternal)
	span.SetInt("chittyid.upstream.max_in_flight", cap(c.slots))
	defer span.End()
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	case <-ctx.Done():
		span.Fail("timeout")
		e := callErr(op, ErrTimeout, 0, "waited for one of %d upstream slots", cap(c.slots))
		e.Cause = ctx.Err()
		return nil, e
	}
}

// InFlight returns the number of upstream mints under way.
func (c *Client) InFlight() int { return len(c.slots) }

// NewKey returns a random 128-bit hex key, for Idempotency-Key and X-Request-ID.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// isDialError reports whether err means no connection was made, so the
// request was certainly not processed and a retry is always safe.
func isDialError(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) || isConnectError(err) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
