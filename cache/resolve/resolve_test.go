package resolve_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/cache/fleet/fleettest"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"go.uber.org/goleak"
)

// The resolution's unit tests: a real local cache (in memory, no
// sockets), a fake fleet tier and a fake upstream, in virtual time
// (testing/synctest), so that TTLs, deadlines and another sidecar's lock
// cost no time.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const id = "CT-A-CHI-1234-P-24-A-0" // official format, type letter P

// settings are the defaults of the validate section, with a 3s
// upstream.validateTimeout.
var settings = resolve.Settings{
	Policy:  cache.Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: 24 * time.Hour},
	Timeout: 3 * time.Second,
	Format:  chittyid.FormatOfficial,
}

var (
	errUpstream = errors.New("upstream: unavailable")
)

// fakeLink is the lifecycle in one state.
type fakeLink struct{ state atomic.Value }

func link(st fsm.State) *fakeLink {
	l := &fakeLink{}
	l.state.Store(st)
	return l
}

func (l *fakeLink) State() fsm.State { return l.state.Load().(fsm.State) }

// fakeUpstream answers validates with answer and counts them.
type fakeUpstream struct {
	calls  atomic.Int32
	answer func(ctx context.Context) (resolve.Verdict, error)
}

func (u *fakeUpstream) ask(ctx context.Context, got string) (resolve.Verdict, error) {
	u.calls.Add(1)
	if got != id {
		return resolve.Verdict{}, fmt.Errorf("asked about %q", got)
	}
	return u.answer(ctx)
}

func valid(context.Context) (resolve.Verdict, error) {
	return resolve.Verdict{Valid: true, Entity: "PEO"}, nil
}

func failing(context.Context) (resolve.Verdict, error) { return resolve.Verdict{}, errUpstream }

// newCache is a local cache closed when the test ends.
func newCache(t *testing.T) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Config{MaxSizeMB: 2, Shards: 4}, settings.Policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rig is a Resolver over a real local cache, the fake fleet tier (nil:
// off) and a fake upstream.
type rig struct {
	r     *resolve.Resolver
	cache *cache.Cache
	fleet *fleettest.Tier
	up    *fakeUpstream
	link  *fakeLink
}

func newRig(t *testing.T, state fsm.State, withFleet bool) *rig {
	t.Helper()
	g := &rig{cache: newCache(t), up: &fakeUpstream{answer: valid}, link: link(state)}
	opts := resolve.Options{}
	if withFleet {
		g.fleet = fleettest.New()
		opts.Fleet = g.fleet
	}
	g.r = resolve.New(g.cache, g.link, opts)
	return g
}

// validate is what a request does: one lookup, then Resolve if that found
// nothing fresh.
func (g *rig) validate(ctx context.Context) (resolve.Answer, error) {
	local := g.r.Lookup(settings.Policy, []byte(id), time.Now())
	if local.Fresh() {
		return local, nil
	}
	return g.r.Resolve(ctx, settings, id, local, g.up.ask)
}

func ago(d time.Duration) time.Time { return time.Now().Add(-d) }

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		state    fsm.State
		noFleet  bool
		local    time.Duration // the local entry's age; 0: none
		fleetAge time.Duration // the fleet tier's verdict's age; 0: none
		fleetVal string        // its value ("" = PEO)
		down     bool          // Redis unavailable
		answer   func(context.Context) (resolve.Verdict, error)

		tier    resolve.Tier
		stale   bool
		age     time.Duration // of the answer's verdict
		err     error         // errors.Is
		asked   int32         // upstream validates
		stored  time.Duration // the local entry's age afterwards; -1: none fresh
		fleetTo string        // the fleet tier's value afterwards ("" = unchanged)
	}{
		{name: "local hit", state: fsm.Connected, local: time.Minute, answer: valid, tier: resolve.TierLocal, age: time.Minute, stored: time.Minute},
		{name: "miss asks upstream", state: fsm.Connected, answer: valid, tier: resolve.TierUpstream, asked: 1, fleetTo: "PEO"},
		{name: "miss, fleet off", state: fsm.Connected, noFleet: true, answer: valid, tier: resolve.TierUpstream, asked: 1},
		{name: "not valid is stored", state: fsm.Connected, answer: func(context.Context) (resolve.Verdict, error) { return resolve.Verdict{}, nil },
			tier: resolve.TierUpstream, asked: 1, fleetTo: resolve.ReasonUpstream},
		{name: "fleet hit keeps its age", state: fsm.Connected, fleetAge: 3 * time.Minute, answer: valid, tier: resolve.TierFleet, age: 3 * time.Minute, stored: 3 * time.Minute},
		{name: "fleet entry past its TTL refreshed", state: fsm.Connected, fleetAge: time.Hour, answer: valid, tier: resolve.TierUpstream, asked: 1},
		{name: "fleet stale while upstream fails", state: fsm.Reconnecting, fleetAge: time.Hour, answer: failing,
			tier: resolve.TierFleet, stale: true, age: time.Hour, asked: 1, stored: -1},
		{name: "fleet entry older than staleIfError", state: fsm.Reconnecting, fleetAge: 25 * time.Hour, answer: failing, err: errUpstream, asked: 1, stored: -1},
		{name: "local stale beats the fleet's", state: fsm.Reconnecting, local: 2 * time.Hour, fleetAge: time.Hour, answer: failing,
			tier: resolve.TierLocal, stale: true, age: 2 * time.Hour, asked: 1, stored: -1},
		{name: "upstream down, nothing stale", state: fsm.Reconnecting, answer: failing, err: errUpstream, asked: 1, stored: -1},
		{name: "upstream down, a local stale entry", state: fsm.Reconnecting, noFleet: true, local: 2 * time.Hour, answer: failing,
			tier: resolve.TierLocal, stale: true, age: 2 * time.Hour, asked: 1, stored: -1},
		{name: "forged fleet entry is replaced", state: fsm.Connected, fleetAge: time.Minute, fleetVal: `PEO","x":"`, answer: valid,
			tier: resolve.TierUpstream, asked: 1, fleetTo: "PEO"},
		{name: "Redis down: local, then upstream", state: fsm.Connected, fleetAge: time.Minute, down: true, answer: valid, tier: resolve.TierUpstream, asked: 1},
		{name: "FAILED: fleet hit", state: fsm.Failed, fleetAge: time.Minute, answer: valid, tier: resolve.TierFleet, age: time.Minute, stored: time.Minute},
		{name: "FAILED: fleet stale", state: fsm.Failed, fleetAge: time.Hour, answer: valid, tier: resolve.TierFleet, stale: true, age: time.Hour, stored: -1},
		{name: "FAILED: local stale first", state: fsm.Failed, local: 2 * time.Hour, fleetAge: time.Hour, answer: valid,
			tier: resolve.TierLocal, stale: true, age: 2 * time.Hour, stored: -1},
		{name: "FAILED: nothing anywhere", state: fsm.Failed, answer: valid, err: resolve.ErrDown, stored: -1},
		{name: "FAILED: Redis down", state: fsm.Failed, fleetAge: time.Minute, down: true, answer: valid, err: resolve.ErrDown, stored: -1},
		{name: "FAILED: fleet off, local stale", state: fsm.Failed, noFleet: true, local: 2 * time.Hour, answer: valid,
			tier: resolve.TierLocal, stale: true, age: 2 * time.Hour, stored: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, tc.state, !tc.noFleet)
				g.up.answer = tc.answer
				if tc.local > 0 {
					if err := g.cache.Store(id, cache.Entry{Valid: true, FetchedAt: ago(tc.local), Value: []byte("PEO")}); err != nil {
						t.Fatal(err)
					}
				}
				if tc.fleetAge > 0 {
					val := tc.fleetVal
					if val == "" {
						val = "PEO"
					}
					g.fleet.Verdicts[id] = fleet.Verdict{Valid: true, Value: []byte(val), FetchedAt: ago(tc.fleetAge)}
				}
				if g.fleet != nil {
					g.fleet.Down = tc.down
				}
				a, err := g.validate(context.Background())
				if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				if a.Tier != tc.tier || a.Stale != tc.stale {
					t.Errorf("answer from tier %d, stale %v; want tier %d, stale %v", a.Tier, a.Stale, tc.tier, tc.stale)
				}
				if err == nil {
					if !a.Entry.Valid && tc.fleetTo != resolve.ReasonUpstream || a.Entry.Valid && string(a.Entry.Value) != "PEO" {
						t.Errorf("verdict %+v, want valid PEO", a.Entry)
					}
					if age := time.Since(a.Entry.FetchedAt); age != tc.age {
						t.Errorf("verdict fetched %v ago, want %v", age, tc.age)
					}
				}
				if n := g.up.calls.Load(); n != tc.asked {
					t.Errorf("%d upstream validates, want %d", n, tc.asked)
				}
				e, st := g.cache.Lookup(id, settings.Policy, time.Now())
				switch {
				case tc.stored < 0 && st == cache.StatusHit:
					t.Errorf("local cache holds %+v fresh, want no fresh entry", e)
				case tc.stored >= 0 && (st != cache.StatusHit || time.Since(e.FetchedAt) != tc.stored):
					t.Errorf("local cache holds %+v (%v), want a fresh entry fetched %v ago", e, st, tc.stored)
				}
				if tc.fleetTo != "" {
					v := g.fleet.Verdicts[id]
					if string(v.Value) != tc.fleetTo || !v.FetchedAt.Equal(time.Now()) {
						t.Errorf("fleet tier holds %+v, want %q fetched now", v, tc.fleetTo)
					}
				}
			})
		})
	}
}

// TestResolveCoalescesWaiters: callers that miss one ID at once share one
// flight: upstream (or the fleet tier) is asked once, and every caller
// gets the flight's answer from the tier that gave it.
func TestResolveCoalescesWaiters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fleetFresh bool // the fleet tier holds a fresh verdict
		tier       resolve.Tier
		asked      int32
	}{
		{name: "upstream's verdict", tier: resolve.TierUpstream, asked: 1},
		{name: "the fleet tier's verdict", fleetFresh: true, tier: resolve.TierFleet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, fsm.Connected, true)
				if tc.fleetFresh {
					g.fleet.Verdicts[id] = fleet.Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: ago(time.Minute)}
				}
				release := make(chan struct{})
				g.fleet.Gate = release
				const n = 50
				answers := make(chan resolve.Answer, n)
				for range n {
					go func() {
						a, err := g.validate(context.Background())
						if err != nil {
							t.Errorf("validate: %v", err)
						}
						answers <- a
					}()
				}
				synctest.Wait()
				close(release)
				for range n {
					if a := <-answers; a.Tier != tc.tier || a.Stale || string(a.Entry.Value) != "PEO" {
						t.Errorf("answer %+v, want a fresh PEO from tier %d", a, tc.tier)
					}
				}
				if got := g.up.calls.Load(); got != tc.asked {
					t.Errorf("%d upstream validates for %d callers, want %d", got, n, tc.asked)
				}
				if g.fleet.Fetches != 1 {
					t.Errorf("%d fleet tier fetches for %d callers, want 1", g.fleet.Fetches, n)
				}
				if st := g.cache.Stats(); st.Coalesced != n-1 {
					t.Errorf("%d callers coalesced, want %d", st.Coalesced, n-1)
				}
			})
		})
	}
}

// TestResolveFleetLockHeldElsewhere: while another sidecar of the fleet
// asks upstream about the ID (it holds the ID's lock), this one does not:
// its callers wait for that verdict, up to upstream.validateTimeout; when
// it does not come, a verdict the fleet tier holds past its TTL is served
// stale; when the other's fetch failed, at once.
func TestResolveFleetLockHeldElsewhere(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		verdictIn  time.Duration // the other sidecar's verdict arrives after; 0: never
		peerFailed bool
		fleetStale bool // the fleet tier holds a verdict past its TTL
		tier       resolve.Tier
		stale      bool
		err        error
		took       time.Duration
	}{
		{name: "its verdict arrives", verdictIn: time.Second, tier: resolve.TierFleet, took: time.Second},
		{name: "no verdict, nothing stale", err: context.DeadlineExceeded, took: settings.Timeout},
		{name: "no verdict, a stale one", fleetStale: true, tier: resolve.TierFleet, stale: true, took: settings.Timeout},
		{name: "its fetch failed, nothing stale", peerFailed: true, err: fleet.ErrPeerFailed},
		{name: "its fetch failed, a stale one", peerFailed: true, fleetStale: true, tier: resolve.TierFleet, stale: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, fsm.Connected, true)
				g.fleet.Held, g.fleet.PeerFailed = make(chan fleet.Verdict), tc.peerFailed
				if tc.fleetStale {
					g.fleet.Verdicts[id] = fleet.Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: ago(time.Hour)}
				}
				if tc.verdictIn > 0 {
					go func() {
						time.Sleep(tc.verdictIn)
						g.fleet.Held <- fleet.Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now()}
					}()
				}
				start := time.Now()
				a, err := g.validate(context.Background())
				if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				if a.Tier != tc.tier || a.Stale != tc.stale {
					t.Errorf("answer from tier %d, stale %v; want tier %d, stale %v", a.Tier, a.Stale, tc.tier, tc.stale)
				}
				if took := time.Since(start); took != tc.took {
					t.Errorf("answered after %v, want %v", took, tc.took)
				}
				if n := g.up.calls.Load(); n != 0 {
					t.Errorf("%d upstream validates while another sidecar held the lock", n)
				}
			})
		})
	}
}

// TestResolveCallerGivesUpThenFleet: a caller whose own deadline ends
// before its ID's flight does asks the fleet tier once more, and takes a
// verdict another sidecar stored there meanwhile.
func TestResolveCallerGivesUpThenFleet(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, fsm.Connected, true)
		g.fleet.Held = make(chan fleet.Verdict) // another sidecar holds the lock and never tells this one
		go func() {
			time.Sleep(500 * time.Millisecond)
			g.fleet.Mu.Lock()
			g.fleet.Verdicts[id] = fleet.Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now()}
			g.fleet.Mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a, err := g.validate(ctx)
		if err != nil || a.Tier != resolve.TierFleet || a.Stale {
			t.Fatalf("answer %+v, %v; want a fresh verdict of the fleet tier", a, err)
		}
		if g.fleet.Gets != 1 {
			t.Errorf("%d fleet lookups after the deadline, want 1", g.fleet.Gets)
		}
		if _, st := g.cache.Lookup(id, settings.Policy, time.Now()); st != cache.StatusHit {
			t.Errorf("the fleet verdict is not stored locally (%v)", st)
		}
		time.Sleep(settings.Timeout) // the flight ends at its own deadline
	})
}

// TestResolveFleetClockAhead: a verdict another sidecar stamped in the
// future (its clock ahead) is taken as fetched now, so it never outlives
// its TTL here.
func TestResolveFleetClockAhead(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, fsm.Failed, true)
		g.fleet.Verdicts[id] = fleet.Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now().Add(time.Hour)}
		a, err := g.validate(context.Background())
		if err != nil || a.Tier != resolve.TierFleet || !a.Entry.FetchedAt.Equal(time.Now()) {
			t.Errorf("answer %+v, %v; want the fleet verdict, fetched now", a, err)
		}
	})
}

func TestStoreMinted(t *testing.T) {
	t.Parallel()
	ids := []string{"CT-A-CHI-1234-P-24-A-1", "", "CT-A-CHI-1234-P-24-A-3"}
	entity := func(i int) chittyid.Entity {
		return []chittyid.Entity{chittyid.EntityPEO, chittyid.EntityEVNT, chittyid.EntityINFO}[i]
	}
	for _, tc := range []struct{ withFleet, share bool }{{false, true}, {true, true}, {true, false}} {
		withFleet := tc.withFleet && tc.share
		t.Run(fmt.Sprintf("fleet %v, share %v", tc.withFleet, tc.share), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, fsm.Connected, tc.withFleet)
				now := time.Now()
				g.r.StoreMinted(context.Background(), settings.Policy, now, ids, entity, tc.share)
				for i, want := range []string{"PEO", "", "INFO"} {
					if ids[i] == "" {
						continue
					}
					if e, st := g.cache.Lookup(ids[i], settings.Policy, now); st != cache.StatusHit || !e.Valid || string(e.Value) != want {
						t.Errorf("local %s: %+v %v, want valid %s", ids[i], e, st, want)
					}
					if !withFleet {
						continue
					}
					v := g.fleet.Verdicts[ids[i]]
					if !v.Valid || string(v.Value) != want || !v.FetchedAt.Equal(now) || g.fleet.Lives[ids[i]] != 10*time.Minute+24*time.Hour {
						t.Errorf("fleet %s: %+v for %v, want valid %s fetched now, for ttl + staleIfError", ids[i], v, g.fleet.Lives[ids[i]], want)
					}
				}
				if want := map[bool]int{true: 2}[withFleet]; tc.withFleet && g.fleet.Puts != want {
					t.Errorf("%d fleet writes, want %d (the empty ID skipped; none unless shared)", g.fleet.Puts, want)
				}
			})
		})
	}
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		id    string
		entry cache.Entry
		ok    bool
	}{
		{name: "valid with its entity", id: id, entry: cache.Entry{Valid: true, Value: []byte("PEO")}, ok: true},
		{name: "valid without an entity", id: id, entry: cache.Entry{Valid: true}, ok: true},
		{name: "not valid, upstream's reason", id: id, entry: cache.Entry{Value: []byte(resolve.ReasonUpstream)}, ok: true},
		{name: "an unknown entity", id: id, entry: cache.Entry{Valid: true, Value: []byte("NOPE")}},
		{name: "an entity that carries text", id: id, entry: cache.Entry{Valid: true, Value: []byte(`PEO","x":"`)}},
		{name: "a lower-case entity", id: id, entry: cache.Entry{Valid: true, Value: []byte("peo")}},
		{name: "another reason", id: id, entry: cache.Entry{Value: []byte("format")}},
		{name: "an ID in the other format", id: "03-1-USA-0001-P-2601-3-92", entry: cache.Entry{Valid: true, Value: []byte("PEO")}},
		{name: "not an ID", id: "hello", entry: cache.Entry{Valid: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := resolve.Admit(chittyid.FormatOfficial, tc.id, tc.entry); (err == nil) != tc.ok {
				t.Errorf("Admit = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestLookupHitAllocatesNothing: the request's lookup, on a hit, allocates
// nothing and leaves the ID where it is.
func TestLookupHitAllocatesNothing(t *testing.T) {
	c := newCache(t)
	r := resolve.New(c, link(fsm.Connected), resolve.Options{Fleet: fleettest.New()})
	if err := c.Store(id, resolve.Minted(chittyid.EntityPEO, time.Now())); err != nil {
		t.Fatal(err)
	}
	b := []byte(id)
	now := time.Now()
	if a := r.Lookup(settings.Policy, b, now); !a.Fresh() || a.Tier != resolve.TierLocal {
		t.Fatalf("Lookup = %+v, want a fresh local answer", a)
	}
	// The race detector allocates now and then whatever the code does:
	// an allocation of the hit itself would show in every round.
	best := math.Inf(1)
	for range 10 {
		best = min(best, testing.AllocsPerRun(200, func() { r.Lookup(settings.Policy, b, now) }))
	}
	if best != 0 {
		t.Errorf("a hit allocates %v times, want 0", best)
	}
}
