package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/redis/rueidis"
)

var (
	// ErrOff means the tier is not configured (no fleet.redis.addrs).
	ErrOff = errors.New("fleet: off")
	// ErrSkipped means the call was not sent: Redis failed several calls
	// in a row (or has not been reached yet) and the tier is skipped until
	// a probe succeeds.
	ErrSkipped = errors.New("fleet: skipped while Redis is unavailable")
	// ErrClosed means the tier was closed.
	ErrClosed = errors.New("fleet: closed")
	// ErrTimeout means Redis did not answer within fleet.timeout.
	ErrTimeout = errors.New("fleet: no answer from Redis within fleet.timeout")
)

// Defaults of Options.
const (
	defaultFailuresToSkip   = 3
	defaultProbeInterval    = 250 * time.Millisecond
	defaultMaxProbeInterval = 5 * time.Second
	defaultConnectTimeout   = time.Second
	defaultClientName       = "chittyid-sidecar"
)

// Options are the parts of a Tier that are not in the config file.
type Options struct {
	// Observer, if set, is told about every call, lock wait and state change.
	Observer Observer
	// FailuresToSkip is how many calls in a row must fail (error or
	// timeout) before the tier is skipped. Default 3.
	FailuresToSkip int
	// ProbeInterval is the wait before the first probe once the tier is
	// skipped (and between connection attempts); it doubles after each
	// failed probe, up to MaxProbeInterval, with ±20 % jitter. Defaults
	// 250ms and 5s.
	ProbeInterval, MaxProbeInterval time.Duration
	// ConnectTimeout bounds one connection attempt (dial, TLS handshake,
	// AUTH) and a probe's first PING. A probe then needs a second PING to
	// answer within fleet.timeout. Default 1s.
	ConnectTimeout time.Duration
	// ClientName is the connections' CLIENT SETNAME. Default
	// "chittyid-sidecar".
	ClientName string
	// Now, if set, replaces time.Now for verdict ages and the status.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	if o.FailuresToSkip <= 0 {
		o.FailuresToSkip = defaultFailuresToSkip
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = defaultProbeInterval
	}
	if o.MaxProbeInterval < o.ProbeInterval {
		o.MaxProbeInterval = max(defaultMaxProbeInterval, o.ProbeInterval)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
	if o.ClientName == "" {
		o.ClientName = defaultClientName
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// settings are what Reconfigure changes, swapped as a whole; a call loads
// them once.
type settings struct {
	keyPrefix string
	timeout   time.Duration
	lockTTL   time.Duration
	username  string
	password  field.Secret
}

func settingsOf(c Config) *settings {
	return &settings{keyPrefix: c.KeyPrefix, timeout: c.Timeout, lockTTL: c.LockTTL,
		username: c.Redis.Username, password: c.Redis.Password}
}

// The state codes behind State, in an atomic for the hot path.
const (
	codeOff int32 = iota
	codeConnecting
	codeUp
	codeSkipped
	codeClosed
)

// stateName returns the State of a state code.
func stateName(code int32) State {
	switch code {
	case codeOff:
		return StateOff
	case codeConnecting:
		return StateConnecting
	case codeUp:
		return StateUp
	case codeSkipped:
		return StateSkipped
	}
	return StateClosed
}

// client holds the rueidis client, which no type of this package's API
// shows.
type client struct{ c rueidis.Client }

// Tier is the fleet tier: verdicts shared by the sidecars of a fleet in
// Redis, fleet-wide single flight per ID, and the fleet mint limit. It is
// safe for concurrent use. Build it with New and release it with Close.
//
// No call ever waits on Redis longer than fleet.timeout (waiting for
// another sidecar's fetch is bounded by the caller's ctx instead). After
// Options.FailuresToSkip failed calls in a row the tier is skipped: calls
// return ErrSkipped at once, and one goroutine probes Redis with backoff
// until it answers again.
type Tier struct {
	cfg  Config // as built: the restart-only settings stay as they are here
	opts Options
	tls  *tls.Config // nil without fleet.redis.tls.enabled

	live     atomic.Pointer[settings]
	client   atomic.Pointer[client] // nil until connected
	state    atomic.Int32           // a code*
	failures atomic.Int32           // failed calls in a row
	n        counters
	scripts  scripts

	// gate keeps calls and probes apart. A call holds it for reading while
	// it talks to Redis, and is skipped rather than wait for it (TryRLock);
	// a probe holds it for writing. rueidis makes every caller that needs
	// a connection wait for the one dial in progress, whoever started it,
	// without regard to the caller's ctx: a probe's dial, bounded by
	// ConnectTimeout only, must never have a call waiting on it.
	gate sync.RWMutex

	wake      chan struct{} // cap 1: the tier was skipped, probe
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when run returns
	closeOnce sync.Once

	// mu guards the status fields and changed, and orders state changes.
	mu        sync.Mutex
	since     time.Time // when the state began
	lastErr   string
	lastErrAt time.Time
	changed   chan struct{} // closed and replaced on every status change
}

// New builds the tier for cfg (zero KeyPrefix, Timeout and LockTTL take
// their defaults). Without fleet.redis.addrs the tier is off: every call
// returns ErrOff (Fetch calls fetch), and no goroutine runs. Otherwise New
// does not wait for Redis: the tier starts connecting in the background, in
// StateConnecting (calls return ErrSkipped until it is up; see Wait). It
// fails only for a config that does not validate or TLS files it cannot
// load.
func New(cfg Config, opts Options) (*Tier, error) {
	cfg = cfg.withDefaults()
	cfg.Redis.Addrs = slices.Clone(cfg.Redis.Addrs)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("building the fleet tier: %w", err)
	}
	t := &Tier{cfg: cfg, opts: opts.withDefaults(), changed: make(chan struct{}), scripts: newScripts()}
	t.live.Store(settingsOf(cfg))
	t.since = t.opts.Now()
	if !cfg.Enabled() {
		t.state.Store(codeOff)
		return t, nil
	}
	var err error
	if t.tls, err = loadTLS(cfg.Redis.TLS); err != nil {
		return nil, err
	}
	t.state.Store(codeConnecting)
	t.wake, t.stop, t.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go t.run()
	return t, nil
}

// Close stops the prober, waits for it (a connection attempt or probe
// under way ends within Options.ConnectTimeout) and closes the
// connections. Calls after Close return ErrClosed; calls in flight fail.
// Close is idempotent and returns nil.
func (t *Tier) Close() error {
	t.closeOnce.Do(func() {
		t.move(codeClosed, nil)
		if t.stop == nil { // off
			return
		}
		close(t.stop)
		<-t.done
		if c := t.client.Swap(nil); c != nil {
			c.c.Close()
		}
	})
	return nil
}

// Enabled reports whether the tier is configured.
func (t *Tier) Enabled() bool { return t.cfg.Enabled() }

// Status is the tier's state for /health's fleet section. It never holds
// the password.
type Status struct {
	// State is off, connecting, up, skipped or closed.
	State State `json:"state"`
	// Addrs are fleet.redis.addrs (the sentinels with a master name).
	Addrs []string `json:"addrs"`
	// MasterName is fleet.redis.sentinel.masterName, if set.
	MasterName string `json:"masterName,omitempty"`
	// Since is when State began.
	Since time.Time `json:"since"`
	// LastError is the last failure of a call to Redis or of a probe, and
	// LastErrorAt when it happened; kept after the tier recovers.
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
}

// Status returns the tier's state.
func (t *Tier) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statusLocked()
}

func (t *Tier) statusLocked() Status {
	s := Status{State: stateName(t.state.Load()), Addrs: slices.Clone(t.cfg.Redis.Addrs),
		MasterName: t.cfg.Redis.Sentinel.MasterName, Since: t.since, LastError: t.lastErr}
	if s.Addrs == nil {
		s.Addrs = []string{}
	}
	if !t.lastErrAt.IsZero() {
		at := t.lastErrAt
		s.LastErrorAt = &at
	}
	return s
}

// Stats returns the tier's counters.
func (t *Tier) Stats() Stats { return t.n.snapshot() }

// Wait blocks until cond holds for the tier's status or ctx ends; it wakes
// on every change of state or last error. Meant for tests and tools, e.g.
// waiting for StateUp after New.
func (t *Tier) Wait(ctx context.Context, cond func(Status) bool) error {
	for {
		t.mu.Lock()
		s, ch := t.statusLocked(), t.changed
		t.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the fleet tier (state %s): %w", s.State, ctx.Err())
		}
	}
}

// Reconfigure applies a reloaded fleet section (already validated):
// fleet.redis.username and the password (from fleet.redis.passwordFile)
// apply to connections made from now on, fleet.keyPrefix, fleet.timeout
// and fleet.lockTtl to the next call. The other settings (RestartKeys)
// keep their running values; the config's restart table
// (config.KeepRestartOnly) names those a reload changed.
func (t *Tier) Reconfigure(cfg Config) {
	t.live.Store(settingsOf(cfg.withDefaults()))
}

// move records err (if not nil) and, if the state is one of from (any
// state but closed when from is empty), moves it to code; it tells the
// observer and Wait. It reports whether the state changed.
func (t *Tier) move(code int32, err error, from ...int32) bool {
	t.mu.Lock()
	old := t.state.Load()
	changed := old != code && old != codeClosed && (len(from) == 0 || slices.Contains(from, old))
	if changed {
		t.state.Store(code)
		t.since = t.opts.Now()
	}
	t.noteLocked(err, changed)
	t.mu.Unlock()
	if changed {
		t.opts.Observer.StateChanged(stateName(code))
	}
	return changed
}

// record keeps err as the last error without changing the state.
func (t *Tier) record(err error) {
	t.mu.Lock()
	t.noteLocked(err, false)
	t.mu.Unlock()
}

// noteLocked records err (if not nil) and wakes Wait if anything changed.
func (t *Tier) noteLocked(err error, changed bool) {
	if err != nil {
		t.lastErr, t.lastErrAt = err.Error(), t.opts.Now()
	}
	if changed || err != nil {
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

// begin returns the client for a call of op, or the error that the call
// is not sent: ErrOff, ErrSkipped or ErrClosed.
func (t *Tier) begin(op string) (rueidis.Client, error) {
	switch t.state.Load() {
	case codeUp:
		if c := t.client.Load(); c != nil {
			return c.c, nil
		}
		return nil, ErrClosed // Close swapped it out
	case codeOff:
		return nil, ErrOff
	case codeClosed:
		return nil, ErrClosed
	}
	t.n.skipped.Add(1)
	t.opts.Observer.Call(op, "skipped", 0)
	return nil, ErrSkipped
}

// call runs one request to Redis about key, bounded by fleet.timeout, and
// accounts for its outcome. A nil reply is no error. When the caller's ctx
// ended first the error wraps ctx.Err() and is not a failure of Redis; a
// timeout wraps ErrTimeout.
func (t *Tier) call(ctx context.Context, s *settings, op, key string, do func(context.Context) rueidis.RedisResult) (rueidis.RedisResult, time.Duration, error) {
	if !t.gate.TryRLock() { // a probe is under way
		t.n.skipped.Add(1)
		t.opts.Observer.Call(op, "skipped", 0)
		return rueidis.RedisResult{}, 0, ErrSkipped
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	start := time.Now()
	r := do(cctx)
	d := time.Since(start)
	cancel()
	t.gate.RUnlock()
	err := r.Error()
	if err == nil || rueidis.IsRedisNil(err) {
		if t.failures.Load() != 0 {
			t.failures.Store(0)
		}
		return r, d, nil
	}
	if ctx.Err() != nil {
		return r, d, fmt.Errorf("%s %q in Redis: %w", opVerb(op), key, ctx.Err())
	}
	outcome := "error"
	if isTimeout(err) {
		outcome, err = "timeout", ErrTimeout
	}
	err = fmt.Errorf("%s %q in Redis: %w", opVerb(op), key, err)
	if re, ok := rueidis.IsRedisErr(r.Error()); ok && !t.cfg.cluster() {
		if _, moved := re.IsMoved(); moved {
			err = fmt.Errorf("%w (the server is a node of a Redis Cluster: list two or more of its nodes in fleet.redis.addrs)", err)
		}
	}
	t.n.errors.Add(1)
	t.opts.Observer.Call(op, outcome, d)
	t.failed(err)
	return r, d, err
}

// opVerb says what op does, for errors.
func opVerb(op string) string {
	switch op {
	case "get":
		return "reading"
	case "put":
		return "writing"
	case "lock":
		return "locking"
	case "commit":
		return "committing to"
	case "release":
		return "releasing"
	case "mint":
		return "taking mint tokens from"
	}
	return op
}

// isTimeout reports whether err is a deadline: the call's ctx, or a
// connection's deadline (a new connection's checkAlive).
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// failed counts a failed call; the FailuresToSkip-th in a row skips the
// tier and wakes the prober.
func (t *Tier) failed(err error) {
	if t.failures.Add(1) < int32(t.opts.FailuresToSkip) || !t.move(codeSkipped, err, codeUp) {
		t.record(err)
		return
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
