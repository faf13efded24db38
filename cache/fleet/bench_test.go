package fleet

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// usedMemory returns INFO memory's used_memory.
func usedMemory(t testing.TB, srv *redisServer) int64 {
	t.Helper()
	info, err := srv.do("", "INFO", "memory").ToString()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`used_memory:(\d+)`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("no used_memory in %q", info)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestMemoryPerID measures what the fleet tier costs Redis per ID: MEMORY
// USAGE of one verdict key (key, value and the hash table entry, as Redis
// counts them) and used_memory's growth over 20,000 IDs (which includes the
// expiry index). docs/fleet.md, "Sizing", quotes the figures.
func TestMemoryPerID(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.KeyPrefix = "chittyid:" // the default, as deployed
	cfg.Timeout = time.Second   // the most: it measures memory, and none of the 20,000 Puts may time out on a busy machine
	tr := newTier(t, cfg, testOptions(), true)
	ctx := context.Background()
	p := Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: 24 * time.Hour}
	const n = 20_000
	before := usedMemory(t, srv)
	for i := range n {
		id := fmt.Sprintf("CT-A-CHI-%04d-P-%02d-A-%d", i%10000, 24+i/10000, i%10)
		v := Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now()}
		if err := tr.Put(ctx, id, v, p.Life(v)); err != nil {
			t.Fatal(err)
		}
	}
	after := usedMemory(t, srv)
	key := verdictKey(cfg.KeyPrefix, "CT-A-CHI-0001-P-24-A-1")
	usage, err := srv.do("", "MEMORY", "USAGE", key).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	perID := float64(after-before) / n
	t.Logf("one verdict: key %d bytes (%s), value 10 bytes; MEMORY USAGE %d bytes; used_memory grew %.0f bytes per ID over %d IDs (with the expiry index)",
		len(key), key, usage, perID, n)
	if usage > 128 || perID > 200 {
		t.Errorf("%d bytes by MEMORY USAGE, %.0f by used_memory per ID: more than docs/fleet.md's sizing says", usage, perID)
	}
}

// benchTier is a tier on a Redis of the benchmark's own, with the default
// fleet.timeout.
func benchTier(b *testing.B) (*Tier, *redisServer) {
	srv := startRedis(b)
	cfg := testConfig(b, srv.Addr)
	cfg.Timeout = Defaults().Timeout
	return newTier(b, cfg, testOptions(), true), srv
}

// BenchmarkGetHit: a fleet hit, one GET (the latency a fleet hit adds to a
// local miss).
func BenchmarkGetHit(b *testing.B) {
	tr, _ := benchTier(b)
	ctx := context.Background()
	if err := tr.Put(ctx, "CT-A-CHI-1234-P-24-A-0", Verdict{Valid: true, Value: []byte("PEO")}, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, found, err := tr.Get(ctx, "CT-A-CHI-1234-P-24-A-0"); !found || err != nil {
			b.Fatal(found, err)
		}
	}
}

// BenchmarkPut: one SET with PX, as for a minted ID.
func BenchmarkPut(b *testing.B) {
	tr, _ := benchTier(b)
	ctx := context.Background()
	v := Verdict{Valid: true, Value: []byte("PEO")}
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Put(ctx, "CT-A-CHI-1234-P-24-A-0", v, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFetchMiss: the miss path of an ID nobody holds: GET, the lock
// script, fetch (instant here), the commit script.
func BenchmarkFetchMiss(b *testing.B) {
	tr, _ := benchTier(b)
	ctx := context.Background()
	fetch := func(context.Context) (Verdict, error) { return Verdict{Valid: true, Value: []byte("PEO")}, nil }
	var i atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		id := "CT-A-CHI-" + strconv.FormatInt(i.Add(1), 10)
		if _, src, err := tr.Fetch(ctx, id, testPolicy(), fetch); src != SourceFetched || err != nil {
			b.Fatal(src, err)
		}
	}
}

// BenchmarkFetchHit: Fetch of an ID with a fresh fleet verdict.
func BenchmarkFetchHit(b *testing.B) {
	tr, _ := benchTier(b)
	ctx := context.Background()
	if err := tr.Put(ctx, "CT-A-CHI-1234-P-24-A-0", Verdict{Valid: true, Value: []byte("PEO")}, time.Hour); err != nil {
		b.Fatal(err)
	}
	never := func(context.Context) (Verdict, error) { return Verdict{}, fmt.Errorf("fetched") }
	b.ReportAllocs()
	for b.Loop() {
		if _, src, err := tr.Fetch(ctx, "CT-A-CHI-1234-P-24-A-0", testPolicy(), never); src != SourceFleet || err != nil {
			b.Fatal(src, err)
		}
	}
}

// BenchmarkAllowMint: one GCRA script call that lets the mint through.
func BenchmarkAllowMint(b *testing.B) {
	tr, _ := benchTier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := tr.AllowMint(ctx, 1, 1_000_000_000, 100); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkGetHitParallel: fleet hits from many goroutines, pipelined by
// rueidis on one connection.
func BenchmarkGetHitParallel(b *testing.B) {
	tr, _ := benchTier(b)
	ctx := context.Background()
	if err := tr.Put(ctx, "CT-A-CHI-1234-P-24-A-0", Verdict{Valid: true, Value: []byte("PEO")}, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, found, err := tr.Get(ctx, "CT-A-CHI-1234-P-24-A-0"); !found || err != nil {
				b.Error(found, err)
				return
			}
		}
	})
}
