package ratelimit

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
)

// limitClock is a test clock that only moves when told.
type limitClock struct {
	start time.Time
	ns    atomic.Int64 // since start
}

func (c *limitClock) now() time.Time          { return c.start.Add(time.Duration(c.ns.Load())) }
func (c *limitClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// rateConfig is the default rateLimit section changed by mutate.
func rateConfig(mutate func(r *config.RateLimit)) config.RateLimit {
	r := config.Defaults().RateLimit
	if mutate != nil {
		mutate(&r)
	}
	return r
}

func newTestLimiter(r config.RateLimit) (*Limiter, *limitClock) {
	c := &limitClock{start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(r, c.now), c
}

// mintStep is one AllowMint call, after moving the clock by advance.
type mintStep struct {
	advance time.Duration
	caller  string
	n       int
	ok      bool
	retry   time.Duration
}

func TestLimitMint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   func(r *config.RateLimit)
		steps []mintStep
	}{
		{"per-caller limit isolates callers", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute = 60 }, []mintStep{
			{0, "a", 10, true, 0},
			{0, "a", 1, false, time.Second},
			{0, "b", 10, true, 0},
			{0, "default", 1, true, 0},
			{time.Second, "a", 1, true, 0},
			{0, "a", 1, false, time.Second},
			{0, "b", 3, false, 2 * time.Second}, // b has earned 1 meanwhile
		}},
		{"global limit applies across callers", func(r *config.RateLimit) { r.Mint.GlobalPerMinute = 60 }, []mintStep{
			{0, "a", 6, true, 0},
			{0, "b", 4, true, 0},
			{0, "c", 1, false, time.Second},
			{0, "default", 1, false, time.Second},
			{3 * time.Second, "c", 3, true, 0},
		}},
		{"burst", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.Mint.Burst = 6, 3 }, []mintStep{
			{0, "a", 3, true, 0},
			{0, "a", 1, false, 10 * time.Second},
			{10 * time.Second, "a", 1, true, 0},
			{0, "a", 1, false, 10 * time.Second},
			// Idle time fills the bucket up to the burst, no further.
			{time.Hour, "a", 3, true, 0},
			{0, "a", 1, false, 10 * time.Second},
		}},
		{"both limits: the larger wait wins", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.Mint.GlobalPerMinute = 60, 30 }, []mintStep{
			{0, "a", 10, true, 0},
			{0, "a", 1, false, 2 * time.Second},  // caller 1s, global 2s
			{0, "b", 5, false, 10 * time.Second}, // b's own bucket is full
			{2 * time.Second, "b", 1, true, 0},
		}},
		{"retry-after rounds up to whole seconds", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.Mint.Burst = 90, 2 }, []mintStep{
			{0, "a", 2, true, 0},
			{0, "a", 1, false, time.Second},                      // 0.67s
			{0, "a", 2, false, 2 * time.Second},                  // 1.33s
			{500 * time.Millisecond, "a", 1, false, time.Second}, // 0.17s
			{167 * time.Millisecond, "a", 1, true, 0},
		}},
		{"slow rate", func(r *config.RateLimit) { r.Mint.GlobalPerMinute, r.Mint.Burst = 1, 1 }, []mintStep{
			{0, "a", 1, true, 0},
			{0, "a", 1, false, time.Minute},
			{59 * time.Second, "b", 1, false, time.Second},
			{time.Second, "b", 1, true, 0},
		}},
		{"unlimited", nil, []mintStep{
			{0, "a", 1000, true, 0},
			{0, "a", 1000, true, 0},
		}},
		{"empty batch", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.Mint.Burst = 1, 1 }, []mintStep{
			{0, "a", 1, true, 0},
			{0, "a", 0, true, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, clk := newTestLimiter(rateConfig(tc.cfg))
			for i, s := range tc.steps {
				clk.advance(s.advance)
				ok, retry := l.AllowMint(s.caller, s.n)
				if ok != s.ok || retry != s.retry {
					t.Errorf("step %d: AllowMint(%q, %d) = %v, %v; want %v, %v", i, s.caller, s.n, ok, retry, s.ok, s.retry)
				}
			}
		})
	}
}

// bucketTokens returns what caller's bucket and the global mint bucket hold
// now (-1 for no bucket).
func bucketTokens(l *Limiter, caller string) (mine, global float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	mine, global = -1, -1
	if e, ok := l.callers[caller]; ok {
		mine = e.Value.(*callerBucket).lim.TokensAt(now)
	}
	if l.global != nil {
		global = l.global.TokensAt(now)
	}
	return mine, global
}

func TestLimitRefusedBatchConsumesNothing(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(rateConfig(func(r *config.RateLimit) {
		r.Mint.PerCallerPerMinute, r.Mint.GlobalPerMinute = 60, 60
	}))
	for i, s := range []struct {
		caller           string
		n                int
		ok               bool
		wantMine, wantGl float64
	}{
		{"a", 6, true, 4, 4},
		{"b", 5, false, 10, 4}, // global short: b's bucket untouched
		{"a", 5, false, 4, 4},  // a's bucket short: global untouched
		{"b", 4, true, 6, 0},
		{"a", 1, false, 4, 0},
	} {
		ok, _ := l.AllowMint(s.caller, s.n)
		mine, gl := bucketTokens(l, s.caller)
		if ok != s.ok || mine != s.wantMine || gl != s.wantGl {
			t.Errorf("step %d: AllowMint(%q, %d) = %v, tokens %v/%v; want %v, %v/%v", i, s.caller, s.n, ok, mine, gl, s.ok, s.wantMine, s.wantGl)
		}
	}
}

func TestLimitValidate(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration
		ok      bool
		retry   time.Duration
	}
	for _, tc := range []struct {
		name      string
		perSecond int
		burst     int
		steps     []step
	}{
		{"burst then rate", 10, 3, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0},
			{0, false, time.Second},
			{100 * time.Millisecond, true, 0},
			{0, false, time.Second},
		}},
		{"one per second", 1, 1, []step{
			{0, true, 0},
			{0, false, time.Second},
			{999 * time.Millisecond, false, time.Second},
			{time.Millisecond, true, 0},
		}},
		{"unlimited", 0, 1, []step{{0, true, 0}, {0, true, 0}, {0, true, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, clk := newTestLimiter(rateConfig(func(r *config.RateLimit) {
				r.Validate = config.ValidateRate{GlobalPerSecond: tc.perSecond, Burst: tc.burst}
			}))
			for i, s := range tc.steps {
				clk.advance(s.advance)
				if ok, retry := l.AllowValidate(); ok != s.ok || retry != s.retry {
					t.Errorf("step %d: AllowValidate() = %v, %v; want %v, %v", i, ok, retry, s.ok, s.retry)
				}
			}
		})
	}
}

// TestRateLimitChecksAllocateNothing: the checks, allowed or refused,
// allocate nothing once the caller is known. Not parallel: the allocation
// count is process-wide (and AllocsPerRun refuses to run in parallel tests).
func TestRateLimitChecksAllocateNothing(t *testing.T) {
	// The clock stands still: a burst of 1000 covers every call that
	// AllocsPerRun makes; a burst of 1, charged once, refuses them all.
	limitedTo := func(burst int) *Limiter {
		l, _ := newTestLimiter(rateConfig(func(r *config.RateLimit) {
			r.Validate = config.ValidateRate{GlobalPerSecond: 1, Burst: burst}
			r.Mint = config.MintRate{PerCallerPerMinute: 1, GlobalPerMinute: 1, Burst: burst}
		}))
		l.AllowMint("a", 1) // a is known
		l.AllowValidate()
		return l
	}
	unlimited, _ := newTestLimiter(rateConfig(nil))
	allowing, refusing := limitedTo(1000), limitedTo(1)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"AllowValidate unlimited", func() { unlimited.AllowValidate() }},
		{"AllowMint unlimited", func() { unlimited.AllowMint("a", 1) }},
		{"AllowValidate refused", func() { refusing.AllowValidate() }},
		{"AllowMint refused, known caller", func() { refusing.AllowMint("a", 1) }},
		{"AllowValidate allowed", func() { allowing.AllowValidate() }},
		{"AllowMint allowed, known caller", func() { allowing.AllowMint("a", 1) }},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", tc.name, n)
		}
	}
}

// TestRateLimitUnlimitedTakesNoLock: without limits neither check takes the
// limiter's lock; they answer while it is held.
func TestRateLimitUnlimitedTakesNoLock(t *testing.T) {
	t.Parallel()
	unlimited, _ := newTestLimiter(rateConfig(nil))
	unlimited.mu.Lock()
	done := make(chan bool)
	go func() {
		ok1, _ := unlimited.AllowValidate()
		ok2, _ := unlimited.AllowMint("a", 5)
		done <- ok1 && ok2
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Error("unlimited checks refused a request")
		}
	case <-time.After(10 * time.Second):
		t.Error("unlimited checks wait for the limiter's lock")
	}
	unlimited.mu.Unlock()
}

func TestLimitReconfigure(t *testing.T) {
	t.Parallel()
	perCaller := func(perMinute, burst int) config.RateLimit {
		return rateConfig(func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.Mint.Burst = perMinute, burst })
	}
	for _, tc := range []struct {
		name  string
		start config.RateLimit
		run   func(t *testing.T, l *Limiter, clk *limitClock)
	}{
		{"faster rate applies to an existing caller", perCaller(60, 10), func(t *testing.T, l *Limiter, clk *limitClock) {
			mustMint(t, l, "a", 10, true)
			l.Reconfigure(perCaller(600, 10))
			clk.advance(time.Second)
			mustMint(t, l, "a", 10, true) // 1 at the old rate
			mustMint(t, l, "a", 1, false)
		}},
		{"slower rate applies to an existing caller", perCaller(600, 10), func(t *testing.T, l *Limiter, clk *limitClock) {
			mustMint(t, l, "a", 10, true)
			l.Reconfigure(perCaller(60, 10))
			clk.advance(time.Second)
			mustMint(t, l, "a", 2, false) // 10 at the old rate
			mustMint(t, l, "a", 1, true)
		}},
		{"tokens earned before the change keep the old rate", perCaller(60, 10), func(t *testing.T, l *Limiter, clk *limitClock) {
			mustMint(t, l, "a", 10, true)
			clk.advance(2 * time.Second)
			l.Reconfigure(perCaller(6, 10))
			mustMint(t, l, "a", 2, true)
			mustMint(t, l, "a", 1, false)
		}},
		{"smaller burst caps the tokens held", perCaller(60, 20), func(t *testing.T, l *Limiter, _ *limitClock) {
			mustMint(t, l, "a", 1, true) // 19 left
			l.Reconfigure(perCaller(60, 5))
			mustMint(t, l, "a", 6, false)
			mustMint(t, l, "a", 5, true)
		}},
		{"per-caller limit off then on", perCaller(60, 10), func(t *testing.T, l *Limiter, _ *limitClock) {
			mustMint(t, l, "a", 10, true)
			l.Reconfigure(perCaller(0, 10))
			mustMint(t, l, "a", 1000, true)
			if n := len(l.callers); n != 0 {
				t.Errorf("%d callers tracked without a per-caller limit", n)
			}
			l.Reconfigure(perCaller(60, 10))
			mustMint(t, l, "a", 10, true) // a new, full bucket
			mustMint(t, l, "a", 1, false)
		}},
		{"global limit on", rateConfig(nil), func(t *testing.T, l *Limiter, _ *limitClock) {
			mustMint(t, l, "a", 100, true)
			l.Reconfigure(rateConfig(func(r *config.RateLimit) { r.Mint.GlobalPerMinute = 60 }))
			mustMint(t, l, "a", 6, true)
			mustMint(t, l, "b", 4, true)
			mustMint(t, l, "c", 1, false)
		}},
		{"validate limit on, changed, off", rateConfig(nil), func(t *testing.T, l *Limiter, clk *limitClock) {
			validate := func(perSecond int) config.RateLimit {
				return rateConfig(func(r *config.RateLimit) { r.Validate = config.ValidateRate{GlobalPerSecond: perSecond, Burst: 2} })
			}
			l.Reconfigure(validate(1))
			mustValidate(t, l, true)
			mustValidate(t, l, true)
			mustValidate(t, l, false)
			l.Reconfigure(validate(10))
			clk.advance(100 * time.Millisecond) // 0.1 token at the old rate
			mustValidate(t, l, true)
			mustValidate(t, l, false)
			l.Reconfigure(validate(0))
			mustValidate(t, l, true)
			if l.validate.Load() != nil {
				t.Error("validate bucket kept without a validate limit")
			}
		}},
		{"smaller maxCallers drops the least recently used", perCaller(60, 10), func(t *testing.T, l *Limiter, _ *limitClock) {
			for _, c := range []string{"a", "b", "c", "d", "e", "a"} {
				mustMint(t, l, c, 1, true)
			}
			next := perCaller(60, 10)
			next.MaxCallers = 2
			l.Reconfigure(next)
			checkCallers(t, l, "a", "e")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, clk := newTestLimiter(tc.start)
			tc.run(t, l, clk)
		})
	}
}

func mustMint(t *testing.T, l *Limiter, caller string, n int, want bool) {
	t.Helper()
	if ok, retry := l.AllowMint(caller, n); ok != want {
		t.Errorf("AllowMint(%q, %d) = %v (retry %v), want %v", caller, n, ok, retry, want)
	}
}

func mustValidate(t *testing.T, l *Limiter, want bool) {
	t.Helper()
	if ok, retry := l.AllowValidate(); ok != want {
		t.Errorf("AllowValidate() = %v (retry %v), want %v", ok, retry, want)
	}
}

// checkCallers fails unless the caller table holds exactly want, most
// recently used first.
func checkCallers(t *testing.T, l *Limiter, want ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var got []string
	for e := l.lru.Front(); e != nil; e = e.Next() {
		got = append(got, e.Value.(*callerBucket).id)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(l.callers) != len(want) {
		t.Errorf("callers = %q (map %d), want %q", got, len(l.callers), want)
	}
}

func TestLimitCallersLRU(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(rateConfig(func(r *config.RateLimit) {
		r.Mint.PerCallerPerMinute, r.MaxCallers = 60, 3
	}))
	mustMint(t, l, "b", 10, true)
	mustMint(t, l, "b", 1, false) // b is out of tokens
	mustMint(t, l, "a", 1, true)
	mustMint(t, l, "c", 1, true)
	mustMint(t, l, "a", 1, true) // a is used again: b is the least recently used
	checkCallers(t, l, "a", "c", "b")
	mustMint(t, l, "d", 1, true) // a 4th caller evicts b
	checkCallers(t, l, "d", "a", "c")
	// b was dropped: it comes back with a full bucket (and evicts c).
	mustMint(t, l, "b", 10, true)
	checkCallers(t, l, "b", "d", "a")
	// A refused request counts as use too.
	mustMint(t, l, "b", 1, false)
	mustMint(t, l, "a", 1, true)
	mustMint(t, l, "d", 1, true)
	mustMint(t, l, "e", 1, true)
	checkCallers(t, l, "e", "d", "a")
}

// TestLimitCallersBounded: 100,000 distinct callers leave maxCallers
// entries, the newest, and the heap grows by about 200 bytes per entry kept
// plus the IDs, not per caller seen (that would be some 25 MB). Not parallel:
// heap figures are process-wide.
func TestLimitCallersBounded(t *testing.T) {
	const maxCallers, distinct = 1000, 100_000
	before := heapInUse()
	l, _ := newTestLimiter(rateConfig(func(r *config.RateLimit) {
		r.Mint.PerCallerPerMinute, r.MaxCallers = 60, maxCallers
	}))
	for i := range distinct {
		mustMint(t, l, fmt.Sprintf("caller-%06d", i), 1, true)
	}
	grown := int64(heapInUse()) - int64(before)
	l.mu.Lock()
	n, listed := len(l.callers), l.lru.Len()
	_, oldest := l.callers["caller-000000"]
	_, newest := l.callers[fmt.Sprintf("caller-%06d", distinct-1)]
	_, firstKept := l.callers[fmt.Sprintf("caller-%06d", distinct-maxCallers)]
	_, firstDropped := l.callers[fmt.Sprintf("caller-%06d", distinct-maxCallers-1)]
	l.mu.Unlock()
	if n != maxCallers || listed != maxCallers {
		t.Errorf("after %d callers: map %d, list %d; want %d", distinct, n, listed, maxCallers)
	}
	if oldest || !newest || !firstKept || firstDropped {
		t.Errorf("kept: oldest %v, newest %v, %dth newest %v, next %v; want false, true, true, false", oldest, newest, maxCallers, firstKept, firstDropped)
	}
	if limit := int64(maxCallers * 1000); grown > limit {
		t.Errorf("heap grew by %d bytes for %d callers kept, want at most %d", grown, maxCallers, limit)
	}
	runtime.KeepAlive(l)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestLimitConcurrentGlobalIsExact(t *testing.T) {
	t.Parallel()
	// The clock stands still: exactly one burst passes, however the
	// goroutines interleave with each other and with reloads.
	cfg := rateConfig(func(r *config.RateLimit) {
		r.Mint.PerCallerPerMinute, r.Mint.GlobalPerMinute, r.Mint.Burst = 60, 60, 100
		r.Validate.GlobalPerSecond, r.MaxCallers = 10, 16
	})
	l, _ := newTestLimiter(cfg)
	var mints, validates atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if ok, _ := l.AllowMint(fmt.Sprintf("c%d-%d", g, i%20), 1); ok {
					mints.Add(1)
				}
				if ok, _ := l.AllowValidate(); ok {
					validates.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			l.Reconfigure(cfg)
		}
	})
	wg.Wait()
	if mints.Load() != 100 || validates.Load() != 100 {
		t.Errorf("admitted %d mints and %d validates, want 100 each", mints.Load(), validates.Load())
	}
}

func BenchmarkAllowValidate(b *testing.B) {
	for _, bc := range []struct {
		name      string
		perSecond int
	}{
		{"unlimited", 0},
		{"limited", 1_000_000_000}, // never refuses: measures the AllowN
	} {
		l := New(rateConfig(func(r *config.RateLimit) { r.Validate.GlobalPerSecond = bc.perSecond }), nil)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.AllowValidate()
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.AllowValidate()
				}
			})
		})
	}
}

func BenchmarkAllowMint(b *testing.B) {
	const fast = 1_000_000_000 // per minute: never refuses
	for _, bc := range []struct {
		name    string
		mutate  func(r *config.RateLimit)
		callers int
	}{
		{"unlimited", nil, 1},
		{"per-caller and global", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.Mint.GlobalPerMinute = fast, fast }, 1000},
		{"new caller each time", func(r *config.RateLimit) { r.Mint.PerCallerPerMinute, r.MaxCallers = fast, 1000 }, 1 << 20},
	} {
		l := New(rateConfig(bc.mutate), nil)
		ids := make([]string, min(bc.callers, 1<<20))
		for i := range ids {
			ids[i] = fmt.Sprintf("caller-%d", i)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l.AllowMint(ids[i%len(ids)], 1)
				i++
			}
		})
	}
}
