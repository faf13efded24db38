package sidecar

import (
	"context"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

// The fleet mint limit (rateLimit.mint.fleetPerMinute, docs/fleet.md): one
// GCRA bucket in Redis for every sidecar of the fleet, asked once the local
// limits would let a mint through, before their tokens are taken. The
// fleet tier's verdicts are cache/resolve's business; the
// process side of the tier (building, closing, reload, /health, metrics)
// is in fleettier.go.

// fleetLimit is the fleet mint limit as the mint handlers see it.
type fleetLimit interface {
	AllowMint(ctx context.Context, n, perMinute, burst int) (ok bool, retryAfter time.Duration, err error)
}

var _ fleetLimit = (*fleet.Tier)(nil)

// fleetMintLimited reports whether the fleet mint limit applies: the tier
// is on and rateLimit.mint.fleetPerMinute is set.
func (a *api) fleetMintLimited(cfg *config.Config) bool {
	return a.fleetLimit != nil && cfg.RateLimit.Mint.FleetPerMinute > 0
}

// allowFleetMint applies the fleet mint limit (rateLimit.mint.fleetPerMinute)
// to n IDs, once the local limits would let them through: 429 RATE_LIMITED
// with Retry-After when the fleet has used its tokens. It fails open:
// while Redis fails, the local limits alone decide, and the mint's IDs are
// not written to the fleet tier (au.fleetFailed), so that a mint waits on
// a failing Redis once, at most fleet.timeout, not once more for the
// writes.
func (a *api) allowFleetMint(ctx *fasthttp.RequestCtx, cfg *config.Config, au *audit, n int) (result, bool) {
	m := cfg.RateLimit.Mint
	ok, d, err := a.fleetLimit.AllowMint(context.Background(), n, m.FleetPerMinute, m.FleetBurst)
	if err != nil {
		au.fleetFailed = true
	}
	if ok {
		return result{}, true
	}
	au.outcome = codeRateLimited
	res := rateLimited(ctx, au.sh, "fleet mint (rateLimit.mint.fleetPerMinute)", d)
	res.limited = false // a local limit's count; the fleet tier's metrics count this one
	return res, false
}
