package cache

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPolicy is the policy tests use unless they say otherwise.
var testPolicy = Policy{TTL: 10 * time.Second, NegativeTTL: 2 * time.Second, StaleIfError: time.Minute}

// newTestCache builds a cache that is closed when the test ends.
func newTestCache(t testing.TB, cfg Config, p Policy) *Cache {
	t.Helper()
	c, err := New(cfg, p)
	if err != nil {
		t.Fatalf("New(%+v, %+v): %v", cfg, p, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// smallConfig keeps test caches small: 2 MiB in 4 shards.
var smallConfig = Config{MaxSizeMB: 2, Shards: 4}

func mustStore(t testing.TB, c *Cache, id string, e Entry) {
	t.Helper()
	if err := c.Store(id, e); err != nil {
		t.Fatalf("Store(%q): %v", id, err)
	}
}
