package cache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
)

func ExampleCache_RestoreSnapshot() {
	dir, err := os.MkdirTemp("", "snapshot-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "snapshot.bin")
	p := cache.Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: 24 * time.Hour}
	now := time.Now()

	// Before a restart: write what the cache holds.
	before, _ := cache.New(cache.Defaults(), p)
	_ = before.Store("CT-A-CHI-1234-P-24-A-0", cache.Entry{Valid: true, FetchedAt: now.Add(-time.Hour), Value: []byte("PEO")})
	info, err := before.WriteSnapshot(context.Background(), path, p, now)
	fmt.Println(info.Entries, err)
	_ = before.Close()

	// After it: the entry keeps its age, so it is stale, not fresh.
	after, _ := cache.New(cache.Defaults(), p)
	defer after.Close()
	r, err := after.RestoreSnapshot(path, p, now, nil)
	fmt.Println(r.Loaded, r.Skipped, err)
	e, st := after.Lookup("CT-A-CHI-1234-P-24-A-0", p, now)
	fmt.Println(st, e.Valid, string(e.Value))
	// Output:
	// 1 <nil>
	// 1 0 <nil>
	// STALE true PEO
}
