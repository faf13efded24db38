package sidecar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// reloadTo writes yaml as the config file, signals a reload and waits for
// generation gen (or, if gen is 0, for a rejection).
func (h *harness) reloadTo(yaml string, gen int64) config.Status {
	h.t.Helper()
	h.writeConfig(yaml)
	before := h.watcher.Status()
	h.reload <- os.Interrupt
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.watcher.Wait(ctx, func(s config.Status) bool {
		if gen == 0 {
			return s.LastErrorAt != nil && (before.LastErrorAt == nil || s.LastErrorAt.After(*before.LastErrorAt))
		}
		return s.Generation == gen
	})
	if err != nil {
		h.t.Fatalf("reload to generation %d: %v; status %+v", gen, err, h.watcher.Status())
	}
	return h.watcher.Status()
}

// configDoc returns /health's config section.
func (h *harness) configDoc() map[string]any {
	h.t.Helper()
	c, _ := h.do("GET", "/health", "").body["config"].(map[string]any)
	return c
}

func TestReloadAppliesAndRejects(t *testing.T) {
	t.Parallel()
	h := startFile(t, sim.Config{}, "limits: {maxBatch: 5}\n")
	three := `{"requests":[{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"}]}`
	h.do("POST", "/v1/mint/batch", three).expect(t, "batch of 3 under maxBatch 5", 200, "")
	doc := h.configDoc()
	if doc["generation"] != float64(1) || doc["hash"] == "" || doc["path"] != h.file {
		t.Fatalf("config section at start: %v", doc)
	}
	hash1 := doc["hash"]

	h.reloadTo(configFor(h.sim, sim.Config{}, "limits: {maxBatch: 2}\n"), 2)
	h.do("POST", "/v1/mint/batch", three).expect(t, "batch of 3 over the reloaded maxBatch 2", 400, "BAD_REQUEST")
	if doc := h.configDoc(); doc["generation"] != float64(2) || doc["hash"] == hash1 || doc["lastError"] != "" {
		t.Errorf("config section after reload: %v", doc)
	}

	for _, bad := range []struct{ name, yaml, inError string }{
		{"bad YAML", "limits: {maxBatch: [\n", "yaml"},
		{"unknown key", "limits: {maxBatchh: 9}\n", "maxBatchh"},
		{"invalid value", "limits: {maxBatch: 0}\n", "limits.maxBatch"},
		{"empty file", "", "empty"},
	} {
		h.reloadTo(bad.yaml, 0)
		doc := h.configDoc()
		if doc["generation"] != float64(2) || !strings.Contains(doc["lastError"].(string), bad.inError) {
			t.Errorf("%s: config section %v", bad.name, doc)
		}
		h.do("POST", "/v1/mint/batch", three).expect(t, bad.name+": the old config still runs", 400, "BAD_REQUEST")
		if r := h.do("GET", "/readyz", ""); r.status != 200 {
			t.Errorf("%s: not ready after a rejected reload", bad.name)
		}
	}
	h.reloadTo(configFor(h.sim, sim.Config{}, "limits: {maxBatch: 10}\n"), 3)
	if doc := h.configDoc(); doc["lastError"] != "" {
		t.Errorf("a good file did not clear lastError: %v", doc)
	}
	h.do("POST", "/v1/mint/batch", three).expect(t, "after the fix", 200, "")
}

func TestReloadRestartOnlyKeysAreKept(t *testing.T) {
	t.Parallel()
	h := startFile(t, sim.Config{}, "")
	h.reloadTo(configFor(h.sim, sim.Config{}, "cache: {maxSizeMB: 8, shards: 16}\n"), 2)
	doc := h.configDoc()
	got, _ := doc["restartRequired"].([]any)
	if len(got) != 2 || got[0] != "cache.maxSizeMB" || got[1] != "cache.shards" {
		t.Errorf("restartRequired = %v, want cache.maxSizeMB and cache.shards", got)
	}
	cache := h.do("GET", "/health", "").body["resilience"].(map[string]any)["cache"].(map[string]any)
	if cache["maxSizeMB"] != float64(64) {
		t.Errorf("running cache size %v, want the startup 64", cache["maxSizeMB"])
	}
}

func TestReloadTokenRotation(t *testing.T) {
	t.Parallel()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startFile(t, sim.Config{}, "upstream:\n  tokenFile: "+tok+"\n")
	h.mint("PEO").expect(t, "mint with the first token", 200, "")
	h.sim.SetToken("rotated-token-2")
	h.mint("PEO").expect(t, "mint after upstream rotated", 401, "UNAUTHORIZED")
	if err := os.WriteFile(tok, []byte("rotated-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.reload <- os.Interrupt
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.watcher.Wait(ctx, func(s config.Status) bool { return s.Generation == 2 }); err != nil {
		t.Fatal(err)
	}
	h.mint("PEO").expect(t, "mint with the rotated token", 200, "")
	reqs := h.sim.Requests()
	if last := reqs[len(reqs)-1]; last.Route != "mint" || !last.Authorized {
		t.Errorf("last upstream request %+v, want an authorized mint", last)
	}
	if strings.Contains(h.do("GET", "/health", "").raw, "rotated-token-2") {
		t.Error("/health shows the token")
	}
}

func TestReloadNewUpstreamURL(t *testing.T) {
	t.Parallel()
	h := startFile(t, sim.Config{}, "")
	other, err := sim.Start(sim.Config{Token: testToken}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	id := h.mustMint("PEO")
	h.reloadTo(configFor(other, sim.Config{}, ""), 2)
	h.mustMint("PEO")
	if n := other.Stats().Mint; n != 1 {
		t.Errorf("the new upstream saw %d mints, want 1", n)
	}
	if v := h.validate(id); v.header.Get("X-Cache") != "HIT" {
		t.Errorf("cache lost across the reload: X-Cache %s", v.header.Get("X-Cache"))
	}
}

// TestReloadUnderLoad reloads repeatedly while callers validate known IDs
// and mint: no request fails and every validate stays a cache hit.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	h := startFile(t, sim.Config{}, "")
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = h.mustMint("PEO")
	}
	var failures, requests, misses atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				var r reply
				if w%3 == 0 {
					r = h.mint("EVNT")
				} else {
					r = h.validate(ids[i%len(ids)])
					if r.header.Get("X-Cache") != "HIT" {
						misses.Add(1)
					}
				}
				requests.Add(1)
				if r.status != 200 {
					failures.Add(1)
					t.Errorf("during reloads: %d %s", r.status, r.raw)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	gen := int64(1)
	for loading := true; loading; {
		select {
		case <-done:
			loading = false
		default:
			gen++
			extra := "validate: {ttl: 10m}\nupstream:\n  retry: {maxAttempts: 2}\n"
			if gen%2 == 0 {
				extra = "validate: {ttl: 20m}\nupstream:\n  maxInFlight: 32\n"
			}
			h.reloadTo(configFor(h.sim, sim.Config{}, extra), gen)
		}
	}
	if gen < 5 || failures.Load() != 0 || misses.Load() != 0 {
		t.Errorf("%d requests during %d reloads: %d failed, %d validates not HIT", requests.Load(), gen-1, failures.Load(), misses.Load())
	}
}
