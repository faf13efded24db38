package cache

import (
	"errors"
	"fmt"
	"time"
)

// Config is the cache section of the sidecar's config file. Both settings are
// fixed when the cache is built: changing them needs a restart.
type Config struct {
	// MaxSizeMB bounds the memory that entries use, in MiB. Three quarters hold
	// "valid" verdicts and one quarter "not valid" ones, so a flood of garbage
	// IDs cannot push out good ones. When a part is full its oldest entries are
	// evicted (FIFO). Default 64; at least 2.
	MaxSizeMB int `yaml:"maxSizeMB"`
	// Shards is the number of independently locked shards, a power of two.
	// Default 64.
	Shards int `yaml:"shards"`
}

// Policy says how long verdicts are fresh. It comes from the validate section
// of the config and may change on every reload, so it is passed per call.
type Policy struct {
	// TTL is how long a "valid" verdict is served as a hit.
	TTL time.Duration
	// NegativeTTL is how long a "not valid" verdict is served as a hit.
	NegativeTTL time.Duration
	// StaleIfError is how old an entry may be and still be served, marked
	// stale, while upstream fails.
	StaleIfError time.Duration
}

// Defaults returns the cache section with every default filled in.
func Defaults() Config { return Config{MaxSizeMB: 64, Shards: 64} }

// Validate reports every problem of the section, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSizeMB < 2 {
		errs = append(errs, fmt.Errorf("cache.maxSizeMB must be >= 2, got %d", c.MaxSizeMB))
	}
	if c.Shards < 1 || c.Shards > 4096 || c.Shards&(c.Shards-1) != 0 {
		errs = append(errs, fmt.Errorf("cache.shards must be a power of two between 1 and 4096, got %d", c.Shards))
	}
	return errors.Join(errs...)
}
