package config

import "github.com/chittyos/chittyid-sidecar/config/field"

// maxRateCallers bounds rateLimit.maxCallers.
const maxRateCallers = 1_000_000

// RateLimit is the rateLimit section: local token buckets that refuse
// requests over the limit with 429 RATE_LIMITED before anything is sent
// upstream. A rate of 0 means no limit. Every setting is reloadable; new
// rates and bursts apply at once to the buckets already in use.
type RateLimit struct {
	// Mint limits POST /v1/mint and /v1/mint/batch; a batch counts one
	// token per ID requested.
	Mint MintRate `yaml:"mint"`
	// Validate limits validate requests (GET and POST), all callers together.
	Validate ValidateRate `yaml:"validate"`
	// MaxCallers is how many callers (distinct X-Client-ID values) have a
	// bucket of their own; when a new caller arrives and the table is full,
	// the least recently seen one is dropped (and starts over with a full
	// bucket if it comes back). 1 to 1,000,000. Default 10000.
	MaxCallers int `yaml:"maxCallers"`
}

// MintRate is the rateLimit.mint section.
type MintRate struct {
	// PerCallerPerMinute is how many IDs one caller (X-Client-ID, or the
	// shared "default" caller without one) may mint per minute, on average.
	// 0 means no per-caller limit. Default 0.
	PerCallerPerMinute int `yaml:"perCallerPerMinute"`
	// GlobalPerMinute is how many IDs all callers together may mint per
	// minute, on average. 0 means no global limit. Default 0.
	GlobalPerMinute int `yaml:"globalPerMinute"`
	// Burst is how many IDs may be minted at once above the average rate:
	// the size of each bucket, per caller and global. While a mint rate is
	// set it must be at least limits.maxBatch, or a full batch could never
	// pass. Default 10.
	Burst int `yaml:"burst"`
	// FleetPerMinute is how many IDs the whole fleet (every sidecar with
	// the same fleet.redis and fleet.keyPrefix) may mint per minute, on
	// average, counted in Redis after the local limits. It needs
	// fleet.redis.addrs; while Redis is unavailable the local limits alone
	// apply. 0 means no fleet limit. Default 0.
	FleetPerMinute int `yaml:"fleetPerMinute"`
	// FleetBurst is how many IDs the fleet may mint at once above its
	// average rate. While FleetPerMinute is set it must be at least
	// limits.maxBatch, as Burst. Default 100.
	FleetBurst int `yaml:"fleetBurst"`
}

// ValidateRate is the rateLimit.validate section.
type ValidateRate struct {
	// GlobalPerSecond is how many validate requests all callers together may
	// make per second, on average. 0 means no limit. Default 0.
	GlobalPerSecond int `yaml:"globalPerSecond"`
	// Burst is how many validate requests may arrive at once above the
	// average rate. Default 100.
	Burst int `yaml:"burst"`
}

// Limited reports whether a mint rate (per caller or global) is set.
func (m MintRate) Limited() bool { return m.PerCallerPerMinute > 0 || m.GlobalPerMinute > 0 }

func defaultRateLimit() RateLimit {
	return RateLimit{
		Mint:       MintRate{Burst: 10, FleetBurst: 100},
		Validate:   ValidateRate{Burst: 100},
		MaxCallers: 10_000,
	}
}

// validate checks the section; maxBatch is limits.maxBatch, which a mint
// burst must cover.
func (r RateLimit) validate(maxBatch int) error {
	var errs field.Errors
	if r.Mint.PerCallerPerMinute < 0 {
		errs.Add("rateLimit.mint.perCallerPerMinute", "must be >= 0 (0 = no limit), got %d", r.Mint.PerCallerPerMinute)
	}
	if r.Mint.GlobalPerMinute < 0 {
		errs.Add("rateLimit.mint.globalPerMinute", "must be >= 0 (0 = no limit), got %d", r.Mint.GlobalPerMinute)
	}
	switch {
	case r.Mint.Burst < 1:
		errs.Add("rateLimit.mint.burst", "must be >= 1, got %d", r.Mint.Burst)
	case r.Mint.Limited() && r.Mint.Burst < maxBatch:
		errs.Add("rateLimit.mint.burst", "must be >= limits.maxBatch (%d) while a mint rate is set, got %d", maxBatch, r.Mint.Burst).With("limits.maxBatch")
	}
	if r.Mint.FleetPerMinute < 0 {
		errs.Add("rateLimit.mint.fleetPerMinute", "must be >= 0 (0 = no limit), got %d", r.Mint.FleetPerMinute)
	}
	switch {
	case r.Mint.FleetBurst < 1:
		errs.Add("rateLimit.mint.fleetBurst", "must be >= 1, got %d", r.Mint.FleetBurst)
	case r.Mint.FleetPerMinute > 0 && r.Mint.FleetBurst < maxBatch:
		errs.Add("rateLimit.mint.fleetBurst", "must be >= limits.maxBatch (%d) while rateLimit.mint.fleetPerMinute is set, got %d", maxBatch, r.Mint.FleetBurst).With("limits.maxBatch", "rateLimit.mint.fleetPerMinute")
	}
	if r.Validate.GlobalPerSecond < 0 {
		errs.Add("rateLimit.validate.globalPerSecond", "must be >= 0 (0 = no limit), got %d", r.Validate.GlobalPerSecond)
	}
	if r.Validate.Burst < 1 {
		errs.Add("rateLimit.validate.burst", "must be >= 1, got %d", r.Validate.Burst)
	}
	if r.MaxCallers < 1 || r.MaxCallers > maxRateCallers {
		errs.Add("rateLimit.maxCallers", "must be between 1 and %d, got %d", maxRateCallers, r.MaxCallers)
	}
	return errs.Join()
}
