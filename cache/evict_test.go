package cache

import (
	"strconv"
	"testing"
	"time"
)

// TestFillPastMaxSizeEvictsOldest writes about 4 MiB of entries into a 2 MiB
// cache: the oldest go, writes keep succeeding, recent entries still hit and
// memory stays at the cap.
func TestFillPastMaxSizeEvictsOldest(t *testing.T) {
	t.Parallel()
	const n = 100_000
	for _, shards := range []int{1, 4} {
		t.Run("shards="+strconv.Itoa(shards), func(t *testing.T) {
			t.Parallel()
			c := newTestCache(t, Config{MaxSizeMB: 2, Shards: shards}, testPolicy)
			now := time.Now()
			for i := range n {
				mustStore(t, c, key(i), Entry{Valid: true, FetchedAt: now, Value: []byte("ok")})
			}
			for _, i := range []int{0, 1, 1000} {
				if _, st := c.Lookup(key(i), testPolicy, now); st != StatusMiss {
					t.Errorf("oldest entry %d: %v, want MISS (evicted)", i, st)
				}
			}
			for i := n - 1000; i < n; i++ {
				if e, st := c.Lookup(key(i), testPolicy, now); st != StatusHit || string(e.Value) != "ok" {
					t.Fatalf("recent entry %d: %v, want HIT", i, st)
				}
			}
			s := c.Stats()
			if s.Evictions == 0 || s.Entries >= n || s.Entries+s.Evictions != n {
				t.Errorf("Stats = %+v, want Evictions > 0 and Entries + Evictions = %d", s, n)
			}
			if s.Bytes > 2<<20 {
				t.Errorf("Bytes = %d, want <= 2 MiB", s.Bytes)
			}
		})
	}
}

// TestNotValidFloodKeepsValidEntries: garbage IDs fill only their own part.
func TestNotValidFloodKeepsValidEntries(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, Config{MaxSizeMB: 2, Shards: 1}, testPolicy)
	now := time.Now()
	const good = 1000
	for i := range good {
		mustStore(t, c, "good-"+key(i), Entry{Valid: true, FetchedAt: now})
	}
	for i := range 100_000 {
		mustStore(t, c, key(i), Entry{Valid: false, FetchedAt: now})
	}
	if c.Stats().Evictions == 0 {
		t.Fatal("the flood evicted nothing; make it bigger")
	}
	for i := range good {
		if _, st := c.Lookup("good-"+key(i), testPolicy, now); st != StatusHit {
			t.Fatalf("valid entry %d after the flood: %v, want HIT", i, st)
		}
	}
}

func key(i int) string { return "id-" + strconv.Itoa(i) }
