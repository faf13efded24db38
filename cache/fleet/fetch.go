package fleet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// ErrPeerFailed means another sidecar's fetch of the ID failed within
// fleet.lockTtl: rather than each sidecar asking upstream in turn, they
// all fall back (serve stale or fail) until the lock expires.
var ErrPeerFailed = errors.New("fleet: another sidecar's fetch of this ID failed")

// How a waiter polls for another sidecar's verdict: first after
// firstPoll, doubling up to maxPoll, and never past the lock's expiry.
const (
	firstPoll = 2 * time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// failedMark is the lock's value once its holder's fetch failed.
const failedMark = "!"

// scripts are the tier's Lua scripts, run by EVALSHA (EVAL once after a
// Redis restart emptied its script cache). Each takes the keys of one ID,
// which share a Cluster slot (see verdictKey), or the mint limit's key.
// rueidis may send the four lock scripts again after a network error
// (within the call's ctx), so each is idempotent: a second run of lock by
// the holder it made answers "acquired" again.
type scripts struct {
	lock, commit, fail, release, mint *rueidis.Lua
}

func newScripts() scripts {
	return scripts{
		lock:    rueidis.NewLuaScriptRetryable(lockScript),
		commit:  rueidis.NewLuaScriptRetryable(commitScript),
		fail:    rueidis.NewLuaScriptRetryable(failScript),
		release: rueidis.NewLuaScriptRetryable(releaseScript),
		mint:    rueidis.NewLuaScript(gcraScript), // taking tokens twice is not harmless
	}
}

// lockScript: KEYS verdict, lock; ARGV token, lockTtl in ms, the verdict
// bytes the caller last saw ("" for none). Returns {1, verdict} if the
// verdict differs from what the caller saw (someone wrote it: judge it
// again), {2} if the caller holds the lock (took it now, or with this
// token before), {3, pttl} if another holds it, {4, pttl} if another's
// fetch failed.
const lockScript = `
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[3] then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then return {2} end
local ttl = redis.call('PTTL', KEYS[2])
if holder == '` + failedMark + `' then return {4, ttl} end
return {3, ttl}
`

// commitScript: KEYS verdict, lock; ARGV token, verdict, life in ms.
// Writes the verdict (if it has life left) and releases the lock if the
// caller still holds it; a lock taken over by another stays.
const commitScript = `
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`

// failScript: KEYS lock; ARGV token. If the caller holds the lock, it
// becomes the failure mark for the rest of its life.
const failScript = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('SET', KEYS[1], '` + failedMark + `', 'PX', ttl) end
return 1
`

// releaseScript: KEYS lock; ARGV token. Deletes the lock if the caller
// holds it.
const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

// Fetch returns a fresh verdict for id by policy p, asking upstream (fetch)
// at most once per ID per fleet.lockTtl across the fleet:
//
//  1. A fresh verdict in the fleet tier is returned (SourceFleet).
//  2. Otherwise the caller takes id's lock in Redis, calls fetch, writes
//     the verdict for p.Life(v) and releases the lock (SourceFetched).
//  3. If another sidecar holds the lock, the caller polls until its
//     verdict arrives (SourceFleet), or its lock expires without one (the
//     holder died) and the caller takes over (step 2), or the caller's ctx
//     ends. A holder that outlives fleet.lockTtl loses the lock the same
//     way, so a slow upstream sees one more fetch per fleet.lockTtl.
//  4. If the holder's fetch fails, it keeps the lock, marked failed, to
//     the end of its life: callers meanwhile get ErrPeerFailed at once
//     instead of each asking upstream. If its caller's ctx ended instead,
//     it releases the lock and a waiter takes over.
//
// Redis failing, skipped or off never fails a Fetch: it calls fetch
// itself (SourceFetched). Each call to Redis waits at most fleet.timeout;
// waiting for another sidecar is bounded by ctx, which should carry the
// request's deadline. fetch gets ctx and must bound itself.
//
// When no fresh verdict can be had (fetch failed, the peer failed, ctx
// ended), the error is returned, wrapped so that errors.Is sees fetch's
// error, ErrPeerFailed or ctx.Err(); if the fleet tier held a verdict
// past its TTL, it comes with it, as SourceStale, for the caller to serve
// stale. fetch's verdict with a zero FetchedAt gets the current time.
func (t *Tier) Fetch(ctx context.Context, id string, p Policy, fetch func(context.Context) (Verdict, error)) (Verdict, Source, error) {
	f := &flight{t: t, id: id, p: p, fetch: fetch}
	if checkID(id) != nil {
		return f.direct(ctx)
	}
	c, err := t.begin("get")
	if err != nil {
		return f.direct(ctx)
	}
	f.s = t.live.Load()
	raw, found, d, err := t.getRaw(ctx, c, f.s, id)
	switch {
	case err != nil && ctx.Err() != nil:
		return f.staleOr(err)
	case err != nil:
		return f.direct(ctx)
	case !found:
		t.countLookup("miss", d)
	default:
		if v, ok := f.consider(raw); ok {
			t.countLookup("hit", d)
			return v, SourceFleet, nil
		}
		t.countLookup("stale", d)
	}
	return f.locked(ctx)
}

// flight is one Fetch past its first lookup.
type flight struct {
	t     *Tier
	s     *settings
	id    string
	p     Policy
	fetch func(context.Context) (Verdict, error)

	seen     string  // the bytes last seen under the verdict key
	stale    Verdict // a verdict past its TTL seen on the way, if hasStale
	hasStale bool
	waitFrom time.Time // when the caller began waiting for another holder; zero if not
}

// consider judges bytes found under the verdict key: a fresh verdict is
// returned; a stale one is kept for the error path; either way (and for a
// malformed entry) the bytes become what the lock script compares with.
func (f *flight) consider(raw []byte) (Verdict, bool) {
	f.seen = string(raw)
	v, err := decodeVerdict(raw)
	if err != nil {
		return Verdict{}, false
	}
	if f.p.fresh(v, f.t.opts.Now()) {
		return v, true
	}
	f.stale, f.hasStale = v, true
	return Verdict{}, false
}

// locked takes id's lock or waits for the holder's verdict.
func (f *flight) locked(ctx context.Context) (Verdict, Source, error) {
	token := rand.Text()
	poll := firstPoll
	for {
		c, err := f.t.begin("lock")
		if err != nil {
			return f.fallback(ctx)
		}
		r, err := f.t.lock(ctx, c, f.s, f.id, token, f.seen)
		switch {
		case err != nil && ctx.Err() != nil:
			return f.giveUp(ctx)
		case err != nil:
			return f.fallback(ctx)
		case r.changed != nil:
			if v, ok := f.consider(r.changed); ok {
				f.endWait("verdict")
				return v, SourceFleet, nil
			}
		case r.acquired:
			if !f.waitFrom.IsZero() {
				f.t.n.takeovers.Add(1)
				f.endWait("takeover")
			}
			return f.hold(ctx, token)
		case r.failed:
			f.t.n.peerFailures.Add(1)
			f.endWait("failed")
			return f.staleOr(fmt.Errorf("fetching %q: %w", f.id, ErrPeerFailed))
		default: // held by another
			if f.waitFrom.IsZero() {
				f.waitFrom = time.Now()
				f.t.n.lockWaits.Add(1)
			}
			if !sleep(ctx, min(poll, r.ttl+time.Millisecond)) {
				return f.giveUp(ctx)
			}
			poll = min(2*poll, maxPoll)
		}
	}
}

// hold runs fetch as the lock's holder and commits the outcome. The Redis
// calls after fetch run even if ctx has ended, each within fleet.timeout.
func (f *flight) hold(ctx context.Context, token string) (Verdict, Source, error) {
	f.t.n.fetches.Add(1)
	v, err := f.fetch(ctx)
	after := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		if v.FetchedAt.IsZero() {
			v.FetchedAt = f.t.opts.Now()
		}
		f.t.commit(after, f.s, f.id, token, v, f.p.Life(v))
		return v, SourceFetched, nil
	case ctx.Err() != nil:
		f.t.unlock(after, f.s, f.id, token, f.t.scripts.release)
	default:
		f.t.unlock(after, f.s, f.id, token, f.t.scripts.fail)
	}
	return f.staleOr(err)
}

// direct calls fetch without the fleet tier.
func (f *flight) direct(ctx context.Context) (Verdict, Source, error) {
	f.t.n.fetches.Add(1)
	v, err := f.fetch(ctx)
	if err != nil {
		return f.staleOr(err)
	}
	if v.FetchedAt.IsZero() {
		v.FetchedAt = f.t.opts.Now()
	}
	return v, SourceFetched, nil
}

// fallback is direct after Redis failed (or the tier was skipped) midway.
func (f *flight) fallback(ctx context.Context) (Verdict, Source, error) {
	f.endWait("fallback")
	return f.direct(ctx)
}

func (f *flight) giveUp(ctx context.Context) (Verdict, Source, error) {
	f.endWait("gave_up")
	return f.staleOr(fmt.Errorf("waiting for the fleet's fetch of %q: %w", f.id, ctx.Err()))
}

// staleOr returns err with the stale verdict seen, if any.
func (f *flight) staleOr(err error) (Verdict, Source, error) {
	if f.hasStale {
		return f.stale, SourceStale, err
	}
	return Verdict{}, SourceNone, err
}

// endWait reports the end of a wait for another holder, if there was one.
func (f *flight) endWait(outcome string) {
	if f.waitFrom.IsZero() {
		return
	}
	f.t.opts.Observer.LockWait(outcome, time.Since(f.waitFrom))
	f.waitFrom = time.Time{}
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// lockResult is what lockScript answered.
type lockResult struct {
	changed  []byte // the verdict, when it differs from what was seen
	acquired bool
	failed   bool          // the holder's fetch failed
	ttl      time.Duration // the lock's remaining life when held or failed
}

func (t *Tier) lock(ctx context.Context, c rueidis.Client, s *settings, id, token, seen string) (lockResult, error) {
	keys := []string{verdictKey(s.keyPrefix, id), lockKey(s.keyPrefix, id)}
	args := []string{token, strconv.FormatInt(s.lockTTL.Milliseconds(), 10), seen}
	r, d, err := t.call(ctx, s, "lock", keys[1], func(ctx context.Context) rueidis.RedisResult {
		return t.scripts.lock.Exec(ctx, c, keys, args)
	})
	if err != nil {
		return lockResult{}, err
	}
	res, err := parseLock(r)
	if err != nil {
		err = fmt.Errorf("locking %q in Redis: %w", keys[1], err)
		t.record(err)
		return lockResult{}, err
	}
	outcome := "held"
	switch {
	case res.changed != nil:
		outcome = "verdict"
	case res.acquired:
		outcome = "acquired"
	case res.failed:
		outcome = "failed"
	}
	t.opts.Observer.Call("lock", outcome, d)
	return res, nil
}

func parseLock(r rueidis.RedisResult) (lockResult, error) {
	a, err := r.ToArray()
	if err != nil || len(a) == 0 {
		return lockResult{}, errBadReply
	}
	kind, err := a[0].AsInt64()
	if err != nil {
		return lockResult{}, errBadReply
	}
	var res lockResult
	switch {
	case kind == 1 && len(a) == 2:
		res.changed, err = a[1].AsBytes()
	case kind == 2:
		res.acquired = true
	case (kind == 3 || kind == 4) && len(a) == 2:
		var ms int64
		ms, err = a[1].AsInt64()
		res.failed, res.ttl = kind == 4, time.Duration(ms)*time.Millisecond
		if ms < 0 { // a lock without expiry, not ours: poll at the slowest
			res.ttl = maxPoll
		}
	default:
		err = errBadReply
	}
	if err != nil {
		return lockResult{}, errBadReply
	}
	return res, nil
}

var errBadReply = errors.New("unexpected reply from a script")

// commit writes the fetched verdict and releases the lock. A failure is
// accounted (call) but not returned: the verdict is good, only sharing it
// failed, and the lock expires by itself.
func (t *Tier) commit(ctx context.Context, s *settings, id, token string, v Verdict, life time.Duration) {
	if checkVerdict(v) != nil {
		t.unlock(ctx, s, id, token, t.scripts.release)
		return
	}
	c, err := t.begin("commit")
	if err != nil {
		return
	}
	keys := []string{verdictKey(s.keyPrefix, id), lockKey(s.keyPrefix, id)}
	val := string(appendVerdict(make([]byte, 0, 16+len(v.Value)), v))
	args := []string{token, val, strconv.FormatInt(max(remaining(v, life, t.opts.Now()), 0), 10)}
	_, d, err := t.call(ctx, s, "commit", keys[0], func(ctx context.Context) rueidis.RedisResult {
		return t.scripts.commit.Exec(ctx, c, keys, args)
	})
	if err == nil {
		t.opts.Observer.Call("commit", "ok", d)
	}
}

// unlock runs the release or fail script on id's lock (both are op
// "release" to the Observer); failures are accounted only, the lock
// expires by itself.
func (t *Tier) unlock(ctx context.Context, s *settings, id, token string, script *rueidis.Lua) {
	c, err := t.begin("release")
	if err != nil {
		return
	}
	keys, args := []string{lockKey(s.keyPrefix, id)}, []string{token}
	_, d, err := t.call(ctx, s, "release", keys[0], func(ctx context.Context) rueidis.RedisResult {
		return script.Exec(ctx, c, keys, args)
	})
	if err == nil {
		t.opts.Observer.Call("release", "ok", d)
	}
}
