package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
)

// The validate path of a sidecar in a fleet: the fleet tier answers what
// another sidecar already asked upstream, and at most one sidecar asks
// upstream about an ID at a time. (Not run: it needs a Redis at
// 127.0.0.1:6379.)
func ExampleTier_Fetch() {
	cfg := fleet.Defaults()
	cfg.Redis.Addrs = []string{"127.0.0.1:6379"}
	tier, err := fleet.New(cfg, fleet.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tier.Close()

	p := fleet.Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: 24 * time.Hour}
	validate := func(ctx context.Context) (fleet.Verdict, error) {
		// Ask upstream here, within ctx.
		return fleet.Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now()}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // the request's deadline
	defer cancel()
	v, src, err := tier.Fetch(ctx, "CT-A-CHI-1234-P-24-A-0", p, validate)
	switch {
	case err == nil:
		fmt.Println(v.Valid, string(v.Value), src) // src: fleet (X-Cache-Tier: fleet) or fetched
	case src == fleet.SourceStale:
		fmt.Println("stale:", v.Valid, string(v.Value))
	case errors.Is(err, fleet.ErrPeerFailed):
		fmt.Println("upstream failed for this ID on another sidecar just now")
	default:
		fmt.Println(err)
	}
}
