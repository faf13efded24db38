package cache

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// snapshotBudget is what docs/snapshot.md promises for writing, and for restoring, a
// snapshot of a million entries.
const snapshotBudget = 2 * time.Second

// BenchmarkSnapshot writes and restores a million entries shaped like the
// sidecar's (official-format IDs, entity values, one in eight "not valid")
// and fails if either takes longer than snapshotBudget. Each op is one whole
// write or restore: run it with -benchtime=3x.
func BenchmarkSnapshot(b *testing.B) {
	const n = 1_000_000
	p := Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: 24 * time.Hour}
	cfg := Config{MaxSizeMB: 256, Shards: 64} // about 55 bytes an entry in bigcache
	now := time.Now()
	src := newTestCache(b, cfg, p)
	fillSnapshotCache(b, src, n, now)
	path := filepath.Join(b.TempDir(), "snapshot.bin")

	b.Run("write", func(b *testing.B) {
		var info SnapshotInfo
		for b.Loop() {
			began := time.Now()
			var err error
			if info, err = src.WriteSnapshot(context.Background(), path, p, now); err != nil {
				b.Fatal(err)
			}
			checkBudget(b, "write", time.Since(began))
		}
		if info.Entries != n {
			b.Fatalf("wrote %d entries, want %d", info.Entries, n)
		}
		b.ReportMetric(float64(info.Bytes)/n, "file-B/entry")
		b.ReportMetric(float64(info.Bytes)/(1<<20), "file-MiB")
	})
	b.Run("restore", func(b *testing.B) {
		if _, err := src.WriteSnapshot(context.Background(), path, p, now); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			dst, err := New(cfg, p)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			began := time.Now()
			r, err := dst.RestoreSnapshot(path, p, now, nil)
			took := time.Since(began)
			b.StopTimer()
			if err != nil || r.Loaded != n {
				b.Fatalf("restored %+v, %v; want %d loaded", r, err, n)
			}
			checkBudget(b, "restore", took)
			_ = dst.Close()
			b.StartTimer()
		}
	})
}

func checkBudget(b *testing.B, what string, took time.Duration) {
	b.Helper()
	b.Logf("%s of a million entries: %v", what, took.Round(time.Millisecond))
	if took > snapshotBudget {
		b.Errorf("%s took %v, over the %v budget docs/snapshot.md gives", what, took, snapshotBudget)
	}
}

// fillSnapshotCache stores n distinct entries fetched within the last hour.
func fillSnapshotCache(tb testing.TB, c *Cache, n int, now time.Time) {
	tb.Helper()
	entities := [...]string{"PEO", "PLACE", "PROP", "EVNT", "AUTH", "INFO", "FACT", "CONTEXT", "ACTOR"}
	for i := range n {
		id := fmt.Sprintf("CT-A-CHI-%04d-P-%02d-%c-%d", i%10000, i/10000%100, 'A'+byte(i/1000000%26), i%10)
		e := Entry{Valid: i%8 != 0, FetchedAt: now.Add(-time.Duration(i%3600) * time.Second), Value: []byte(entities[i%len(entities)])}
		if !e.Valid {
			e.Value = []byte("upstream")
		}
		if err := c.Store(id, e); err != nil {
			tb.Fatalf("Store(%q): %v", id, err)
		}
	}
	if got := c.Stats().Entries; got != int64(n) {
		tb.Fatalf("cache holds %d entries after %d stores (evictions %d)", got, n, c.Stats().Evictions)
	}
}
