package cache

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var errUpstream = errors.New("upstream down")

// fetchResult is what one Fetch caller got.
type fetchResult struct {
	e       Entry
	st      Status
	err     error
	elapsed time.Duration
}

// counted returns a fetch function that counts its calls and answers with e
// (FetchedAt set to now) or err.
func counted(calls *atomic.Int32, e Entry, err error) func(context.Context) (Entry, error) {
	return func(context.Context) (Entry, error) {
		calls.Add(1)
		if err != nil {
			return Entry{}, err
		}
		e.FetchedAt = time.Now()
		return e, nil
	}
}

// lookupOrFetch reads id as a request of the sidecar does: one Lookup, then
// Fetch if that found no fresh entry.
func lookupOrFetch(ctx context.Context, c *Cache, id string, fetch func(context.Context) (Entry, error)) (Entry, Status, error) {
	if e, st := c.Lookup(id, testPolicy, c.now()); st == StatusHit {
		return e, st, nil
	}
	return c.Fetch(ctx, id, testPolicy, fetch)
}

func TestFetchMissThenHit(t *testing.T) {
	t.Parallel()
	for _, valid := range []bool{true, false} {
		c := newTestCache(t, smallConfig, testPolicy)
		var calls atomic.Int32
		fetch := counted(&calls, Entry{Valid: valid, Value: []byte("verdict")}, nil)
		for i, want := range []Status{StatusMiss, StatusHit, StatusHit} {
			e, st, err := lookupOrFetch(context.Background(), c, "id", fetch)
			if err != nil || st != want || e.Valid != valid || string(e.Value) != "verdict" || e.FetchedAt.IsZero() {
				t.Fatalf("valid=%v: Fetch #%d = %+v, %v, %v; want verdict %v", valid, i+1, e, st, err, want)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("valid=%v: fetch called %d times, want 1", valid, n)
		}
		if s := c.Stats(); s.Fetches != 1 || s.Hits != 2 || s.Misses != 1 || s.Coalesced != 0 {
			t.Errorf("valid=%v: Stats = %+v, want Fetches 1, Hits 2, Misses 1", valid, s)
		}
	}
}

func TestFetchCoalescesConcurrentMisses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, smallConfig, testPolicy)
		var calls atomic.Int32
		release := make(chan struct{})
		fetch := func(context.Context) (Entry, error) {
			calls.Add(1)
			<-release
			return Entry{Valid: true, FetchedAt: time.Now(), Value: []byte("verdict")}, nil
		}
		const n = 200
		results := make(chan fetchResult, n)
		for range n {
			go func() {
				e, st, err := lookupOrFetch(t.Context(), c, "id", fetch)
				results <- fetchResult{e: e, st: st, err: err}
			}()
		}
		synctest.Wait() // one caller's flight is in fetch, the other 199 wait on it
		close(release)
		for range n {
			r := <-results
			if r.err != nil || r.st != StatusMiss || string(r.e.Value) != "verdict" {
				t.Errorf("Fetch = %+v, %v, %v; want verdict MISS", r.e, r.st, r.err)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("fetch called %d times, want 1", got)
		}
		if s := c.Stats(); s.Fetches != 1 || s.Coalesced != n-1 || s.Misses != n || s.Hits != 0 {
			t.Errorf("Stats = %+v, want Fetches 1, Coalesced %d, Misses %d", s, n-1, n)
		}
	})
}

// TestFetchPassesSharedToEveryCaller: an entry a fetch function marks
// Shared (it came from the fleet tier) reaches the flight's waiters so
// marked, so each can answer it as a hit of that tier; the mark is not
// stored, and a later Lookup sees a plain entry.
func TestFetchPassesSharedToEveryCaller(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, smallConfig, testPolicy)
		release := make(chan struct{})
		fetched := time.Now().Add(-3 * time.Second) // another tier's entry keeps its age
		fetch := func(context.Context) (Entry, error) {
			<-release
			return Entry{Valid: true, Shared: true, FetchedAt: fetched, Value: []byte("PEO")}, nil
		}
		const n = 5
		results := make(chan fetchResult, n)
		for range n {
			go func() {
				e, st, err := lookupOrFetch(t.Context(), c, "id", fetch)
				results <- fetchResult{e: e, st: st, err: err}
			}()
		}
		synctest.Wait()
		close(release)
		for range n {
			r := <-results
			if r.err != nil || r.st != StatusMiss || !r.e.Shared || !r.e.FetchedAt.Equal(fetched) {
				t.Errorf("Fetch = %+v, %v, %v; want the Shared entry fetched at %v, MISS", r.e, r.st, r.err, fetched)
			}
		}
		e, st := c.Lookup("id", testPolicy, time.Now())
		if st != StatusHit || e.Shared || !e.FetchedAt.Equal(fetched) {
			t.Errorf("Lookup after the flight = %+v, %v; want a HIT, not Shared, fetched at %v", e, st, fetched)
		}
	})
}

// TestFetchCallerGivesUpAtItsDeadline: the caller that started the flight
// leaves at its deadline; the fetch goes on with an uncancelled ctx, a patient
// caller gets its result, and later callers hit.
func TestFetchCallerGivesUpAtItsDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		stale    bool // an expired entry younger than StaleIfError exists
		wantSt   Status
		wantErr  error
		wantBody string
	}{
		{"no stale entry", false, StatusMiss, context.DeadlineExceeded, ""},
		{"stale entry", true, StatusStale, nil, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { testGiveUpAtDeadline(t, tc.stale, tc.wantSt, tc.wantErr, tc.wantBody) })
		})
	}
}

func testGiveUpAtDeadline(t *testing.T, stale bool, wantSt Status, wantErr error, wantBody string) {
	c := newTestCache(t, smallConfig, testPolicy)
	if stale {
		mustStore(t, c, "id", Entry{Valid: true, FetchedAt: time.Now().Add(-30 * time.Second), Value: []byte("old")})
	}
	var calls atomic.Int32
	fetchCtxErr := make(chan error, 1)
	fetch := func(ctx context.Context) (Entry, error) {
		calls.Add(1)
		time.Sleep(time.Second) // a slow upstream
		fetchCtxErr <- ctx.Err()
		return Entry{Valid: true, FetchedAt: time.Now(), Value: []byte("new")}, nil
	}
	start := time.Now()
	impatient := make(chan fetchResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		e, st, err := c.Fetch(ctx, "id", testPolicy, fetch)
		impatient <- fetchResult{e, st, err, time.Since(start)}
	}()
	synctest.Wait() // the impatient caller leads the flight

	e, st, err := c.Fetch(t.Context(), "id", testPolicy, fetch)
	if err != nil || st != StatusMiss || string(e.Value) != "new" || time.Since(start) != time.Second {
		t.Errorf("patient Fetch = %q, %v, %v after %v; want new MISS after 1s", e.Value, st, err, time.Since(start))
	}
	r := <-impatient
	if r.elapsed != 100*time.Millisecond || r.st != wantSt || !errors.Is(r.err, wantErr) || string(r.e.Value) != wantBody {
		t.Errorf("impatient Fetch = %q, %v, %v after %v; want %q, %v, %v after 100ms",
			r.e.Value, r.st, r.err, r.elapsed, wantBody, wantSt, wantErr)
	}
	if err := <-fetchCtxErr; err != nil {
		t.Errorf("fetch saw ctx.Err() = %v, want nil: the flight must not die with its first caller", err)
	}
	if e, st, err := c.Fetch(t.Context(), "id", testPolicy, fetch); err != nil || st != StatusHit || string(e.Value) != "new" {
		t.Errorf("later Fetch = %q, %v, %v; want new HIT", e.Value, st, err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fetch called %d times, want 1", n)
	}
	wantStale := int64(0)
	if stale {
		wantStale = 1
	}
	if s := c.Stats(); s.Fetches != 1 || s.Coalesced != 1 || s.StaleServed != wantStale {
		t.Errorf("Stats = %+v, want Fetches 1, Coalesced 1, StaleServed %d", s, wantStale)
	}
}

func TestFetchFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		storedAge time.Duration // <0: nothing stored
		valid     bool
		cancelled bool // the caller's ctx has ended before Fetch
		wantSt    Status
		wantErr   error
		wantCalls int32
	}{
		{"error, stale valid entry", 30 * time.Second, true, false, StatusStale, nil, 1},
		{"error, stale not valid entry", 5 * time.Second, false, false, StatusStale, nil, 1},
		{"error, no entry", -1, true, false, StatusMiss, errUpstream, 1},
		{"error, entry older than StaleIfError", 2 * time.Minute, true, false, StatusMiss, errUpstream, 1},
		{"cancelled, stale entry", 30 * time.Second, true, true, StatusStale, nil, 0},
		{"cancelled, no entry", -1, true, true, StatusMiss, context.Canceled, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newTestCache(t, smallConfig, testPolicy)
			if tc.storedAge >= 0 {
				mustStore(t, c, "id", Entry{Valid: tc.valid, FetchedAt: time.Now().Add(-tc.storedAge), Value: []byte("old")})
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			var calls atomic.Int32
			e, st, err := c.Fetch(ctx, "id", testPolicy, counted(&calls, Entry{}, errUpstream))
			if st != tc.wantSt || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Fetch = %+v, %v, %v; want %v, %v", e, st, err, tc.wantSt, tc.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), `fetching "id": `) {
				t.Errorf("error %q lacks the prefix `fetching \"id\": `", err)
			}
			if st == StatusStale && (e.Valid != tc.valid || string(e.Value) != "old") {
				t.Errorf("stale entry = %+v, want the stored one", e)
			}
			if n := calls.Load(); n != tc.wantCalls {
				t.Errorf("fetch called %d times, want %d", n, tc.wantCalls)
			}
			wantServed := int64(0)
			if tc.wantSt == StatusStale {
				wantServed = 1
			}
			if s := c.Stats(); s.StaleServed != wantServed {
				t.Errorf("StaleServed = %d, want %d", s.StaleServed, wantServed)
			}
		})
	}
}

// TestFetchServesTheStandIn: a failed fetch's stand-in (an entry another
// tier holds past its TTL) reaches every caller of the flight as STALE when
// the cache has no stale entry of its own, while the policy judges it
// stale; it is never stored, and the cache's own stale entry comes first.
func TestFetchServesTheStandIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		storedAge  time.Duration // the cache's own entry, "own"; <0: none
		standInAge time.Duration // <0: the fetch gives no stand-in
		wantSt     Status
		wantValue  string // of the answer; "" with an error
	}{
		{name: "stale stand-in, nothing cached", storedAge: -1, standInAge: 30 * time.Second, wantSt: StatusStale, wantValue: "theirs"},
		{name: "the cache's own stale entry first", storedAge: 20 * time.Second, standInAge: 30 * time.Second, wantSt: StatusStale, wantValue: "own"},
		{name: "stand-in older than StaleIfError", storedAge: -1, standInAge: 2 * time.Minute, wantSt: StatusMiss},
		{name: "stand-in not past its TTL", storedAge: -1, standInAge: time.Second, wantSt: StatusMiss},
		{name: "no stand-in", storedAge: -1, standInAge: -1, wantSt: StatusMiss},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				c := newTestCache(t, smallConfig, testPolicy)
				if tc.storedAge >= 0 {
					mustStore(t, c, "id", Entry{Valid: true, FetchedAt: time.Now().Add(-tc.storedAge), Value: []byte("own")})
				}
				release := make(chan struct{})
				fetch := func(context.Context) (Entry, error) {
					<-release
					if tc.standInAge < 0 {
						return Entry{}, errUpstream
					}
					return Entry{Valid: true, Shared: true, FetchedAt: time.Now().Add(-tc.standInAge), Value: []byte("theirs")}, errUpstream
				}
				const n = 3
				results := make(chan fetchResult, n)
				for range n {
					go func() {
						e, st, err := c.Fetch(t.Context(), "id", testPolicy, fetch)
						results <- fetchResult{e: e, st: st, err: err}
					}()
				}
				synctest.Wait()
				close(release)
				for range n {
					r := <-results
					if r.st != tc.wantSt || string(r.e.Value) != tc.wantValue || (tc.wantValue == "") != errors.Is(r.err, errUpstream) {
						t.Errorf("Fetch = %q, %v, %v; want %q, %v", r.e.Value, r.st, r.err, tc.wantValue, tc.wantSt)
					}
				}
				if e, _ := c.Lookup("id", testPolicy, time.Now()); string(e.Value) == "theirs" {
					t.Error("the stand-in was stored")
				}
				wantServed := int64(0)
				if tc.wantSt == StatusStale {
					wantServed = n
				}
				if s := c.Stats(); s.StaleServed != wantServed || s.Fetches != 1 {
					t.Errorf("Stats = %+v, want StaleServed %d, Fetches 1", s, wantServed)
				}
			})
		})
	}
}

func TestFetchFailureIsNotStored(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	var calls atomic.Int32
	for i := range 2 {
		if _, _, err := c.Fetch(context.Background(), "id", testPolicy, counted(&calls, Entry{}, errUpstream)); !errors.Is(err, errUpstream) {
			t.Fatalf("Fetch #%d = %v, want %v", i+1, err, errUpstream)
		}
		if _, st := c.Lookup("id", testPolicy, time.Now()); st != StatusMiss {
			t.Fatalf("Lookup after failure = %v, want MISS", st)
		}
	}
	if n, entries := calls.Load(), c.Stats().Entries; n != 2 || entries != 0 {
		t.Errorf("fetch called %d times with %d entries, want 2 calls and 0 entries", n, entries)
	}
	e, st, err := c.Fetch(context.Background(), "id", testPolicy, counted(&calls, Entry{Valid: false}, nil))
	if err != nil || st != StatusMiss || e.Valid {
		t.Errorf("Fetch after recovery = %+v, %v, %v; want not valid MISS", e, st, err)
	}
}

func TestFetchStoreErrorStillAnswers(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	big := bytes.Repeat([]byte{'x'}, MaxValueLen+1)
	var calls atomic.Int32
	e, st, err := c.Fetch(context.Background(), "id", testPolicy, counted(&calls, Entry{Valid: true, Value: big}, nil))
	if err != nil || st != StatusMiss || len(e.Value) != len(big) {
		t.Fatalf("Fetch = %d bytes, %v, %v; want the fetched entry, MISS", len(e.Value), st, err)
	}
	if s := c.Stats(); s.StoreErrors != 1 || s.Entries != 0 {
		t.Errorf("Stats = %+v, want StoreErrors 1, Entries 0", s)
	}
}

// TestLoadRechecksCache covers the interleaving in load's comment: a caller's
// Lookup missed, then another flight stored the entry and ended before this
// caller's DoChan started a new flight. The new flight must not fetch again.
func TestLoadRechecksCache(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	mustStore(t, c, "id", Entry{Valid: true, FetchedAt: time.Now(), Value: []byte("stored")})
	v, err := c.load(context.Background(), "id", testPolicy, func(context.Context) (Entry, error) {
		t.Error("fetch called although the cache holds a fresh entry")
		return Entry{}, nil
	})
	if f, ok := v.(flight); err != nil || !ok || f.st != StatusHit || string(f.e.Value) != "stored" {
		t.Errorf("load = %+v, %v; want the stored entry, HIT", v, err)
	}
	if n := c.Stats().Fetches; n != 0 {
		t.Errorf("Fetches = %d, want 0", n)
	}
}

// TestCloseWaitsForFlights: a flight whose callers all gave up still owns a
// goroutine; Close waits for it.
func TestCloseWaitsForFlights(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c, err := New(smallConfig, testPolicy)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		fetch := func(context.Context) (Entry, error) {
			time.Sleep(time.Second)
			close(done)
			return Entry{Valid: true, FetchedAt: time.Now()}, nil
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, _, err := c.Fetch(ctx, "id", testPolicy, fetch); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch = %v, want %v", err, context.DeadlineExceeded)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		default:
			t.Fatal("Close returned before the flight ended")
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("Close returned after %v, want 1s", got)
		}
	})
}
