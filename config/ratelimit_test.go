package config

import "testing"

func TestValidateRateLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mutate   func(r *RateLimit, l *Limits)
		wantErrs []string
	}{
		{"defaults: no limit", func(*RateLimit, *Limits) {}, nil},
		{"every limit set", func(r *RateLimit, l *Limits) {
			r.Mint = MintRate{PerCallerPerMinute: 60, GlobalPerMinute: 600, Burst: 100, FleetBurst: 100}
			r.Validate = ValidateRate{GlobalPerSecond: 5000, Burst: 1}
		}, nil},
		{"maxCallers bounds", func(r *RateLimit, _ *Limits) { r.MaxCallers = 1 }, nil},
		{"maxCallers upper bound", func(r *RateLimit, _ *Limits) { r.MaxCallers = 1_000_000 }, nil},
		{"maxCallers over", func(r *RateLimit, _ *Limits) { r.MaxCallers = 1_000_001 }, []string{
			"rateLimit.maxCallers must be between 1 and 1000000, got 1000001",
		}},
		{"negative rates", func(r *RateLimit, _ *Limits) {
			r.Mint.PerCallerPerMinute, r.Mint.GlobalPerMinute, r.Validate.GlobalPerSecond = -1, -2, -3
		}, []string{
			"rateLimit.mint.perCallerPerMinute must be >= 0 (0 = no limit), got -1",
			"rateLimit.mint.globalPerMinute must be >= 0 (0 = no limit), got -2",
			"rateLimit.validate.globalPerSecond must be >= 0 (0 = no limit), got -3",
		}},
		{"zero bursts", func(r *RateLimit, _ *Limits) { r.Mint.Burst, r.Validate.Burst = 0, 0 }, []string{
			"rateLimit.mint.burst must be >= 1, got 0",
			"rateLimit.validate.burst must be >= 1, got 0",
		}},
		// A batch of limits.maxBatch IDs takes that many tokens at once: a
		// smaller bucket would refuse it forever.
		{"mint burst under maxBatch with a per-caller rate", func(r *RateLimit, _ *Limits) { r.Mint.PerCallerPerMinute = 60 }, []string{
			"rateLimit.mint.burst must be >= limits.maxBatch (100) while a mint rate is set, got 10",
		}},
		{"mint burst under maxBatch with a global rate", func(r *RateLimit, l *Limits) { r.Mint.GlobalPerMinute, l.MaxBatch = 60, 11 }, []string{
			"rateLimit.mint.burst must be >= limits.maxBatch (11) while a mint rate is set, got 10",
		}},
		{"mint burst equal to maxBatch", func(r *RateLimit, l *Limits) { r.Mint.GlobalPerMinute, l.MaxBatch = 60, 10 }, nil},
		// The fleet limit: the same rules, and it needs the fleet tier.
		{"fleet rate without the fleet tier", func(r *RateLimit, _ *Limits) { r.Mint.FleetPerMinute = 600 }, []string{
			"rateLimit.mint.fleetPerMinute is set (600) but fleet.redis.addrs is empty",
		}},
		{"negative fleet rate, zero fleet burst", func(r *RateLimit, _ *Limits) { r.Mint.FleetPerMinute, r.Mint.FleetBurst = -1, 0 }, []string{
			"rateLimit.mint.fleetPerMinute must be >= 0 (0 = no limit), got -1",
			"rateLimit.mint.fleetBurst must be >= 1, got 0",
		}},
		{"fleet burst under maxBatch with a fleet rate", func(r *RateLimit, l *Limits) { r.Mint.FleetPerMinute, l.MaxBatch = 600, 200 }, []string{
			"rateLimit.mint.fleetBurst must be >= limits.maxBatch (200) while rateLimit.mint.fleetPerMinute is set, got 100",
			"rateLimit.mint.fleetPerMinute is set (600) but fleet.redis.addrs is empty",
		}},
		{"fleet burst under maxBatch without a fleet rate", func(r *RateLimit, l *Limits) { r.Mint.FleetBurst, l.MaxBatch = 5, 200 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Defaults()
			tc.mutate(&c.RateLimit, &c.Limits)
			checkErrs(t, c.Validate(), tc.wantErrs)
		})
	}
}

func TestMintRateLimited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m    MintRate
		want bool
	}{
		{MintRate{Burst: 10}, false},
		{MintRate{PerCallerPerMinute: 1}, true},
		{MintRate{GlobalPerMinute: 1}, true},
	} {
		if got := tc.m.Limited(); got != tc.want {
			t.Errorf("%+v.Limited() = %v, want %v", tc.m, got, tc.want)
		}
	}
}
