package fsm

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	looplab "github.com/looplab/fsm"
)

// ErrRunning is returned by Run when the Lifecycle is already running.
var ErrRunning = errors.New("fsm: lifecycle already running")

// ProbeFunc is one health poll: nil means good. It must return once ctx
// ends; that is what bounds a poll by Config.Timeout.
type ProbeFunc func(ctx context.Context) error

// Options are a Lifecycle's optional collaborators. The zero value is ready
// to use.
type Options struct {
	// Logger receives one line per state transition. Nil discards them, as
	// in the other packages.
	Logger *slog.Logger
	// BreakerOpen, if set, reports whether the circuit breaker is open (its
	// open period not over). The poller asks it after every good poll:
	// while the breaker is open a good poll keeps the state RECONNECTING
	// (PollOKBreakerOpen), so polls never cut the open period short. It is
	// called from the poller's goroutine only; it must be fast and must not
	// block. Nil means the breaker is never open.
	BreakerOpen func() bool
	// Now is the clock for recorded times and poll latency. Nil means time.Now.
	Now func() time.Time
	// Rand returns a number in [0, n), the jitter source. Nil means
	// math/rand/v2.Int64N.
	Rand func(n int64) int64
}

// Lifecycle is the upstream link's state machine and the health poller that
// drives it. Create it with New and drive it with Run; State, Snapshot,
// Wait, BreakerOpened, BreakerClosed and Shutdown are safe from any
// goroutine.
type Lifecycle struct {
	cfg    atomic.Pointer[Config] // replaced whole by Reconfigure
	probe  ProbeFunc
	log    *slog.Logger
	now    func() time.Time
	rand   func(n int64) int64
	isOpen func() bool

	// f holds the state. Only the driving goroutine (Run, or CheckOnce
	// while Run is not running) calls f.Event: concurrent Event calls race
	// inside looplab.
	f       *looplab.FSM
	state   atomic.Value // State, published by enterState
	running atomic.Bool

	// breaker wakes the driving goroutine (capacity 1: coalesced) to apply
	// breakerSignal, the latest of BreakerOpened and BreakerClosed: when
	// both come before it wakes, the later one is the breaker's state.
	breaker       chan struct{}
	breakerSignal atomic.Uint32 // an Observation
	shutdown      chan struct{} // closed once by Shutdown
	stopOnce      sync.Once

	// mu guards the fields below.
	mu          sync.Mutex
	status      Status
	stateSince  time.Time
	lastPoll    Poll
	polls       PollCounts
	transitions ring
	changed     chan struct{} // closed and replaced on every transition
}

// New returns a Lifecycle in CONNECTING that polls with probe. Zero or
// negative fields of cfg take their defaults. It panics if probe is nil.
func New(cfg Config, probe ProbeFunc, opts Options) *Lifecycle {
	if probe == nil {
		panic("fsm: New with nil ProbeFunc")
	}
	l := &Lifecycle{
		probe:    probe,
		log:      opts.Logger,
		now:      opts.Now,
		rand:     opts.Rand,
		isOpen:   opts.BreakerOpen,
		breaker:  make(chan struct{}, 1),
		shutdown: make(chan struct{}),
		status:   Status{State: Connecting},
		changed:  make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.rand == nil {
		l.rand = rand.Int64N
	}
	l.Reconfigure(cfg)
	l.stateSince = l.now()
	l.state.Store(Connecting)
	l.f = looplab.NewFSM(string(Connecting), events(), looplab.Callbacks{
		"enter_state": l.enterState,
	})
	return l
}

// Run polls upstream at once, then after NextPoll (jittered ±10%) of each
// new status, until ctx ends; it then moves to DISCONNECTED and returns nil.
// It applies BreakerOpened and BreakerClosed as they come, asks
// Options.BreakerOpen after every good poll, and stops polling after
// Shutdown. Run is the only goroutine that fires events, and it has at most
// one probe in flight. It returns ErrRunning if the Lifecycle is already
// running.
func (l *Lifecycle) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)
	timer := time.NewTimer(0)
	defer timer.Stop()
	shutdown := l.shutdown
	for {
		select {
		case <-ctx.Done():
			l.observe(ctx, Shutdown)
			return nil
		case <-shutdown:
			shutdown = nil // closed for good: stop selecting it
			l.observe(ctx, Shutdown)
			l.resetTimer(timer) // DISCONNECTED: stops it
		case <-l.breaker:
			if l.observe(ctx, l.breakerObservation()) {
				l.resetTimer(timer)
			}
		case <-timer.C:
			l.CheckOnce(ctx)
			l.resetTimer(timer)
		}
	}
}

// resetTimer arms timer for the next poll of the current status; in
// DISCONNECTED it leaves it stopped.
func (l *Lifecycle) resetTimer(timer *time.Timer) {
	s := l.current()
	if s.State == Disconnected {
		timer.Stop()
		return
	}
	timer.Reset(l.jitter(NextPoll(l.config(), s)))
}

// jitter spreads d uniformly over d±10%.
func (l *Lifecycle) jitter(d time.Duration) time.Duration {
	j := int64(d) / 10
	if j <= 0 {
		return d
	}
	return d - time.Duration(j) + time.Duration(l.rand(2*j+1))
}

// CheckOnce drives one round synchronously: it applies pending signals
// (Shutdown, then the latest of BreakerOpened and BreakerClosed), then
// polls once unless DISCONNECTED. It is for
// tests and must not be called while Run is running: only one goroutine may
// fire events.
func (l *Lifecycle) CheckOnce(ctx context.Context) {
	select {
	case <-l.shutdown:
		l.observe(ctx, Shutdown)
	default:
	}
	select {
	case <-l.breaker:
		l.observe(ctx, l.breakerObservation())
	default:
	}
	if l.current().State == Disconnected {
		return
	}
	l.poll(ctx)
}

// poll runs the probe once, bounded by cfg.Timeout, and applies its result.
// A poll cut short because ctx ended is dropped: the sidecar stopping is not
// an upstream failure.
func (l *Lifecycle) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, l.config().Timeout)
	start := l.now()
	err := l.probe(pctx)
	latency := l.now().Sub(start)
	cancel()
	if ctx.Err() != nil {
		return
	}
	l.recordPoll(start, latency, err)
	if err != nil {
		l.observe(ctx, PollFailed)
		return
	}
	if l.isOpen != nil && l.isOpen() {
		l.observe(ctx, PollOKBreakerOpen)
		return
	}
	l.observe(ctx, PollOK)
}

// BreakerOpened signals that the circuit breaker opened. It never blocks
// and may be called from any goroutine, e.g. the breaker's state-change
// listener; Run applies it at once (CONNECTED becomes RECONNECTING without
// waiting for a poll).
func (l *Lifecycle) BreakerOpened() { l.signalBreaker(BreakerOpened) }

// BreakerClosed signals that the circuit breaker closed (a trial request
// succeeded). It never blocks and may be called from any goroutine; Run
// applies it at once (RECONNECTING becomes CONNECTED).
func (l *Lifecycle) BreakerClosed() { l.signalBreaker(BreakerClosed) }

func (l *Lifecycle) signalBreaker(o Observation) {
	l.breakerSignal.Store(uint32(o))
	select {
	case l.breaker <- struct{}{}:
	default: // a wake-up is already pending; it will read the latest signal
	}
}

// breakerObservation is the latest breaker signal, for the driving goroutine.
func (l *Lifecycle) breakerObservation() Observation {
	return Observation(l.breakerSignal.Load())
}

// Shutdown asks for DISCONNECTED now. It never blocks and may be called
// more than once. Run applies it at once and stops polling, but keeps
// running until its ctx ends.
func (l *Lifecycle) Shutdown() {
	l.stopOnce.Do(func() { close(l.shutdown) })
}

// State returns the current state without locking, for request handlers.
func (l *Lifecycle) State() State { return l.state.Load().(State) }

// Reconfigure replaces the timings and thresholds (a config reload). Zero or
// negative fields take their defaults. The wait already under way finishes;
// the next poll and every decision after it use cfg. The state, counters and
// transitions are kept. It is safe from any goroutine.
func (l *Lifecycle) Reconfigure(cfg Config) {
	c := cfg.withDefaults()
	l.cfg.Store(&c)
}

func (l *Lifecycle) config() Config { return *l.cfg.Load() }
