// Package ratelimit is the sidecar's local rate limits, the rateLimit
// section of the config (docs/rate-limits.md): token buckets for mint, per
// caller and global, and for validate, global, reconfigured in place on
// reload. What names a caller (X-Client-ID) and the 429 answer are the
// sidecar's; the fleet-wide mint limit is the fleet tier's.
package ratelimit

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/chittyos/chittyid-sidecar/config"
)

// Limiter enforces the rateLimit section (docs/rate-limits.md) with token
// buckets: for mint, one bucket per caller and one global bucket, both of
// size rateLimit.mint.burst; for validate, one global bucket. A rate of 0
// means no bucket at all. It is safe for concurrent use.
//
// The caller table is an exact LRU (map + container/list under mu) of at
// most rateLimit.maxCallers entries, about 200 bytes each plus the ID: a new
// caller arriving at a full table drops the least recently used one, which
// starts over with a full bucket if it comes back. X-Client-ID is chosen by
// the caller, so the per-caller limit keeps well-behaved apps apart; the
// global limit is what protects upstream from one that cycles IDs.
type Limiter struct {
	now func() time.Time

	// validate is the validate bucket, nil while validate is unlimited.
	// AllowValidate loads it without a lock: it is on the cache-hit path.
	validate atomic.Pointer[rate.Limiter]
	// mintLimited is false while no mint rate is set; AllowMint then
	// returns at once, without taking mu.
	mintLimited atomic.Bool

	// mu guards the mint buckets and the caller table below, and
	// serializes Reconfigure.
	mu         sync.Mutex
	mint       config.MintRate
	maxCallers int
	global     *rate.Limiter            // nil: no global mint limit
	callers    map[string]*list.Element // values are *callerBucket; empty without a per-caller limit
	lru        list.List                // of *callerBucket, most recently used at the front
}

// callerBucket is one caller's mint bucket.
type callerBucket struct {
	id  string
	lim *rate.Limiter
}

// New returns a Limiter for cfg, every bucket full. now is the clock
// (nil: time.Now).
func New(cfg config.RateLimit, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{now: now, callers: map[string]*list.Element{}}
	l.Reconfigure(cfg)
	return l
}

// Reconfigure applies a reloaded rateLimit section. New rates and bursts
// apply at once to the buckets in use, which keep their tokens (a larger
// burst fills at the rate; a smaller one caps them). A limit turned on starts
// with a full bucket; one turned off drops its buckets. A smaller maxCallers
// drops the least recently used callers. It costs O(callers) under mu.
func (l *Limiter) Reconfigure(cfg config.RateLimit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.validate.Store(retune(l.validate.Load(), now, rate.Limit(cfg.Validate.GlobalPerSecond), cfg.Validate.Burst))
	l.global = retune(l.global, now, perMinute(cfg.Mint.GlobalPerMinute), cfg.Mint.Burst)
	l.mint, l.maxCallers = cfg.Mint, max(cfg.MaxCallers, 1)
	if cfg.Mint.PerCallerPerMinute == 0 {
		clear(l.callers)
		l.lru.Init()
	}
	for e := l.lru.Front(); e != nil; e = e.Next() {
		retune(e.Value.(*callerBucket).lim, now, perMinute(cfg.Mint.PerCallerPerMinute), cfg.Mint.Burst)
	}
	for len(l.callers) > l.maxCallers {
		l.evictLocked()
	}
	l.mintLimited.Store(cfg.Mint.Limited())
}

// retune returns lim set to rate r and burst b from now on; a new full
// bucket if lim is nil; nil if r is 0 (no limit).
func retune(lim *rate.Limiter, now time.Time, r rate.Limit, b int) *rate.Limiter {
	if r <= 0 {
		return nil
	}
	if lim == nil {
		return rate.NewLimiter(r, b)
	}
	lim.SetLimitAt(now, r)
	lim.SetBurstAt(now, b)
	return lim
}

func perMinute(n int) rate.Limit { return rate.Limit(float64(n) / 60) }

// AllowMint reports whether caller may mint n IDs now (n = 1 for a mint,
// the number of requests for a batch): its own bucket and the global one
// must both hold n tokens. If so both are charged; if not, neither is, and
// retryAfter says when both will hold n (whole seconds, at least 1s).
func (l *Limiter) AllowMint(caller string, n int) (ok bool, retryAfter time.Duration) {
	return l.mintTokens(caller, n, true)
}

// CanMint is AllowMint without charging: whether the buckets hold n tokens
// now. Nothing is taken, so a request that another limit (the fleet's)
// refuses after this check costs its caller no tokens.
func (l *Limiter) CanMint(caller string, n int) (ok bool, retryAfter time.Duration) {
	return l.mintTokens(caller, n, false)
}

// mintTokens checks that caller's bucket and the global one hold n tokens
// and, if take, charges both.
func (l *Limiter) mintTokens(caller string, n int, take bool) (ok bool, retryAfter time.Duration) {
	if !l.mintLimited.Load() || n <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Read the clock under mu: rate.Limiter moves its last-update time
	// back when handed an earlier time, so out-of-order times would credit
	// the same interval twice.
	now := l.now()
	var mine *rate.Limiter
	if l.mint.PerCallerPerMinute > 0 {
		mine = l.callerLocked(caller)
	}
	// Check both, then charge both: under mu no one else can take tokens in
	// between, so the charges cannot fail.
	if !hasTokens(mine, now, n) || !hasTokens(l.global, now, n) {
		return false, waitFor(now, n, mine, l.global)
	}
	if !take {
		return true, 0
	}
	charge(mine, now, n)
	charge(l.global, now, n)
	return true, 0
}

// AllowValidate reports whether a validate request may go ahead now; if not,
// retryAfter says when (whole seconds, at least 1s). Without a validate
// limit it costs one atomic load; with one, one AllowN.
func (l *Limiter) AllowValidate() (ok bool, retryAfter time.Duration) {
	lim := l.validate.Load()
	if lim == nil {
		return true, 0
	}
	now := l.now()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, waitFor(now, 1, lim)
}

// callerLocked returns id's bucket, making it the most recently used, or a
// new full one, dropping the least recently used caller if the table is full.
func (l *Limiter) callerLocked(id string) *rate.Limiter {
	if e, ok := l.callers[id]; ok {
		l.lru.MoveToFront(e)
		return e.Value.(*callerBucket).lim
	}
	for len(l.callers) >= l.maxCallers {
		l.evictLocked()
	}
	b := &callerBucket{id: id, lim: rate.NewLimiter(perMinute(l.mint.PerCallerPerMinute), l.mint.Burst)}
	l.callers[id] = l.lru.PushFront(b)
	return b.lim
}

// evictLocked drops the least recently used caller.
func (l *Limiter) evictLocked() {
	e := l.lru.Back()
	if e == nil {
		return
	}
	l.lru.Remove(e)
	delete(l.callers, e.Value.(*callerBucket).id)
}

// hasTokens reports whether lim holds n tokens at now; a nil lim (no limit)
// always does.
func hasTokens(lim *rate.Limiter, now time.Time, n int) bool {
	return lim == nil || lim.TokensAt(now) >= float64(n)
}

// charge takes n tokens from lim, which hasTokens said it holds.
func charge(lim *rate.Limiter, now time.Time, n int) {
	if lim != nil {
		lim.AllowN(now, n)
	}
}

// waitFor returns how long until every bucket holds n tokens, rounded up to
// whole seconds and at least 1s (a Retry-After value). A bucket smaller than
// n never will; config validation keeps rateLimit.mint.burst >=
// limits.maxBatch so that no request asks for that.
func waitFor(now time.Time, n int, buckets ...*rate.Limiter) time.Duration {
	var wait time.Duration
	for _, lim := range buckets {
		if lim == nil {
			continue
		}
		missing := float64(n) - lim.TokensAt(now)
		if r := lim.Limit(); missing > 0 && r > 0 {
			wait = max(wait, time.Duration(missing/float64(r)*float64(time.Second)))
		}
	}
	return max(time.Second, (wait + time.Second - 1).Truncate(time.Second))
}
