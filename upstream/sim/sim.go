package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// Server settings. Requests are tiny and local, so the timeouts only bound a
// stalled client; closeGrace bounds how long Close lets in-flight answers
// finish before it closes their connections.
const (
	readTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	idleTimeout  = 30 * time.Second
	maxBodySize  = 4 << 20
	closeGrace   = 2 * time.Second
)

// Config is how a simulator behaves. The zero value is a client-v1,
// official-format simulator without auth or latency.
type Config struct {
	// Dialect is the protocol served: upstream.DialectClientV1 (default
	// when "") or upstream.DialectWorker.
	Dialect upstream.Dialect
	// Format is the format of minted IDs: chittyid.FormatOfficial (default
	// when 0) or chittyid.FormatNumeric.
	Format chittyid.Format
	// Token, when not "", is the bearer token mint, batch and validate
	// require ("Authorization: Bearer <Token>"; 401 otherwise). Health is
	// always open. SetToken changes it. Default "" (no auth).
	Token string
	// Latency is added before answering each API request (not control
	// requests). Default 0.
	Latency time.Duration
	// MaxMinted is how many minted IDs are remembered for validate and
	// Minted; older ones are forgotten. Default (0) 1,000,000.
	MaxMinted int
	// OnMint, if set, is called for every request that minted IDs, before
	// it is answered: a ledger for tests that account for every ID.
	OnMint func(Mint)
	// TLS, if set, makes the API listener serve HTTPS with these settings
	// (its certificate, and ClientAuth and ClientCAs to require client
	// certificates); URL then starts with https. The control API stays
	// plain HTTP. Start uses a clone. Default nil: plain HTTP.
	TLS *tls.Config
}

// Mint is one request's minted IDs, for Config.OnMint.
type Mint struct {
	IDs            []string
	IdempotencyKey string    // the request's Idempotency-Key header
	RequestID      string    // its X-Request-ID header
	Time           time.Time // when the IDs were minted
}

func (c Config) withDefaults() (Config, error) {
	if c.Dialect == "" {
		c.Dialect = upstream.DialectClientV1
	}
	if c.Format == 0 {
		c.Format = chittyid.FormatOfficial
	}
	if c.MaxMinted == 0 {
		c.MaxMinted = defaultMaxMinted
	}
	if c.TLS != nil {
		c.TLS = c.TLS.Clone()
	}
	var errs []error
	if c.Dialect != upstream.DialectClientV1 && c.Dialect != upstream.DialectWorker {
		errs = append(errs, fmt.Errorf("sim: dialect must be client-v1 or worker, got %q", c.Dialect))
	}
	if c.Format != chittyid.FormatOfficial && c.Format != chittyid.FormatNumeric {
		errs = append(errs, fmt.Errorf("sim: format must be official or numeric, got %s", c.Format))
	}
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("sim: latency must be >= 0, got %s", c.Latency))
	}
	if c.MaxMinted < 0 {
		errs = append(errs, fmt.Errorf("sim: maxMinted must be >= 0, got %d", c.MaxMinted))
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		errs = append(errs, errors.New("sim: TLS needs a certificate"))
	}
	return c, errors.Join(errs...)
}

// Sim is a running simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg     Config
	now     func() time.Time
	apiAddr string // fixed at Start, so a refused listener reopens on the same port
	ctlAddr string

	api, ctl           *fasthttp.Server
	apiConns, ctlConns *connTracker
	ctlLn              net.Listener

	token   atomic.Pointer[string]
	seq     atomic.Uint64 // the next ID's counter; never reset, so IDs stay unique across Reset
	stats   counters
	counted notifier     // wakes WaitStats when a request is counted
	conns   connCounters // the API listener's connections and TLS handshakes

	minted   *mintedStore
	keys     *keyStore
	requests requestLog

	done      chan struct{} // closed by Close: releases hung and sleeping requests
	closeOnce sync.Once
	wg        sync.WaitGroup // accept loops and connection goroutines

	// mu guards the fields below: the fault state, the hang bookkeeping and
	// the API listener.
	mu          sync.Mutex
	fault       activeFault
	release     chan struct{} // closed to release requests hung by a hang fault; replaced on every change of fault
	hung        int
	hungChanged chan struct{} // closed and replaced whenever hung changes
	apiLn       net.Listener  // nil while a refuse fault holds the API closed
	apiServed   chan struct{} // closed when apiLn's accept loop returns
	closed      bool
}

// counters are the per-route request counters and the minted count.
type counters struct {
	mint, batch, validate, health, minted, abandoned atomic.Int64
}

// Start listens on apiAddr for the upstream API and on controlAddr for the
// control API (addresses such as "127.0.0.1:0"; "" means that) and serves
// them until Close.
func Start(cfg Config, apiAddr, controlAddr string) (*Sim, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	apiLn, err := listen(apiAddr)
	if err != nil {
		return nil, fmt.Errorf("sim: listening for the API: %w", err)
	}
	ctlLn, err := listen(controlAddr)
	if err != nil {
		_ = apiLn.Close()
		return nil, fmt.Errorf("sim: listening for control: %w", err)
	}
	s := &Sim{
		cfg:         cfg,
		now:         time.Now,
		apiAddr:     apiLn.Addr().String(),
		ctlAddr:     ctlLn.Addr().String(),
		apiConns:    newConnTracker(),
		ctlConns:    newConnTracker(),
		minted:      newMintedStore(cfg.MaxMinted),
		keys:        newKeyStore(),
		requests:    requestLog{reqs: ring[Request]{max: maxRequests}},
		done:        make(chan struct{}),
		fault:       okFault(),
		release:     make(chan struct{}),
		hungChanged: make(chan struct{}),
	}
	s.token.Store(&cfg.Token)
	s.api = newServer(s.serveAPI, s.apiErrorHandler, s.apiConns)
	s.ctl = newServer(s.serveControl, controlErrorHandler, s.ctlConns)
	s.ctlLn = ctlLn
	s.mu.Lock()
	s.serveAPILocked(apiLn)
	s.mu.Unlock()
	s.wg.Add(1)
	go s.acceptLoop(s.ctl, s.ctlConns, ctlLn, nil, nil)
	return s, nil
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return net.Listen("tcp", addr)
}

func newServer(h fasthttp.RequestHandler, eh func(*fasthttp.RequestCtx, error), ct *connTracker) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      h,
		ErrorHandler: eh,
		Name:         "chittyid-sim",
		// The Date header would start fasthttp's package-level clock
		// goroutine, which never stops.
		NoDefaultDate:      true,
		ReadTimeout:        readTimeout,
		WriteTimeout:       writeTimeout,
		IdleTimeout:        idleTimeout,
		MaxRequestBodySize: maxBodySize,
		Logger:             quietLogger{},
		ConnState:          ct.track,
	}
}

// quietLogger drops fasthttp's log lines: connections the simulator closes
// on purpose (refuse, Close) would otherwise be reported as errors.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// URL is the base URL to configure as the sidecar's upstream.url:
// "http://127.0.0.1:PORT/v1" for client-v1, "http://127.0.0.1:PORT" for
// worker; https with Config.TLS.
func (s *Sim) URL() string {
	scheme := "http://"
	if s.cfg.TLS != nil {
		scheme = "https://"
	}
	if s.cfg.Dialect == upstream.DialectWorker {
		return scheme + s.apiAddr
	}
	return scheme + s.apiAddr + "/v1"
}

// APIAddr is the API listener's address, "127.0.0.1:PORT".
func (s *Sim) APIAddr() string { return s.apiAddr }

// ControlURL is the control API's base URL, "http://127.0.0.1:PORT".
func (s *Sim) ControlURL() string { return "http://" + s.ctlAddr }

// Config returns the simulator's configuration, defaults filled in (Token
// as given to Start; see SetToken).
func (s *Sim) Config() Config { return s.cfg }

// serveAPILocked serves the API on ln in a new goroutine.
func (s *Sim) serveAPILocked(ln net.Listener) {
	s.apiLn = ln
	s.apiServed = make(chan struct{})
	s.wg.Add(1)
	go s.acceptLoop(s.api, s.apiConns, ln, s.apiServed, s.cfg.TLS)
}

// acceptLoop serves each connection of ln in its own goroutine until ln is
// closed, then closes served (if not nil); with tlsCfg, over TLS. It
// replaces fasthttp's Serve, whose worker pool leaves a cleaner goroutine
// running for up to 10s after the listener closes; here every goroutine
// belongs to s.wg.
func (s *Sim) acceptLoop(srv *fasthttp.Server, ct *connTracker, ln net.Listener, served chan struct{}, tlsCfg *tls.Config) {
	defer s.wg.Done()
	if served != nil {
		defer close(served)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.acceptRetry(err) {
				continue
			}
			return
		}
		if ct == s.apiConns {
			s.conns.accepted.Add(1)
		}
		if tlsCfg != nil {
			c = tls.Server(c, tlsCfg)
		}
		if !ct.add(c) {
			_ = c.Close()
			continue
		}
		s.wg.Add(1) // s.wg is above zero here: this loop holds a count
		go s.serveConn(srv, ct, c)
	}
}

// acceptRetry reports whether an Accept error is worth retrying (after a
// short pause), such as running out of file descriptors.
func (s *Sim) acceptRetry(err error) bool {
	var ne net.Error
	if errors.Is(err, net.ErrClosed) || !errors.As(err, &ne) || !ne.Timeout() && !isTemporary(err) {
		return false
	}
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn serves one connection until it closes. ServeConn closes c and
// normally reports StateClosed itself; forget covers its early returns.
func (s *Sim) serveConn(srv *fasthttp.Server, ct *connTracker, c net.Conn) {
	defer s.wg.Done()
	if tc, ok := c.(*tls.Conn); ok && !s.handshake(tc) {
		_ = c.Close()
		ct.forget(c)
		return
	}
	_ = srv.ServeConn(c)
	ct.forget(c)
}

// stopAPILocked closes the API listener and every API connection (refuse).
func (s *Sim) stopAPILocked() {
	if s.apiLn == nil {
		return
	}
	_ = s.apiLn.Close()
	// Wait for the accept loop to stop, so a connection it accepted just
	// before the close is already tracked when the connections are closed.
	<-s.apiServed
	s.apiLn = nil
	// Idle connections close now; busy ones right after their answer, so a
	// request already being processed (a mint that already minted) is
	// answered rather than cut off mid-way.
	s.apiConns.retireAll()
}

// startAPILocked opens the API listener again after a refuse fault.
func (s *Sim) startAPILocked() error {
	if s.apiLn != nil {
		return nil
	}
	if s.closed {
		return ErrClosed
	}
	ln, err := net.Listen("tcp", s.apiAddr)
	if err != nil {
		return fmt.Errorf("sim: reopening the API listener on %s: %w", s.apiAddr, err)
	}
	s.serveAPILocked(ln)
	return nil
}

// Close stops the simulator: it releases hung and delayed requests, closes
// both listeners and idle connections, lets in-flight answers finish (for
// up to two seconds, then closes their connections) and waits for every
// goroutine it started. It is idempotent and returns nil.
func (s *Sim) Close() error {
	s.closeOnce.Do(s.shutdown)
	return nil
}

func (s *Sim) shutdown() {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	if s.apiLn != nil {
		_ = s.apiLn.Close()
	}
	s.mu.Unlock()
	_ = s.ctlLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
	defer cancel()
	s.apiConns.drain(ctx)
	s.ctlConns.drain(ctx)
	s.wg.Wait()
}

// closing reports whether Close has begun.
func (s *Sim) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// connTracker follows a server's open connections (added by the accept
// loop, then through the server's ConnState hook), so that refuse and Close
// can cut them and Close can wait for them.
type connTracker struct {
	// mu guards the fields below.
	mu       sync.Mutex
	conns    map[net.Conn]fasthttp.ConnState
	draining bool // Close: no new connections, idle ones are closed
	retiring map[net.Conn]bool
	changed  chan struct{} // closed and replaced when a connection goes
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[net.Conn]fasthttp.ConnState), retiring: make(map[net.Conn]bool), changed: make(chan struct{})}
}

// add tracks a new connection; false means the server is closing.
func (ct *connTracker) add(c net.Conn) bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.draining {
		return false
	}
	ct.conns[c] = fasthttp.StateNew
	return true
}

// count is how many connections are open.
func (ct *connTracker) count() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return len(ct.conns)
}

// forget stops tracking a closed connection.
func (ct *connTracker) forget(c net.Conn) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.forgetLocked(c)
}

func (ct *connTracker) forgetLocked(c net.Conn) {
	if _, ok := ct.conns[c]; !ok {
		return
	}
	delete(ct.conns, c)
	delete(ct.retiring, c)
	close(ct.changed)
	ct.changed = make(chan struct{})
}

// track is the server's ConnState hook.
func (ct *connTracker) track(c net.Conn, state fasthttp.ConnState) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	switch state {
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		ct.forgetLocked(c)
		return
	case fasthttp.StateIdle:
		if ct.draining || ct.retiring[c] {
			// The answer has been written; the connection's goroutine
			// sees the close on its next read and ends.
			_ = c.Close()
		}
	}
	ct.conns[c] = state
}

// retireAll closes the idle connections now and the busy ones as soon as
// they have answered.
func (ct *connTracker) retireAll() {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for c, st := range ct.conns {
		if st == fasthttp.StateActive {
			ct.retiring[c] = true
			continue
		}
		_ = c.Close()
	}
}

// closeAll closes every open connection; their goroutines then see the
// error, finish and report StateClosed.
func (ct *connTracker) closeAll() {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for c := range ct.conns {
		_ = c.Close()
	}
}

// drain stops new connections, closes the idle ones now and the busy ones
// once they have answered or ctx is done, and returns when none is left.
func (ct *connTracker) drain(ctx context.Context) {
	ct.mu.Lock()
	ct.draining = true
	for c, st := range ct.conns {
		if st != fasthttp.StateActive {
			_ = c.Close()
		}
	}
	ct.mu.Unlock()
	forced := false
	for {
		ct.mu.Lock()
		n, changed := len(ct.conns), ct.changed
		ct.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if !forced {
				forced = true
				ct.closeAll()
			}
			// The connections' goroutines end promptly now; wait for
			// them without the expired ctx.
			<-changed
		}
	}
}
