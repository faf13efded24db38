package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingObserver counts lock calls answered "held by another" and lock
// waits by outcome, and signals when enough "held" answers came.
type countingObserver struct {
	noObserver
	held      atomic.Int64
	heldGoal  int64
	heldReach chan struct{}
	once      sync.Once

	mu    sync.Mutex
	waits map[string]int
}

func newCountingObserver(goal int64) *countingObserver {
	return &countingObserver{heldGoal: goal, heldReach: make(chan struct{}), waits: map[string]int{}}
}

func (o *countingObserver) LockWait(outcome string, _ time.Duration) {
	o.mu.Lock()
	o.waits[outcome]++
	o.mu.Unlock()
}

func (o *countingObserver) waitCount(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.waits[outcome]
}

// Call counts lock calls that found the lock held by another.
func (o *countingObserver) Call(op, outcome string, _ time.Duration) {
	if op == "lock" && outcome == "held" {
		if o.held.Add(1) >= o.heldGoal {
			o.once.Do(func() { close(o.heldReach) })
		}
	}
}

// TestFetchSingleFlightAcrossTiers: 200 concurrent Fetches of one unknown
// ID spread over three tiers (three sidecars) on one Redis call fetch
// exactly once (but for calls the tiers count as failed, and once per
// fleet.lockTtl a busy machine made the flight outlive); every caller gets
// its verdict.
func TestFetchSingleFlightAcrossTiers(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	obs := newCountingObserver(199)
	var tiers []*Tier
	for range 3 {
		opts := testOptions()
		opts.Observer = obs
		tiers = append(tiers, newTier(t, cfg, opts, true))
	}
	const callers = 200
	var fetches atomic.Int64
	var mu sync.Mutex
	var lastFetch time.Time // when the latest fetch began
	fetch := func(ctx context.Context) (Verdict, error) {
		fetches.Add(1)
		mu.Lock()
		if now := time.Now(); now.After(lastFetch) {
			lastFetch = now
		}
		mu.Unlock()
		// Hold the lock, as a slow upstream would, until the others have
		// found it held 199 times (each once, on average); bounded so
		// that the test cannot hang.
		select {
		case <-obs.heldReach:
		case <-time.After(5 * time.Second):
		}
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	}
	var wg sync.WaitGroup
	sources := make([]Source, callers)
	errs := make([]error, callers)
	begin := time.Now() // before any lock was taken
	for i := range callers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var v Verdict
			v, sources[i], errs[i] = tiers[i%3].Fetch(ctx, "CT-A-CHI-1234-I-24-A-0", testPolicy(), fetch)
			if errs[i] == nil && (!v.Valid || string(v.Value) != "PEO") {
				errs[i] = fmt.Errorf("verdict %+v", v)
			}
		})
	}
	wg.Wait()
	// One fetch, and one more for each call to Redis that failed (its
	// caller fetched by itself: a machine too slow for fleet.timeout,
	// which the tiers count) and for each fleet.lockTtl that passed before
	// the last fetch began: the lock is taken anew only once the one
	// before expired (its holder slow past lockTtl on a busy machine, or
	// taken by a lock call that timed out), which is the bound the fleet
	// promises, one upstream call per ID per lockTtl.
	var failed, takeovers int64
	for _, tr := range tiers {
		st := tr.Stats()
		failed += st.Errors + st.Skipped
		takeovers += st.Takeovers
	}
	n := fetches.Load()
	expiries := int64(lastFetch.Sub(begin) / cfg.LockTTL)
	if n < 1 || n > 1+failed+expiries {
		t.Errorf("fetch called %d times across the fleet, want 1, plus at most one per failed call (%d) and per lockTtl (%s) passed before the last fetch began (%d; %d takeovers)",
			n, failed, cfg.LockTTL, expiries, takeovers)
	}
	count := map[Source]int{}
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
		}
		count[sources[i]]++
	}
	if count[SourceFetched] != int(n) || count[SourceFleet] != callers-int(n) {
		t.Errorf("sources %v, want %d fetched (one per fetch) and the rest of %d from the fleet", count, n, callers)
	}
	var waits int64
	for _, tr := range tiers {
		waits += tr.Stats().LockWaits
	}
	if waits == 0 {
		t.Error("no caller waited for the holder's verdict")
	}
}

// TestFetchHolderKilled: a sidecar killed (SIGKILL) while it holds an ID's
// lock mid-fetch delays the others until the lock expires; then one of
// them takes over and fetches once, and every caller gets an answer
// (before its own 10s deadline).
func TestFetchHolderKilled(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.LockTTL = 400 * time.Millisecond
	const id = "CT-A-CHI-4242-I-24-A-0"
	holder := startHolder(t, srv, cfg.KeyPrefix, id, cfg.LockTTL)
	locked := time.Now() // the holder took the lock before this

	obs := newCountingObserver(1 << 30)
	var tiers []*Tier
	for range 2 {
		opts := testOptions()
		opts.Observer = obs
		tiers = append(tiers, newTier(t, cfg, opts, true))
	}
	var fetches atomic.Int64
	fetch := func(context.Context) (Verdict, error) {
		fetches.Add(1)
		return Verdict{Valid: true, Value: []byte("ORG")}, nil
	}
	const callers = 20
	var wg sync.WaitGroup
	errs := make([]error, callers)
	started := make(chan struct{}, callers)
	for i := range callers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			started <- struct{}{}
			v, _, err := tiers[i%2].Fetch(ctx, id, testPolicy(), fetch)
			if err == nil && string(v.Value) != "ORG" {
				err = fmt.Errorf("verdict %+v", v)
			}
			errs[i] = err
		})
	}
	for range callers {
		<-started
	}
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	took := time.Since(locked)
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	var failed int64 // calls to Redis that failed: each lets a caller fetch itself
	for _, tr := range tiers {
		failed += tr.Stats().Errors + tr.Stats().Skipped
	}
	if n := fetches.Load(); n < 1 || n > 1+failed {
		t.Errorf("fetch called %d times after the holder died, want 1, plus at most one per failed call (%d)", n, failed)
	}
	if got := obs.waitCount("takeover"); got != 1 {
		t.Errorf("%d takeovers, want 1", got)
	}
	// Waiters that sat out their own 10s deadline instead would have
	// failed above (gave up): the takeover at the lock's expiry answered them.
	t.Logf("the callers were answered %s after the holder locked (lockTtl %s)", took, cfg.LockTTL)
}

// TestFetchPeerFailure: when the holder's fetch fails, the callers waiting
// on it and those arriving within the lock's life get ErrPeerFailed at once
// (with the stale verdict the fleet holds), no one else asks upstream; once
// the lock has expired, the next Fetch asks again.
func TestFetchPeerFailure(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.LockTTL = 300 * time.Millisecond
	a := newTier(t, cfg, testOptions(), true)
	b := newTier(t, cfg, testOptions(), true)
	ctx := context.Background()
	const id = "CT-A-CHI-1111-I-24-A-0"
	old := Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now().Add(-20 * time.Minute)}
	if err := a.Put(ctx, id, old, time.Hour); err != nil {
		t.Fatal(err)
	}
	errUpstream := errors.New("upstream: unavailable")
	inFetch, release := make(chan struct{}), make(chan struct{})
	var fetches atomic.Int64
	failing := func(context.Context) (Verdict, error) {
		if fetches.Add(1) == 1 {
			close(inFetch)
			<-release
		}
		return Verdict{}, errUpstream
	}
	type result struct {
		v   Verdict
		src Source
		err error
	}
	holderDone := make(chan result, 1)
	go func() {
		v, src, err := a.Fetch(ctx, id, testPolicy(), failing)
		holderDone <- result{v, src, err}
	}()
	<-inFetch
	waiterDone := make(chan result, 1)
	go func() {
		v, src, err := b.Fetch(ctx, id, testPolicy(), failing)
		waiterDone <- result{v, src, err}
	}()
	close(release)
	h := <-holderDone
	if !errors.Is(h.err, errUpstream) || h.src != SourceStale || string(h.v.Value) != "PEO" {
		t.Errorf("holder: %+v, %s, %v; want the stale verdict with the upstream error", h.v, h.src, h.err)
	}
	w := <-waiterDone
	if !errors.Is(w.err, ErrPeerFailed) || w.src != SourceStale || !w.v.FetchedAt.Equal(old.FetchedAt.Truncate(time.Millisecond)) {
		t.Errorf("waiter: %+v, %s, %v; want the stale verdict with ErrPeerFailed", w.v, w.src, w.err)
	}
	// Within the lock's life: fail fast, no upstream call.
	start := time.Now()
	if _, _, err := b.Fetch(ctx, id, testPolicy(), failing); !errors.Is(err, ErrPeerFailed) {
		if time.Since(start) < cfg.LockTTL { // not a slow machine past the lock's life
			t.Errorf("a Fetch within the failed lock's life: %v, want ErrPeerFailed", err)
		}
	}
	if n := fetches.Load(); n != 1 && time.Since(start) < cfg.LockTTL {
		t.Errorf("upstream asked %d times within lockTtl of a failure, want 1", n)
	}
	// After the lock's life: asked again.
	ms, err := srv.do("", "PTTL", lockKey(cfg.KeyPrefix, id)).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(ms+5) * time.Millisecond) // the lock's life is the behaviour under test
	before := fetches.Load()
	ok := func(context.Context) (Verdict, error) {
		fetches.Add(1)
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	}
	if v, src, err := b.Fetch(ctx, id, testPolicy(), ok); err != nil || src != SourceFetched || !v.Valid {
		t.Errorf("after the lock expired: %+v, %s, %v", v, src, err)
	}
	if fetches.Load() != before+1 {
		t.Errorf("after the lock expired upstream was asked %d times, want 1", fetches.Load()-before)
	}
	if got := b.Stats().PeerFailures; got < 1 {
		t.Errorf("PeerFailures = %d", got)
	}
}

// TestFetchHolderGaveUp: a holder whose caller's ctx ends releases the lock
// instead of marking it failed, so a waiter takes over at once.
func TestFetchHolderGaveUp(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.LockTTL = time.Minute // a takeover by expiry would time the test out
	a := newTier(t, cfg, testOptions(), true)
	const id = "CT-A-CHI-2222-I-24-A-0"
	ctxA, cancelA := context.WithCancel(context.Background())
	inFetch := make(chan struct{})
	holderDone := make(chan error, 1)
	go func() {
		_, _, err := a.Fetch(ctxA, id, testPolicy(), func(ctx context.Context) (Verdict, error) {
			close(inFetch)
			<-ctx.Done()
			return Verdict{}, ctx.Err()
		})
		holderDone <- err
	}()
	<-inFetch
	obs := newCountingObserver(1)
	opts := testOptions()
	opts.Observer = obs
	c := newTier(t, cfg, opts, true)
	waiterDone := make(chan error, 1)
	var fetches atomic.Int64
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, src, err := c.Fetch(ctx, id, testPolicy(), func(context.Context) (Verdict, error) {
			fetches.Add(1)
			return Verdict{Valid: true}, nil
		})
		if err == nil && src != SourceFetched {
			err = fmt.Errorf("source %s", src)
		}
		waiterDone <- err
	}()
	<-obs.heldReach // the waiter found the lock held
	cancelA()
	if err := <-holderDone; !errors.Is(err, context.Canceled) {
		t.Errorf("holder: %v", err)
	}
	if err := <-waiterDone; err != nil {
		t.Errorf("waiter: %v", err)
	}
	if fetches.Load() != 1 || obs.waitCount("takeover") != 1 {
		t.Errorf("waiter fetched %d times, %d takeovers; want 1 and 1", fetches.Load(), obs.waitCount("takeover"))
	}
}

// TestFetchFreshStaleAndWaiterDeadline: a fresh fleet verdict is a hit
// without fetch; a stale one is refetched; a caller whose ctx ends while
// another holds the lock gets the stale verdict with ctx's error.
func TestFetchFreshStaleAndWaiterDeadline(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	tr := newTier(t, cfg, testOptions(), true)
	ctx := context.Background()
	p := Policy{TTL: time.Minute, NegativeTTL: 10 * time.Second, StaleIfError: time.Hour}
	never := func(context.Context) (Verdict, error) {
		t.Error("fetch called for a fresh verdict")
		return Verdict{}, nil
	}

	fresh := Verdict{Valid: false, Value: []byte("not_found"), FetchedAt: time.Now().Add(-5 * time.Second)}
	if err := tr.Put(ctx, "fresh", fresh, p.Life(fresh)); err != nil {
		t.Fatal(err)
	}
	if v, src, err := tr.Fetch(ctx, "fresh", p, never); err != nil || src != SourceFleet || v.Valid || string(v.Value) != "not_found" {
		t.Errorf("fresh: %+v, %s, %v", v, src, err)
	}

	stale := Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now().Add(-2 * time.Minute)}
	if err := tr.Put(ctx, "stale", stale, p.Life(stale)); err != nil {
		t.Fatal(err)
	}
	var fetched atomic.Int64
	if v, src, err := tr.Fetch(ctx, "stale", p, func(context.Context) (Verdict, error) {
		fetched.Add(1)
		return Verdict{Valid: true, Value: []byte("ORG")}, nil
	}); err != nil || src != SourceFetched || string(v.Value) != "ORG" || fetched.Load() != 1 {
		t.Errorf("stale: %+v, %s, %v after %d fetches", v, src, err, fetched.Load())
	}

	// Another sidecar holds the lock of a stale ID: the caller's deadline
	// ends its wait, with the stale verdict.
	if err := tr.Put(ctx, "held", stale, p.Life(stale)); err != nil {
		t.Fatal(err)
	}
	if err := srv.do("", "SET", lockKey(cfg.KeyPrefix, "held"), "someone-else", "PX", "60000").Error(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	v, src, err := tr.Fetch(short, "held", p, never)
	if !errors.Is(err, context.DeadlineExceeded) || src != SourceStale || string(v.Value) != "PEO" {
		t.Errorf("waiter past its deadline: %+v, %s, %v", v, src, err)
	}
	if st := tr.Stats(); st.LockWaits != 1 || st.Errors != 0 {
		t.Errorf("stats %+v: want one lock wait and no Redis error", st)
	}
}
