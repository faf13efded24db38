package cache

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
)

const benchID = "01-1-USR-1234-5-2024-A-17"

// benchValue stands for a ready response body.
var benchValue = []byte(`{"valid":true,"chittyId":"01-1-USR-1234-5-2024-A-17"}`)

func BenchmarkLookupHit(b *testing.B) {
	for _, valid := range []bool{true, false} {
		b.Run("valid="+strconv.FormatBool(valid), func(b *testing.B) {
			c := newTestCache(b, Defaults(), testPolicy)
			now := time.Now()
			mustStore(b, c, benchID, Entry{Valid: valid, FetchedAt: now, Value: benchValue})
			b.ReportAllocs()
			for b.Loop() {
				if _, st := c.Lookup(benchID, testPolicy, now); st != StatusHit {
					b.Fatalf("Lookup = %v, want HIT", st)
				}
			}
		})
	}
}

func BenchmarkFetchHit(b *testing.B) {
	c := newTestCache(b, Defaults(), testPolicy)
	mustStore(b, c, benchID, Entry{Valid: true, FetchedAt: time.Now(), Value: benchValue})
	fetch := func(context.Context) (Entry, error) {
		b.Fatal("fetch called on a hit")
		return Entry{}, nil
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, st, err := c.Fetch(ctx, benchID, testPolicy, fetch); st != StatusHit || err != nil {
			b.Fatalf("Fetch = %v, %v; want HIT", st, err)
		}
	}
}

// BenchmarkLookupHitParallel reads 1024 IDs from every core.
func BenchmarkLookupHitParallel(b *testing.B) {
	c := newTestCache(b, Defaults(), testPolicy)
	now := time.Now()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = benchID + "-" + strconv.Itoa(i)
		mustStore(b, c, ids[i], Entry{Valid: i%4 != 0, FetchedAt: now, Value: benchValue})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, st := c.Lookup(ids[i&1023], testPolicy, now); st != StatusHit {
				b.Errorf("Lookup = %v, want HIT", st)
				return
			}
			i++
		}
	})
}

// BenchmarkBigcacheGet is the floor under BenchmarkLookupHit: bigcache.Get
// alone, which copies both the stored key and the value.
func BenchmarkBigcacheGet(b *testing.B) {
	raw, err := bigcache.New(context.Background(), bigcache.Config{Shards: 64, LifeWindow: time.Minute, MaxEntrySize: 64, HardMaxCacheSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Set(benchID, encode(Entry{Valid: true, FetchedAt: time.Now(), Value: benchValue})); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := raw.Get(benchID); err != nil {
			b.Fatal(err)
		}
	}
}
