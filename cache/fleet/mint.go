package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// ErrOverBurst means a batch asks for more IDs than the fleet burst: it
// could never pass. Config validation keeps rateLimit.mint.fleetBurst at
// least limits.maxBatch while a fleet mint rate is set.
var ErrOverBurst = errors.New("fleet: more IDs at once than the fleet mint burst")

// gcraScript is the fleet mint limit, a GCRA (generic cell rate
// algorithm: a token bucket kept as one timestamp) on Redis' clock, so
// that the sidecars' clocks do not matter. KEYS: the limit's key; ARGV:
// the emission interval in µs (60e6/perMinute, fractional), the burst,
// the tokens asked for. The key holds the theoretical arrival time (TAT)
// in µs and expires when the bucket is full again. Returns {1, 0} when
// the tokens were taken, else {0, µs until they could be}; a refusal
// takes nothing.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local newtat = tat + n * interval
local allowat = newtat - burst * interval
if allowat > now then return {0, math.ceil(allowat - now)} end
redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1)
return {1, 0}
`

// AllowMint takes n tokens (a batch of n IDs) from the fleet mint limit
// of perMinute IDs per minute on average and burst at once, shared by
// every sidecar with the same fleet.keyPrefix. It is atomic in Redis (one
// script) and answers whether the mint may go on and, if not, when it
// could.
//
// The limit fails open: on any error (ErrOff, ErrSkipped, a Redis failure
// or timeout) ok is true, with the error, and the local limits alone
// decide. perMinute <= 0 means no limit. n above burst is refused with
// ErrOverBurst. A refusal takes no tokens.
func (t *Tier) AllowMint(ctx context.Context, n, perMinute, burst int) (ok bool, retryAfter time.Duration, err error) {
	if perMinute <= 0 || n <= 0 {
		return true, 0, nil
	}
	if n > burst {
		return false, 0, fmt.Errorf("taking %d mint tokens with a fleet burst of %d: %w", n, burst, ErrOverBurst)
	}
	c, err := t.begin("mint")
	if err != nil {
		return true, 0, err
	}
	s := t.live.Load()
	keys := []string{mintKey(s.keyPrefix)}
	args := []string{
		strconv.FormatFloat(60e6/float64(perMinute), 'f', 3, 64),
		strconv.Itoa(burst),
		strconv.Itoa(n),
	}
	r, d, err := t.call(ctx, s, "mint", keys[0], func(ctx context.Context) rueidis.RedisResult {
		return t.scripts.mint.Exec(ctx, c, keys, args)
	})
	if err != nil {
		return true, 0, err
	}
	allowed, wait, err := parseGCRA(r)
	if err != nil {
		err = fmt.Errorf("taking mint tokens from %q in Redis: %w", keys[0], err)
		t.record(err)
		return true, 0, err
	}
	if !allowed {
		t.n.mintRefused.Add(1)
		t.opts.Observer.Call("mint", "refused", d)
		return false, wait, nil
	}
	t.n.mintAllowed.Add(1)
	t.opts.Observer.Call("mint", "allowed", d)
	return true, 0, nil
}

func parseGCRA(r rueidis.RedisResult) (bool, time.Duration, error) {
	a, err := r.ToArray()
	if err != nil || len(a) != 2 {
		return false, 0, errBadReply
	}
	ok, err1 := a[0].AsInt64()
	us, err2 := a[1].AsInt64()
	if err1 != nil || err2 != nil {
		return false, 0, errBadReply
	}
	return ok == 1, time.Duration(us) * time.Microsecond, nil
}
