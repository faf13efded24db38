package sidecar

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/cache/fleet/fleettest"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar/ratelimit"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// The fleet tier through the handlers, over the fakes of api_test.go and
// a fake fleet tier (cache/fleet/fleettest): what each tier's answer looks like (X-Cache,
// X-Cache-Tier, Age), minted IDs shared, the fleet mint limit. The
// resolution itself is cache/resolve's, tested there; the tests on real
// redis-server processes (fleet_test.go) cover the same paths across
// sidecars.

// newFleetFixture is newFixture with the fake fleet tier wired in.
func newFleetFixture(t *testing.T, yaml string, state fsm.State) (*fixture, *fleettest.Tier) {
	t.Helper()
	f := newFixture(t, yaml, state, open)
	ff := fleettest.New()
	f.withFleet(ff)
	return f, ff
}

// withFleet wires ff in as the fleet tier, for verdicts and the mint limit.
func (f *fixture) withFleet(ff *fleettest.Tier) {
	f.api.verdicts = resolve.New(f.cache, f.link, resolve.Options{Fleet: ff})
	f.api.fleetLimit = ff
}

func TestFleetValidate(t *testing.T) {
	t.Parallel()
	valid := func(context.Context, string) (upstream.Verdict, error) {
		return upstream.Verdict{Valid: true, Entity: "PEO"}, nil
	}
	failing := func(context.Context, string) (upstream.Verdict, error) {
		return upstream.Verdict{}, callErr(upstream.ErrUnavailable, 503)
	}
	ago := func(d time.Duration) time.Time { return time.Now().Add(-d) }
	// Default policy: ttl 10m, negativeTtl 1m, staleIfError 24h.
	for _, tc := range []struct {
		name      string
		state     fsm.State
		local     string        // "", "fresh" or "stale": unitID in the local cache
		fleetAge  time.Duration // unitID's verdict in the fleet tier, fetched this long ago; 0: none
		fleetVal  string        // its entity ("" = PEO)
		down      bool          // Redis unavailable
		validate  func(context.Context, string) (upstream.Verdict, error)
		status    int
		xcache    string
		tier      string
		calls     int
		storedAge time.Duration // the local entry's age after the answer, for a fleet hit
	}{
		{name: "local hit", state: fsm.Connected, local: "fresh", validate: valid, status: 200, xcache: "HIT", tier: "local"},
		{name: "fleet hit keeps its age", state: fsm.Connected, fleetAge: 3 * time.Minute, validate: valid, status: 200,
			xcache: "HIT", tier: "fleet", storedAge: 3 * time.Minute},
		{name: "fleet miss asks upstream", state: fsm.Connected, validate: valid, status: 200, xcache: "MISS", calls: 1},
		{name: "fleet entry past its TTL refreshed", state: fsm.Connected, fleetAge: time.Hour, validate: valid, status: 200,
			xcache: "MISS", calls: 1},
		{name: "fleet stale while upstream fails", state: fsm.Reconnecting, fleetAge: time.Hour, validate: failing, status: 200,
			xcache: "STALE", tier: "fleet", calls: 1},
		{name: "fleet entry older than staleIfError", state: fsm.Reconnecting, fleetAge: 25 * time.Hour, validate: failing, status: 503, calls: 1},
		{name: "local stale beats the fleet's", state: fsm.Reconnecting, local: "stale", fleetAge: time.Hour, validate: failing,
			status: 200, xcache: "STALE", tier: "local", calls: 1},
		{name: "forged fleet entry is not served", state: fsm.Connected, fleetAge: time.Minute, fleetVal: `PEO","x":"`,
			validate: valid, status: 200, xcache: "MISS", calls: 1},
		{name: "Redis down: local, then upstream", state: fsm.Connected, fleetAge: time.Minute, down: true, validate: valid,
			status: 200, xcache: "MISS", calls: 1},
		{name: "FAILED: fleet hit", state: fsm.Failed, fleetAge: time.Minute, validate: valid, status: 200, xcache: "HIT",
			tier: "fleet", storedAge: time.Minute},
		{name: "FAILED: fleet stale", state: fsm.Failed, fleetAge: time.Hour, validate: valid, status: 200, xcache: "STALE", tier: "fleet"},
		{name: "FAILED: local stale first", state: fsm.Failed, local: "stale", fleetAge: time.Hour, validate: valid, status: 200,
			xcache: "STALE", tier: "local"},
		{name: "FAILED: nothing anywhere", state: fsm.Failed, validate: valid, status: 503},
		{name: "FAILED: Redis down", state: fsm.Failed, fleetAge: time.Minute, down: true, validate: valid, status: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, ff := newFleetFixture(t, "", tc.state)
			f.client.validate = tc.validate
			ff.Down = tc.down
			began := time.Now() // the verdicts' ages count from here
			switch e := (cache.Entry{Valid: true, FetchedAt: ago(2 * time.Hour), Value: []byte("PEO")}); tc.local {
			case "fresh":
				e.FetchedAt = ago(time.Second)
				f.cache.fresh[unitID] = e
			case "stale":
				f.cache.stale[unitID] = e
			}
			if tc.fleetAge > 0 {
				val := tc.fleetVal
				if val == "" {
					val = "PEO"
				}
				ff.Verdicts[unitID] = fleet.Verdict{Valid: true, Value: []byte(val), FetchedAt: ago(tc.fleetAge)}
			}
			ctx, body, _ := f.do("GET", "/v1/validate/"+unitID, "")
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("HTTP %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			if got := string(ctx.Response.Header.Peek("X-Cache")); got != tc.xcache {
				t.Errorf("X-Cache %q, want %q", got, tc.xcache)
			}
			if got := string(ctx.Response.Header.Peek("X-Cache-Tier")); got != tc.tier {
				t.Errorf("X-Cache-Tier %q, want %q", got, tc.tier)
			}
			if tc.status == 200 && (body["valid"] != true || body["entity"] != "PEO") {
				t.Errorf("answer %s, want valid PEO", ctx.Response.Body())
			}
			if tc.xcache == "STALE" && body["stale"] != true {
				t.Errorf("a stale answer without \"stale\": true: %s", ctx.Response.Body())
			}
			if f.client.calls != tc.calls {
				t.Errorf("%d upstream calls, want %d", f.client.calls, tc.calls)
			}
			if tc.storedAge > 0 {
				e, ok := f.cache.fresh[unitID]
				if age := time.Since(e.FetchedAt); !ok || age < tc.storedAge || age > tc.storedAge+time.Minute {
					t.Errorf("local entry %+v (age %v), want the fleet verdict's fetched-at, %v ago", e, age, tc.storedAge)
				}
				// Plus the seconds the test itself took, on a slow machine.
				want, slack := int(tc.storedAge/time.Second), int(time.Since(began)/time.Second)
				if age, err := strconv.Atoi(string(ctx.Response.Header.Peek("Age"))); err != nil || age < want || age > want+slack {
					t.Errorf("Age %q, want %d", ctx.Response.Header.Peek("Age"), want)
				}
			}
			if tc.name == "forged fleet entry is not served" {
				if v := ff.Written[unitID]; string(v.Value) != "PEO" || !v.Valid {
					t.Errorf("the forged entry was not replaced by upstream's verdict: %+v", v)
				}
			}
		})
	}
}

// TestFleetOffHasNoTierHeader: without the fleet tier nothing changes: no
// X-Cache-Tier on any answer.
func TestFleetOffHasNoTierHeader(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", fsm.Connected, open)
	f.client.validate = func(context.Context, string) (upstream.Verdict, error) {
		return upstream.Verdict{Valid: true, Entity: "PEO"}, nil
	}
	for _, want := range []string{"MISS", "HIT"} {
		ctx, _, _ := f.do("GET", "/v1/validate/"+unitID, "")
		if got := string(ctx.Response.Header.Peek("X-Cache")); got != want {
			t.Fatalf("X-Cache %q, want %q", got, want)
		}
		if h := ctx.Response.Header.Peek("X-Cache-Tier"); h != nil {
			t.Errorf("%s answer with X-Cache-Tier %q and the fleet tier off", want, h)
		}
	}
}

// TestFleetLocalHitAllocatesNothing: with the fleet tier on, a local hit
// through the real handler and cache still allocates nothing and never
// asks the tier (here one that never reaches its Redis). Not parallel:
// AllocsPerRun counts the whole process. The race detector's
// instrumentation allocates now and then whatever the code does, so the
// best of ten rounds must be 0: an allocation of the hit itself would
// show in every round.
func TestFleetLocalHitAllocatesNothing(t *testing.T) {
	cfg, err := config.Parse([]byte("upstream: {url: \"http://127.0.0.1:1/v1\", token: unit-token}\nfleet: {redis: {addrs: [\"127.0.0.1:1\"]}}\n"),
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.cache.Store(unitID, resolve.Minted(chittyid.EntityPEO, s.now())); err != nil {
		t.Fatal(err)
	}
	var req fasthttp.Request
	req.Header.SetMethod("GET")
	req.SetRequestURI("/v1/validate/" + unitID)
	req.Header.SetHost("127.0.0.1:8787")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	serve := func() {
		ctx.Response.Reset()
		s.api.handle(&ctx)
	}
	serve()
	if got := string(ctx.Response.Header.Peek("X-Cache")) + " " + string(ctx.Response.Header.Peek("X-Cache-Tier")); got != "HIT local" {
		t.Fatalf("X-Cache and X-Cache-Tier %q, want HIT local", got)
	}
	best := math.Inf(1)
	for range 10 {
		best = min(best, testing.AllocsPerRun(500, serve))
	}
	if best != 0 {
		t.Errorf("a local hit allocates %v times with the fleet tier on, want 0", best)
	}
	if st := s.fleet.Stats(); st.Hits+st.Misses+st.Skipped+st.Errors != 0 {
		t.Errorf("local hits used the fleet tier: %+v", st)
	}
}

func TestFleetMint(t *testing.T) {
	t.Parallel()
	minted := func(m upstream.MintRequest) (upstream.Minted, error) {
		return upstream.Minted{ID: unitID, Entity: m.Entity, Attempts: 1}, nil
	}
	t.Run("a minted ID is written to the fleet tier", func(t *testing.T) {
		t.Parallel()
		f, ff := newFleetFixture(t, "", fsm.Connected)
		f.client.mint = minted
		before := time.Now()
		ctx, _, _ := f.do("POST", "/v1/mint", `{"entity":"PLACE"}`)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("mint: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		v, ok := ff.Written[unitID]
		if !ok || !v.Valid || string(v.Value) != "PLACE" || v.FetchedAt.Before(before) {
			t.Errorf("fleet tier holds %+v (%v), want a valid PLACE verdict fetched now", v, ok)
		}
		if life := ff.Lives[unitID]; life != 10*time.Minute+24*time.Hour {
			t.Errorf("life %v, want ttl + staleIfError", life)
		}
		if len(ff.Mints) != 0 {
			t.Errorf("fleet mint limit asked %v without rateLimit.mint.fleetPerMinute", ff.Mints)
		}
	})
	t.Run("a batch's IDs are written, the missing ones skipped", func(t *testing.T) {
		t.Parallel()
		f, ff := newFleetFixture(t, "", fsm.Connected)
		f.client.batch = func(ms []upstream.MintRequest) ([]string, error) {
			return []string{"CT-A-CHI-1234-P-24-A-1", "", "CT-A-CHI-1234-P-24-A-3"}, callErr(upstream.ErrUnavailable, 503)
		}
		ctx, _, _ := f.do("POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"EVNT"},{"entity":"INFO"}]}`)
		if ctx.Response.StatusCode() != 503 {
			t.Fatalf("partial batch: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if len(ff.Written) != 2 || string(ff.Written["CT-A-CHI-1234-P-24-A-1"].Value) != "PEO" || string(ff.Written["CT-A-CHI-1234-P-24-A-3"].Value) != "INFO" {
			t.Errorf("fleet tier holds %v, want the two minted IDs with their entities", ff.Written)
		}
	})
	t.Run("Redis down does not fail the mint", func(t *testing.T) {
		t.Parallel()
		f, ff := newFleetFixture(t, "rateLimit: {mint: {fleetPerMinute: 60, fleetBurst: 10}}\nlimits: {maxBatch: 10}\nfleet: {redis: {addrs: [\"127.0.0.1:1\"]}}\n", fsm.Connected)
		ff.Down = true
		f.client.mint = minted
		if ctx, _, _ := f.do("POST", "/v1/mint", `{"entity":"PEO"}`); ctx.Response.StatusCode() != 200 {
			t.Fatalf("mint with Redis down: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		// The fleet limit's call failed: the ID is not written to the
		// fleet tier, so the mint waits on Redis once, not twice.
		if ff.Puts != 0 {
			t.Errorf("%d writes to the fleet tier after Redis failed the mint limit's call, want none", ff.Puts)
		}
		if _, ok := f.cache.fresh[unitID]; !ok {
			t.Error("the minted ID is not in the local cache")
		}
	})
	t.Run("a fleet refusal spends no local token", func(t *testing.T) {
		t.Parallel()
		f, ff := newFleetFixture(t, "rateLimit: {mint: {perCallerPerMinute: 1, burst: 1, fleetPerMinute: 60, fleetBurst: 1}}\nlimits: {maxBatch: 1}\nfleet: {redis: {addrs: [\"127.0.0.1:1\"]}}\n", fsm.Connected)
		f.api.limits = ratelimit.New(f.cfg.Load().RateLimit, nil)
		f.client.mint = minted
		for i, step := range []struct {
			fleetOK bool
			status  int
			fleet   int // fleet limit calls so far
		}{
			{false, 429, 1}, // refused by the fleet: the caller's one token is kept
			{true, 200, 2},  // so the next mint goes through
			{true, 429, 2},  // and the one after is refused locally, without asking the fleet
		} {
			ff.Mu.Lock()
			ff.MintOK = step.fleetOK
			ff.Mu.Unlock()
			ctx, body, _ := f.do("POST", "/v1/mint", `{"entity":"PEO"}`)
			if ctx.Response.StatusCode() != step.status || len(ff.Mints) != step.fleet {
				t.Errorf("mint %d: HTTP %d %v, %d fleet limit calls; want %d, %d", i+1, ctx.Response.StatusCode(), body, len(ff.Mints), step.status, step.fleet)
			}
		}
	})
	t.Run("the fleet limit refuses after the local ones", func(t *testing.T) {
		t.Parallel()
		f, ff := newFleetFixture(t, "rateLimit: {mint: {fleetPerMinute: 60, fleetBurst: 10}}\nlimits: {maxBatch: 10}\nfleet: {redis: {addrs: [\"127.0.0.1:1\"]}}\n", fsm.Connected)
		ff.MintOK, ff.RetryAfter = false, 1500*time.Millisecond
		f.client.mint = minted
		ctx, body, res := f.do("POST", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"EVNT"}]}`)
		if ctx.Response.StatusCode() != 429 || body["error"] != codeRateLimited || string(ctx.Response.Header.Peek("Retry-After")) != "2" {
			t.Fatalf("refused batch: %d Retry-After %q %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Retry-After"), ctx.Response.Body())
		}
		if res.code != codeRateLimited || res.limited {
			t.Errorf("result %+v: want RATE_LIMITED, not counted as a local limit", res)
		}
		if f.client.calls != 0 || len(ff.Mints) != 1 || ff.Mints[0] != 2 {
			t.Errorf("%d upstream calls, fleet asked for %v tokens; want none upstream, 2 tokens", f.client.calls, ff.Mints)
		}
	})
	t.Run("a local refusal does not ask the fleet", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, "rateLimit: {mint: {fleetPerMinute: 60, fleetBurst: 10}}\nlimits: {maxBatch: 10}\nfleet: {redis: {addrs: [\"127.0.0.1:1\"]}}\n", fsm.Connected, fakeLimits{validateOK: true})
		ff := fleettest.New()
		f.withFleet(ff)
		if ctx, _, _ := f.do("POST", "/v1/mint", `{"entity":"PEO"}`); ctx.Response.StatusCode() != 429 {
			t.Fatalf("locally refused mint: %d", ctx.Response.StatusCode())
		}
		if len(ff.Mints) != 0 {
			t.Errorf("the fleet limit was asked for %v after a local refusal", ff.Mints)
		}
	})
}
