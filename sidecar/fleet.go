package sidecar

import (
	"context"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

// The fleet mint limit (rateLimit.mint.fleetPerMinute, docs/fleet.md): one
// GCRA bucket in Redis for every sidecar of the fleet, asked after the
// local limits. The fleet tier's verdicts are cache/resolve's business; the
// process side of the tier (building, closing, reload, /health, metrics)
// is in fleettier.go.

// fleetLimit is the fleet mint limit as the mint handlers see it.
type fleetLimit interface {
	AllowMint(ctx context.Context, n, perMinute, burst int) (ok bool, retryAfter time.Duration, err error)
}

var _ fleetLimit = (*fleet.Tier)(nil)

// allowFleetMint applies the fleet mint limit (rateLimit.mint.fleetPerMinute)
// to n IDs, after the local limits let them through: 429 RATE_LIMITED with
// Retry-After when the fleet has used its tokens. It fails open: without
// the tier, or while Redis fails, the local limits alone decide.
func (a *api) allowFleetMint(ctx *fasthttp.RequestCtx, cfg *config.Config, au *audit, n int) (result, bool) {
	if a.fleetLimit == nil {
		return result{}, true
	}
	m := cfg.RateLimit.Mint
	if m.FleetPerMinute <= 0 {
		return result{}, true
	}
	ok, d, _ := a.fleetLimit.AllowMint(context.Background(), n, m.FleetPerMinute, m.FleetBurst)
	if ok {
		return result{}, true
	}
	au.outcome = codeRateLimited
	res := rateLimited(ctx, au.sh, "fleet mint (rateLimit.mint.fleetPerMinute)", d)
	res.limited = false // a local limit's count; the fleet tier's metrics count this one
	return res, false
}
