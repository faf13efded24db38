package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
)

// TestKeepRestartOnly: a reload that changes a restart-only setting keeps
// the running value and names the key; the others apply.
func TestKeepRestartOnly(t *testing.T) {
	t.Parallel()
	running := Defaults()
	next := Defaults()
	next.Listen = "127.0.0.1:9999"
	next.Cache.MaxSizeMB = 128
	next.Fleet.Redis.Addrs = []string{"redis:6379"}
	next.Fleet.Redis.TLS.Enabled = true
	next.Upstream.Timeout = 2 * time.Second // reloadable
	changed := KeepRestartOnly(&running, &next)
	if want := []string{"listen", "cache.maxSizeMB", "fleet.redis.addrs", "fleet.redis.tls"}; !slices.Equal(changed, want) {
		t.Errorf("changed = %v, want %v", changed, want)
	}
	if next.Listen != running.Listen || next.Cache.MaxSizeMB != running.Cache.MaxSizeMB || next.Fleet.Redis.Addrs != nil || next.Fleet.Redis.TLS.Enabled {
		t.Errorf("the running values were not kept: %+v", next)
	}
	if next.Upstream.Timeout != 2*time.Second {
		t.Errorf("a reloadable setting was reset: upstream.timeout %s", next.Upstream.Timeout)
	}
	if again := KeepRestartOnly(&running, &next); len(again) != 0 {
		t.Errorf("nothing changed, yet %v", again)
	}
}

// TestDocsNameTheRestartOnlyKeys: the list of settings that need a
// restart in docs/configuration.md is the table's.
func TestDocsNameTheRestartOnlyKeys(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, list, ok := strings.Cut(string(b), "- Need a restart: ")
	if !ok {
		t.Fatal(`docs/configuration.md has no "- Need a restart: " list`)
	}
	list, _, _ = strings.Cut(list, ". A reload")
	var named []string
	for _, m := range regexp.MustCompile("`([a-zA-Z.]+)(\\.\\*)?`").FindAllStringSubmatch(list, -1) {
		named = append(named, m[1])
	}
	for _, k := range RestartOnlyKeys() {
		if !slices.Contains(named, k) {
			t.Errorf("docs/configuration.md's restart list lacks %s", k)
		}
	}
	for _, k := range named {
		if !isRestartOnly(k) {
			t.Errorf("docs/configuration.md lists %s as needing a restart; the config table does not", k)
		}
	}
}

// TestFleetRestartKeysInTheTable: what the fleet tier cannot change while
// running is in the config's one table.
func TestFleetRestartKeysInTheTable(t *testing.T) {
	t.Parallel()
	for _, k := range fleet.RestartKeys() {
		if !isRestartOnly(k) {
			t.Errorf("%s: the fleet tier needs a restart for it, the config table does not know", k)
		}
	}
}
