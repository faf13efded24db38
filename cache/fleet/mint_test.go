package fleet

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// redisTime returns the server's clock, which the limit runs on.
func redisTime(t *testing.T, srv *redisServer) time.Time {
	t.Helper()
	a, err := srv.do("", "TIME").AsStrSlice()
	if err != nil || len(a) != 2 {
		t.Fatalf("TIME: %v %v", a, err)
	}
	s, _ := strconv.ParseInt(a[0], 10, 64)
	us, _ := strconv.ParseInt(a[1], 10, 64)
	return time.Unix(s, us*1000)
}

// TestAllowMintAcrossTiers: three sidecars minting as fast as they are let
// through get, together, at most the rate plus one burst over the window
// (measured on Redis' clock), and at least the burst.
func TestAllowMintAcrossTiers(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	var tiers []*Tier
	for range 3 {
		tiers = append(tiers, newTier(t, cfg, testOptions(), true))
	}
	// 6000 per minute: one every 10ms; the window is 600ms.
	const perMinute, burst, window = 6000, 20, 600 * time.Millisecond
	interval := time.Minute / perMinute
	var allowed, refused atomic.Int64
	start := redisTime(t, srv)
	stop := time.Now().Add(window)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				ok, retry, err := tiers[i].AllowMint(context.Background(), 1, perMinute, burst)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					allowed.Add(1)
					continue
				}
				refused.Add(1)
				if retry <= 0 || retry > interval {
					t.Errorf("retryAfter %s for one token at one per %s", retry, interval)
				}
				time.Sleep(min(retry, 2*time.Millisecond)) // a client backing off, a little early
			}
		})
	}
	wg.Wait()
	elapsed := redisTime(t, srv).Sub(start)
	most := burst + int64(math.Ceil(float64(elapsed)/float64(interval))) + 1
	if n := allowed.Load(); n > most || n < burst {
		t.Errorf("%d mints let through in %s across 3 sidecars; want between the burst %d and %d (burst + rate × time)", n, elapsed, burst, most)
	}
	t.Logf("%d let through, %d refused in %s; at most %d", allowed.Load(), refused.Load(), elapsed, most)
	if refused.Load() == 0 {
		t.Error("nothing was refused")
	}
	var sum Stats
	for _, tr := range tiers {
		s := tr.Stats()
		sum.MintAllowed += s.MintAllowed
		sum.MintRefused += s.MintRefused
	}
	if sum.MintAllowed != allowed.Load() || sum.MintRefused != refused.Load() {
		t.Errorf("stats count %d allowed, %d refused; the callers saw %d, %d", sum.MintAllowed, sum.MintRefused, allowed.Load(), refused.Load())
	}
}

// TestAllowMintBatch: a batch takes its n tokens at once or none; a batch
// larger than the burst is refused with ErrOverBurst; no rate means no
// limit.
func TestAllowMintBatch(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), true)
	ctx := context.Background()
	const perMinute, burst = 60, 10 // one a second
	if ok, _, err := tr.AllowMint(ctx, burst, perMinute, burst); !ok || err != nil {
		t.Fatalf("a full burst from a full bucket: %v, %v", ok, err)
	}
	ok, retry, err := tr.AllowMint(ctx, 3, perMinute, burst)
	if ok || err != nil || retry <= 2*time.Second || retry > 3*time.Second {
		t.Errorf("3 more at once: %v, retry after %s, %v; want a refusal for about 3s", ok, retry, err)
	}
	// The refusal took nothing: one token is back after about a second.
	ok, retry, err = tr.AllowMint(ctx, 1, perMinute, burst)
	if ok || err != nil || retry <= 0 || retry > time.Second {
		t.Errorf("1 more: %v, retry after %s, %v; want a refusal for at most 1s", ok, retry, err)
	}
	if ok, _, err := tr.AllowMint(ctx, burst+1, perMinute, burst); ok || !errors.Is(err, ErrOverBurst) {
		t.Errorf("a batch above the burst: %v, %v; want ErrOverBurst", ok, err)
	}
	if ok, _, err := tr.AllowMint(ctx, 1000, 0, burst); !ok || err != nil {
		t.Errorf("no rate: %v, %v; want no limit", ok, err)
	}
}
