package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Get returns id's verdict from the fleet tier, found or not; freshness is
// the caller's to judge from FetchedAt (Fetch judges it by a Policy). A
// malformed entry is a miss with an error wrapping ErrBadEntry. It waits
// on Redis at most fleet.timeout, and returns ErrOff, ErrSkipped or
// ErrClosed at once when the tier is not in use.
func (t *Tier) Get(ctx context.Context, id string) (Verdict, bool, error) {
	if err := checkID(id); err != nil {
		return Verdict{}, false, fmt.Errorf("reading a verdict: %w", err)
	}
	c, err := t.begin("get")
	if err != nil {
		return Verdict{}, false, err
	}
	raw, found, d, err := t.getRaw(ctx, c, t.live.Load(), id)
	if err != nil || !found {
		if err == nil {
			t.countLookup("miss", d)
		}
		return Verdict{}, false, err
	}
	v, err := decodeVerdict(raw)
	if err != nil {
		t.countLookup("miss", d)
		return Verdict{}, false, fmt.Errorf("reading the verdict of %q: %w", id, err)
	}
	t.countLookup("hit", d)
	return v, true, nil
}

// countLookup counts a lookup's outcome: "hit", "miss" or "stale".
func (t *Tier) countLookup(outcome string, d time.Duration) {
	if outcome == "hit" {
		t.n.hits.Add(1)
	} else {
		t.n.misses.Add(1)
	}
	t.opts.Observer.Call("get", outcome, d)
}

// getRaw reads the bytes under id's verdict key.
func (t *Tier) getRaw(ctx context.Context, c rueidis.Client, s *settings, id string) ([]byte, bool, time.Duration, error) {
	key := verdictKey(s.keyPrefix, id)
	r, d, err := t.call(ctx, s, "get", key, func(ctx context.Context) rueidis.RedisResult {
		return c.Do(ctx, c.B().Get().Key(key).Build())
	})
	if err != nil {
		return nil, false, d, err
	}
	b, err := r.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, false, d, nil
	}
	return b, err == nil, d, err
}

// Put writes v as id's verdict for the rest of its life: life counts from
// v.FetchedAt (the current time if zero), so a verdict fetched a while ago
// lives only what is left; nothing is written when nothing is left. The
// caller passes its Policy's Life(v). It waits on Redis at most
// fleet.timeout.
func (t *Tier) Put(ctx context.Context, id string, v Verdict, life time.Duration) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("writing a verdict: %w", err)
	}
	if err := checkVerdict(v); err != nil {
		return fmt.Errorf("writing the verdict of %q: %w", id, err)
	}
	c, err := t.begin("put")
	if err != nil {
		return err
	}
	if v.FetchedAt.IsZero() {
		v.FetchedAt = t.opts.Now()
	}
	left := remaining(v, life, t.opts.Now())
	if left <= 0 {
		return nil
	}
	s := t.live.Load()
	key := verdictKey(s.keyPrefix, id)
	val := rueidis.BinaryString(appendVerdict(make([]byte, 0, 16+len(v.Value)), v))
	_, d, err := t.call(ctx, s, "put", key, func(ctx context.Context) rueidis.RedisResult {
		return c.Do(ctx, c.B().Set().Key(key).Value(val).PxMilliseconds(left).Build())
	})
	if err == nil {
		t.opts.Observer.Call("put", "ok", d)
	}
	return err
}

// remaining returns the whole milliseconds left of v's life at now.
func remaining(v Verdict, life time.Duration, now time.Time) int64 {
	return (life - now.Sub(v.FetchedAt)).Milliseconds()
}
