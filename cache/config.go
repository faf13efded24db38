package cache

import (
	"errors"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

// Config is the cache section of the sidecar's config file. Both settings are
// fixed when the cache is built: changing them needs a restart.
type Config struct {
	// MaxSizeMB bounds the memory that entries use, in MiB. Three quarters hold
	// "valid" verdicts and one quarter "not valid" ones, so a flood of garbage
	// IDs cannot push out good ones. When a part is full its oldest entries are
	// evicted (FIFO). Default 64; at least 2.
	MaxSizeMB int `yaml:"maxSizeMB"`
	// Shards is the number of independently locked shards of each part, a
	// power of two. Each shard of the "not valid" part needs 16 KiB, so with
	// the minimum maxSizeMB of 2 at most 64 shards are allowed. Default 64.
	Shards int `yaml:"shards"`
}

// Policy says how long verdicts are fresh. It comes from the validate section
// of the config and may change on every reload, so it is passed per call.
// Zero durations mean "never fresh" (TTL, NegativeTTL) and "never stale"
// (StaleIfError).
type Policy struct {
	// TTL is how long a "valid" verdict is served as a hit.
	TTL time.Duration
	// NegativeTTL is how long a "not valid" verdict is served as a hit.
	NegativeTTL time.Duration
	// StaleIfError is how old an entry may be and still be served, marked
	// stale, while upstream fails.
	StaleIfError time.Duration
}

// minShardBytes is the least memory a shard of the smaller ("not valid") part
// may have. bigcache splits a part's bytes evenly across shards and, before it
// rejects an entry too big for a shard, evicts that whole shard; 16 KiB keeps
// the largest entry (MaxIDLen + MaxValueLen + headers, about 1.3 KiB) well
// below half a shard.
const minShardBytes = 16 << 10

// Defaults returns the cache section with every default filled in.
func Defaults() Config { return Config{MaxSizeMB: 64, Shards: 64} }

// withDefaults returns c with each zero field set to its default.
func (c Config) withDefaults() Config {
	d := Defaults()
	if c.MaxSizeMB == 0 {
		c.MaxSizeMB = d.MaxSizeMB
	}
	if c.Shards == 0 {
		c.Shards = d.Shards
	}
	return c
}

// Validate reports every problem of the section, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSizeMB < 2 {
		errs = append(errs, field.Errorf("cache.maxSizeMB", "must be >= 2, got %d", c.MaxSizeMB))
	}
	if c.Shards < 1 || c.Shards > 4096 || c.Shards&(c.Shards-1) != 0 {
		errs = append(errs, field.Errorf("cache.shards", "must be a power of two between 1 and 4096, got %d", c.Shards))
	}
	if len(errs) == 0 {
		_, invalidMB := c.partsMB()
		if most := invalidMB << 20 / minShardBytes; c.Shards > most {
			errs = append(errs, field.Errorf("cache.shards", "must be at most %d for cache.maxSizeMB %d (each shard needs 16 KiB), got %d",
				most, c.MaxSizeMB, c.Shards).With("cache.maxSizeMB"))
		}
	}
	return errors.Join(errs...)
}

// partsMB splits MaxSizeMB between the "valid" part (three quarters) and the
// "not valid" part (the rest), each at least 1 MiB.
func (c Config) partsMB() (validMB, invalidMB int) {
	validMB = max(c.MaxSizeMB*3/4, 1)
	invalidMB = max(c.MaxSizeMB-validMB, 1)
	return validMB, invalidMB
}
