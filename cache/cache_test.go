package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    Status
		want string
	}{
		{StatusMiss, "MISS"},
		{StatusHit, "HIT"},
		{StatusStale, "STALE"},
		{Status(7), "Status(7)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Status(%d).String() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestLookupBoundaries(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	t0 := time.Now()
	mustStore(t, c, "valid", Entry{Valid: true, FetchedAt: t0, Value: []byte("v")})
	mustStore(t, c, "invalid", Entry{Valid: false, FetchedAt: t0, Value: []byte("n")})
	short := Policy{TTL: 10 * time.Second, NegativeTTL: 2 * time.Second, StaleIfError: 5 * time.Second}
	for _, tc := range []struct {
		name string
		id   string
		p    Policy
		age  time.Duration
		want Status
	}{
		{"valid fresh", "valid", testPolicy, 0, StatusHit},
		{"valid fetched in the future", "valid", testPolicy, -time.Second, StatusHit},
		{"valid just before TTL", "valid", testPolicy, 10*time.Second - 1, StatusHit},
		{"valid at TTL", "valid", testPolicy, 10 * time.Second, StatusStale},
		{"valid just before StaleIfError", "valid", testPolicy, time.Minute - 1, StatusStale},
		{"valid at StaleIfError", "valid", testPolicy, time.Minute, StatusMiss},
		{"valid past TTL, StaleIfError shorter than TTL", "valid", short, 10 * time.Second, StatusMiss},
		{"not valid fresh", "invalid", testPolicy, 0, StatusHit},
		{"not valid just before NegativeTTL", "invalid", testPolicy, 2*time.Second - 1, StatusHit},
		{"not valid at NegativeTTL", "invalid", testPolicy, 2 * time.Second, StatusStale},
		{"not valid at 3s, inside valid TTL", "invalid", testPolicy, 3 * time.Second, StatusStale},
		{"not valid just before StaleIfError", "invalid", testPolicy, time.Minute - 1, StatusStale},
		{"not valid at StaleIfError", "invalid", testPolicy, time.Minute, StatusMiss},
		{"zero policy", "valid", Policy{}, 0, StatusMiss},
		{"unknown id", "nope", testPolicy, 0, StatusMiss},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, st := c.Lookup(tc.id, tc.p, t0.Add(tc.age))
			if st != tc.want {
				t.Fatalf("Lookup(%q) at age %v = %v, want %v", tc.id, tc.age, st, tc.want)
			}
			if tc.id != "nope" { // Judge rules on an entry from elsewhere as Lookup does
				if got := tc.p.Judge(Entry{Valid: tc.id == "valid", FetchedAt: t0}, t0.Add(tc.age)); got != tc.want {
					t.Errorf("Judge at age %v = %v, want %v", tc.age, got, tc.want)
				}
			}
			if st == StatusMiss {
				if e.Value != nil || !e.FetchedAt.IsZero() {
					t.Errorf("miss returned %+v, want zero Entry", e)
				}
				return
			}
			if e.Valid != (tc.id == "valid") || !e.FetchedAt.Equal(t0) {
				t.Errorf("Lookup(%q) = %+v, want Valid=%v FetchedAt=%v", tc.id, e, tc.id == "valid", t0)
			}
		})
	}
}

func TestLookupCounts(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	t0 := time.Now()
	mustStore(t, c, "a", Entry{Valid: true, FetchedAt: t0})
	c.Lookup("a", testPolicy, t0)                     // hit
	c.Lookup("a", testPolicy, t0.Add(30*time.Second)) // stale: a miss
	c.Lookup("b", testPolicy, t0)                     // miss
	c.ServeStale()
	s := c.Stats()
	if s.Hits != 1 || s.Misses != 2 || s.StaleServed != 1 || s.Entries != 1 {
		t.Errorf("Stats = %+v, want Hits 1, Misses 2, StaleServed 1, Entries 1", s)
	}
}

func TestShorterTTLAppliesToStoredEntries(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, Policy{TTL: time.Hour, NegativeTTL: time.Hour, StaleIfError: time.Hour})
	t0 := time.Now()
	mustStore(t, c, "v", Entry{Valid: true, FetchedAt: t0})
	mustStore(t, c, "n", Entry{Valid: false, FetchedAt: t0})
	now := t0.Add(time.Minute)
	for _, tc := range []struct {
		name string
		id   string
		p    Policy
		want Status
	}{
		{"valid, long TTL", "v", Policy{TTL: time.Hour}, StatusHit},
		{"valid, TTL shortened", "v", Policy{TTL: 30 * time.Second, StaleIfError: time.Hour}, StatusStale},
		{"valid, TTL and stale shortened", "v", Policy{TTL: 30 * time.Second, StaleIfError: 40 * time.Second}, StatusMiss},
		{"not valid, long NegativeTTL", "n", Policy{NegativeTTL: time.Hour}, StatusHit},
		{"not valid, NegativeTTL shortened", "n", Policy{NegativeTTL: 30 * time.Second}, StatusMiss},
		{"valid, longer again", "v", Policy{TTL: time.Hour}, StatusHit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, st := c.Lookup(tc.id, tc.p, now); st != tc.want {
				t.Errorf("Lookup(%q, %+v) = %v, want %v", tc.id, tc.p, st, tc.want)
			}
		})
	}
}

func TestStoreReplacesOppositeVerdict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		first, second bool
	}{
		{"valid replaces not valid", false, true},
		{"not valid replaces valid", true, false},
		{"valid replaces valid", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newTestCache(t, smallConfig, testPolicy)
			t0 := time.Now()
			mustStore(t, c, "id", Entry{Valid: tc.first, FetchedAt: t0.Add(-time.Hour), Value: []byte("old")})
			mustStore(t, c, "id", Entry{Valid: tc.second, FetchedAt: t0, Value: []byte("new")})
			e, st := c.Lookup("id", testPolicy, t0)
			if st != StatusHit || e.Valid != tc.second || string(e.Value) != "new" {
				t.Errorf("Lookup = %+v, %v; want Valid=%v Value=new HIT", e, st, tc.second)
			}
			if n := c.Stats().Entries; n != 1 {
				t.Errorf("Entries = %d, want 1", n)
			}
		})
	}
}

func TestStoreCopiesValueAndFillsFetchedAt(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	v := []byte("abc")
	before := time.Now()
	mustStore(t, c, "id", Entry{Valid: true, Value: v})
	v[0] = 'X'
	e, st := c.Lookup("id", testPolicy, time.Now())
	if st != StatusHit || string(e.Value) != "abc" {
		t.Fatalf("Lookup = %+v, %v; want abc HIT", e, st)
	}
	if e.FetchedAt.Before(before.Truncate(0)) || e.FetchedAt.After(time.Now()) {
		t.Errorf("FetchedAt = %v, want the time of Store", e.FetchedAt)
	}
}

func TestIDAndValueLimits(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	for _, tc := range []struct {
		name    string
		id      string
		value   int
		wantErr error
	}{
		{"longest id", strings.Repeat("a", MaxIDLen), 1, nil},
		{"id too long", strings.Repeat("b", MaxIDLen+1), 1, ErrInvalidID},
		{"huge id", strings.Repeat("c", 70000), 1, ErrInvalidID},
		{"empty id", "", 1, ErrInvalidID},
		{"largest value", "big", MaxValueLen, nil},
		{"value too large", "bigger", MaxValueLen + 1, ErrValueTooLarge},
		{"empty value", "empty", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Now()
			val := bytes.Repeat([]byte{'x'}, tc.value)
			err := c.Store(tc.id, Entry{Valid: true, FetchedAt: now, Value: val})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Store = %v, want %v", err, tc.wantErr)
			}
			e, st := c.Lookup(tc.id, testPolicy, now)
			if want := tc.wantErr == nil; (st == StatusHit) != want {
				t.Fatalf("Lookup = %v, want hit %v", st, want)
			}
			if tc.wantErr == nil && !bytes.Equal(e.Value, val) {
				t.Errorf("Value has %d bytes, want %d", len(e.Value), len(val))
			}
			if tc.wantErr == ErrInvalidID {
				_, _, err := c.Fetch(context.Background(), tc.id, testPolicy, func(context.Context) (Entry, error) {
					t.Error("fetch called for an invalid id")
					return Entry{}, nil
				})
				if !errors.Is(err, ErrInvalidID) {
					t.Errorf("Fetch = %v, want %v", err, ErrInvalidID)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		p       Policy
		wantErr string
	}{
		{"zero config means defaults", Config{}, testPolicy, ""},
		{"defaults", Defaults(), testPolicy, ""},
		{"smallest", Config{MaxSizeMB: 2, Shards: 1}, Policy{}, ""},
		{"sub-second TTL", smallConfig, Policy{TTL: 300 * time.Millisecond}, ""},
		{"negative durations", smallConfig, Policy{TTL: -time.Second, NegativeTTL: -1, StaleIfError: -1}, ""},
		{"huge durations", smallConfig, Policy{TTL: 1 << 62, StaleIfError: 1<<63 - 1}, ""},
		{"too small", Config{MaxSizeMB: 1, Shards: 4}, testPolicy, "cache.maxSizeMB"},
		{"shards not a power of two", Config{MaxSizeMB: 2, Shards: 3}, testPolicy, "cache.shards"},
		{"shards too small for size", Config{MaxSizeMB: 2, Shards: 128}, testPolicy, "at most 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(tc.cfg, tc.p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			now := time.Now()
			if err := c.Store("id", Entry{Valid: true, FetchedAt: now}); err != nil {
				t.Errorf("Store: %v", err)
			}
		})
	}
}

// TestInitialAllocationIsSmall guards against bigcache's default ~300 MB
// preallocation: with the defaults both parts start at 128 KiB in total.
func TestInitialAllocationIsSmall(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, Config{}, Policy{TTL: time.Hour, StaleIfError: 24 * time.Hour})
	if b := c.Stats().Bytes; b > 256<<10 {
		t.Errorf("Bytes = %d after New, want <= 256 KiB", b)
	}
}

func TestLifeWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ttl, stale, want time.Duration
	}{
		{0, 0, time.Second},
		{300 * time.Millisecond, 0, 2 * time.Second},
		{time.Second, 0, 2 * time.Second},
		{1500 * time.Millisecond, time.Second, 3 * time.Second},
		{time.Minute, time.Hour, time.Hour + time.Second},
		{-time.Second, -time.Second, time.Second},
	} {
		if got := lifeWindow(tc.ttl, tc.stale); got != tc.want {
			t.Errorf("lifeWindow(%v, %v) = %v, want %v", tc.ttl, tc.stale, got, tc.want)
		}
	}
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	c, err := New(smallConfig, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	_, _, err = c.Fetch(context.Background(), "id", testPolicy, func(context.Context) (Entry, error) {
		return Entry{Valid: true}, nil
	})
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Fetch after Close = %v, want %v", err, ErrClosed)
	}
}

// TestLookupHitAllocs checks that a repeated hit allocates nothing: the hot
// table answers it, where bigcache.Get alone would copy value and key. Not
// parallel: the allocation count is process-wide.
func TestLookupHitAllocs(t *testing.T) {
	c := newTestCache(t, smallConfig, testPolicy)
	const id = "01-1-USR-1234-5-2024-A-17"
	now := time.Now()
	mustStore(t, c, id, Entry{Valid: true, FetchedAt: now, Value: []byte("ok")})
	mustStore(t, c, "n"+id, Entry{Valid: false, FetchedAt: now, Value: []byte("no")})
	for _, key := range []string{id, "n" + id} {
		got := testing.AllocsPerRun(1000, func() {
			if _, st := c.Lookup(key, testPolicy, now); st != StatusHit {
				t.Fatalf("Lookup(%q) = %v, want HIT", key, st)
			}
		})
		if got != 0 {
			t.Errorf("Lookup(%q) hit: %v allocs, want 0", key, got)
		}
		b := []byte(key)
		got = testing.AllocsPerRun(1000, func() {
			if _, st := c.LookupBytes(b, testPolicy, now); st != StatusHit {
				t.Fatalf("LookupBytes(%q) = %v, want HIT", key, st)
			}
		})
		if got != 0 {
			t.Errorf("LookupBytes(%q) hit: %v allocs, want 0", key, got)
		}
	}
}

// TestLookupBytesMatchesLookup: for hits, stale entries, misses, IDs too
// long for the hot table and more distinct values than its value table
// holds, LookupBytes answers exactly what Lookup does, and counts the same.
func TestLookupBytesMatchesLookup(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	now := time.Now()
	var ids []string
	for i := range 600 {
		id := fmt.Sprintf("CT-A-CHI-%04d-I-24-A-0", i)
		if i%50 == 0 {
			id += strings.Repeat("X", 30) // longer than the hot table keeps
		}
		age := time.Duration(i%3) * testPolicy.TTL // fresh, stale, stale
		mustStore(t, c, id, Entry{Valid: i%2 == 0, FetchedAt: now.Add(-age - time.Millisecond), Value: []byte(fmt.Sprint("v", i))})
		ids = append(ids, id)
	}
	ids = append(ids, "never-stored", "")
	for round := range 2 { // the first round fills the hot table from bigcache
		for _, id := range ids {
			before := c.Stats()
			e1, st1 := c.Lookup(id, testPolicy, now)
			mid := c.Stats()
			e2, st2 := c.LookupBytes([]byte(id), testPolicy, now)
			after := c.Stats()
			if st1 != st2 || e1.Valid != e2.Valid || !e1.FetchedAt.Equal(e2.FetchedAt) || string(e1.Value) != string(e2.Value) {
				t.Fatalf("round %d, %q: Lookup %+v %v, LookupBytes %+v %v", round, id, e1, st1, e2, st2)
			}
			if mid.Hits-before.Hits != after.Hits-mid.Hits || mid.Misses-before.Misses != after.Misses-mid.Misses {
				t.Fatalf("round %d, %q: counted differently: %+v, %+v, %+v", round, id, before, mid, after)
			}
		}
	}
}

// TestHotTableNoTornReads races Stores of whole verdicts against Lookups of
// many IDs sharing the hot table's sets: every entry read is one that was
// stored, never a mix of two (its value, validity and fetch time agree).
func TestHotTableNoTornReads(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	t0 := time.Now()
	verdict := func(k int) Entry {
		return Entry{Valid: k%2 == 0, FetchedAt: t0.Add(time.Duration(k) * time.Millisecond), Value: []byte{byte('a' + k)}}
	}
	ids := make([]string, 3000) // more than the small table's entries: ways get displaced
	for i := range ids {
		ids[i] = fmt.Sprintf("CT-A-CHI-%04d-I-24-A-0", i)
		mustStore(t, c, ids[i], verdict(0))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := r; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[n*7%len(ids)]
				var e Entry
				var st Status
				if n%2 == 0 {
					e, st = c.Lookup(id, testPolicy, t0)
				} else {
					e, st = c.LookupBytes([]byte(id), testPolicy, t0)
				}
				if st == StatusMiss || len(e.Value) != 1 {
					errs <- fmt.Sprintf("%s: %+v %v", id, e, st)
					return
				}
				if want := verdict(int(e.Value[0] - 'a')); e.Valid != want.Valid || !e.FetchedAt.Equal(want.FetchedAt) {
					errs <- fmt.Sprintf("%s: torn read %+v, stored %+v", id, e, want)
					return
				}
			}
		}()
	}
	for i := range 20000 {
		mustStore(t, c, ids[i*13%len(ids)], verdict(i%4))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestHotTableStaysCoherent races Lookups against Stores of alternating
// verdicts: once the Stores are done, every Lookup sees the last one.
func TestHotTableStaysCoherent(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	const id = "CT-A-CHI-1234-I-24-A-0"
	t0 := time.Now()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					c.Lookup(id, testPolicy, t0)
				}
			}
		}()
	}
	for i := range 2000 {
		mustStore(t, c, id, Entry{Valid: i%2 == 0, FetchedAt: t0, Value: []byte{byte(i)}})
	}
	close(stop)
	wg.Wait()
	e, st := c.Lookup(id, testPolicy, t0)
	if st != StatusHit || e.Valid || e.Value[0] != byte(1999%256) {
		t.Fatalf("after the last Store (not valid, %d): %+v %v", 1999%256, e, st)
	}
}

// TestHitAfterHotSlotDisplaced reads an entry whose hot slot another ID took:
// it is still a hit, from bigcache.
func TestHitAfterHotSlotDisplaced(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, smallConfig, testPolicy)
	now := time.Now()
	ids := make([]string, 5000) // far more than the hot table's slots
	for i := range ids {
		ids[i] = fmt.Sprintf("ID-%05d", i)
		mustStore(t, c, ids[i], Entry{Valid: true, FetchedAt: now, Value: []byte(ids[i])})
	}
	for _, id := range ids {
		if e, st := c.Lookup(id, testPolicy, now); st != StatusHit || string(e.Value) != id {
			t.Fatalf("Lookup(%s) = %q %v", id, e.Value, st)
		}
	}
}

// TestHotTableResistsThrashing reads three IDs that share one hot-table set
// (two ways) in turn: with each miss evicting a resident, every read would
// go to bigcache (two allocations each); installing over a resident only
// now and then keeps about two reads in three in the hot table.
func TestHotTableResistsThrashing(t *testing.T) {
	c := newTestCache(t, smallConfig, testPolicy)
	now := time.Now()
	var ids []string
	want := c.hot.setString("CT-A-CHI-0000-I-24-A-0")
	for i := 0; len(ids) < 3; i++ {
		if id := fmt.Sprintf("CT-A-CHI-%04d-I-24-A-0", i); c.hot.setString(id) == want {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		mustStore(t, c, id, Entry{Valid: true, FetchedAt: now, Value: []byte("PEO")})
	}
	allocs := testing.AllocsPerRun(2000, func() {
		for _, id := range ids {
			if _, st := c.Lookup(id, testPolicy, now); st != StatusHit {
				t.Fatalf("Lookup(%s) = %v", id, st)
			}
		}
	})
	// Two allocations per read from bigcache: 6 a round if all three miss,
	// about 2 if only the odd one out does.
	if allocs > 3.5 {
		t.Errorf("%.1f allocations per round of 3 reads: the set thrashes", allocs)
	}
}
