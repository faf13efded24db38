package config

import (
	"reflect"
	"strings"
)

// restartOnly is the one table of the settings a running sidecar reads at
// start only (a listener's address, a size fixed at construction, a
// connection's peers). A reload that changes one keeps the running value;
// KeepRestartOnly lists it for /health config.restartRequired. docs/configuration.md,
// Reloading, names the same keys (a test checks).
func restartOnly() []struct {
	key   string
	field func(*Config) any // a pointer to the setting in c
} {
	return []struct {
		key   string
		field func(*Config) any
	}{
		{"listen", func(c *Config) any { return &c.Listen }},
		{"metrics.listen", func(c *Config) any { return &c.Metrics.Listen }},
		{"cache.maxSizeMB", func(c *Config) any { return &c.Cache.MaxSizeMB }},
		{"cache.shards", func(c *Config) any { return &c.Cache.Shards }},
		{"limits.maxBodyBytes", func(c *Config) any { return &c.Limits.MaxBodyBytes }},
		{"log.format", func(c *Config) any { return &c.Log.Format }},
		// The snapshot is read from its path at start only; writing
		// elsewhere would leave the next start to restore a file that
		// stopped changing.
		{"snapshot.path", func(c *Config) any { return &c.Snapshot.Path }},
		// The fleet tier's connections are made at start.
		{"fleet.redis.addrs", func(c *Config) any { return &c.Fleet.Redis.Addrs }},
		{"fleet.redis.sentinel.masterName", func(c *Config) any { return &c.Fleet.Redis.Sentinel.MasterName }},
		{"fleet.redis.db", func(c *Config) any { return &c.Fleet.Redis.DB }},
		{"fleet.redis.tls", func(c *Config) any { return &c.Fleet.Redis.TLS }},
	}
}

// RestartOnlyKeys are the keys whose changes apply only after a restart.
func RestartOnlyKeys() []string {
	var keys []string
	for _, r := range restartOnly() {
		keys = append(keys, r.key)
	}
	return keys
}

// KeepRestartOnly copies into next the running values of the settings
// that apply at start only, and returns the keys whose values next changed
// (a section, such as fleet.redis.tls, is named once for all its keys).
func KeepRestartOnly(running, next *Config) []string {
	var changed []string
	for _, r := range restartOnly() {
		was, now := reflect.ValueOf(r.field(running)).Elem(), reflect.ValueOf(r.field(next)).Elem()
		if !reflect.DeepEqual(was.Interface(), now.Interface()) {
			changed = append(changed, r.key)
		}
		now.Set(was)
	}
	return changed
}

// isRestartOnly reports whether key is, or is under, a restart-only key.
func isRestartOnly(key string) bool {
	for _, r := range restartOnly() {
		if key == r.key || strings.HasPrefix(key, r.key+".") {
			return true
		}
	}
	return false
}
