package upstream_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A HostClient's connection cleaner ends on its own once idle; nobody can
	// stop it sooner.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

const token = "client-test-token"

// setup starts a simulator and a client for it; edit adjusts the config.
func setup(t *testing.T, sc sim.Config, edit func(*upstream.Config)) (*sim.Sim, *upstream.Client) {
	t.Helper()
	return setupClock(t, sc, edit, nil)
}

// setupClock is setup with now as the breaker's clock (nil: time.Now).
func setupClock(t *testing.T, sc sim.Config, edit func(*upstream.Config), now func() time.Time) (*sim.Sim, *upstream.Client) {
	t.Helper()
	s, cfg := startSim(t, sc)
	cfg.Timeout = time.Second
	cfg.Retry = upstream.RetryConfig{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	if sc.Dialect != "" {
		cfg.Dialect = sc.Dialect
	}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	format := sc.Format
	if format == 0 {
		format = chittyid.FormatOfficial
	}
	c, err := upstream.New(cfg, format, upstream.NewBreaker(cfg.Breaker, now), upstream.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return s, c
}

// startSim starts a simulator that wants the test's token, closed when
// the test ends, and returns it with upstream's defaults pointed at it.
func startSim(t *testing.T, sc sim.Config) (*sim.Sim, upstream.Config) {
	t.Helper()
	sc.Token = token
	s, err := sim.Start(sc, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	cfg := upstream.Defaults()
	cfg.URL, cfg.Token = s.URL(), token
	return s, cfg
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClientDialects(t *testing.T) {
	t.Parallel()
	for _, d := range []upstream.Dialect{upstream.DialectClientV1, upstream.DialectWorker} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			s, c := setup(t, sim.Config{Dialect: d, Format: chittyid.FormatNumeric}, nil)
			if err := c.Health(ctxFor(t, time.Second)); err != nil {
				t.Fatalf("Health: %v", err)
			}
			m, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPLACE}, "", upstream.CallInfo{})
			if err != nil || chittyid.FormatNumeric.Check(m.ID) != nil || m.ID[14] != 'L' {
				t.Fatalf("Mint = %+v, %v", m, err)
			}
			v, err := c.Validate(ctxFor(t, time.Second), m.ID, upstream.CallInfo{})
			if err != nil || !v.Valid {
				t.Fatalf("Validate(minted) = %+v, %v", v, err)
			}
			// client-v1 knows what it minted; the worker checks format and
			// checksum only, so a well-formed ID it never minted is valid.
			v, err = c.Validate(ctxFor(t, time.Second), "03-1-USA-1234-P-2601-3-86", upstream.CallInfo{})
			if err != nil || v.Valid != (d == upstream.DialectWorker) {
				t.Fatalf("Validate(never minted) = %+v, %v", v, err)
			}
			v, err = c.Validate(ctxFor(t, time.Second), "03-1-USA-1234-P-2601-3-42", upstream.CallInfo{})
			if err != nil || v.Valid {
				t.Fatalf("Validate(bad checksum) = %+v, %v", v, err)
			}
			if err := s.SetFault(sim.Fault{Mode: "refuse"}); err != nil {
				t.Fatal(err)
			}
			if err := c.Health(ctxFor(t, time.Second)); err == nil {
				t.Fatal("Health succeeded against a refusing upstream")
			}
		})
	}
}

// testClock is a clock that only moves when told.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// TestHalfOpenAdmitsOneTrial: with halfOpenProbes 1, concurrent mints once
// the open period is over send exactly one request upstream; the rest fail
// fast.
func TestHalfOpenAdmitsOneTrial(t *testing.T) {
	t.Parallel()
	var clock testClock
	s, c := setupClock(t, sim.Config{Latency: 200 * time.Millisecond}, func(cfg *upstream.Config) {
		cfg.Breaker = upstream.BreakerConfig{Failures: 1, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour, HalfOpenProbes: 1}
		cfg.Retry.MaxAttempts = 1
	}, clock.now)
	if err := s.SetFault(sim.Fault{Mode: "status", Status: 500, Routes: []string{"mint"}, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{}); !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("first mint: %v", err)
	}
	if got := c.Breaker().State(); got != upstream.BreakerOpen {
		t.Fatalf("breaker %s after one failure, want open", got)
	}
	clock.advance(time.Hour)
	before := s.Stats().Mint
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
		}()
	}
	wg.Wait()
	var ok, open int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, upstream.ErrCircuitOpen):
			open++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if n := s.Stats().Mint - before; n != 1 || ok != 1 || open != 4 {
		t.Errorf("half-open: %d upstream mints, %d ok, %d circuit open; want 1, 1, 4", n, ok, open)
	}
	if got := c.Breaker().State(); got != upstream.BreakerClosed {
		t.Errorf("breaker %s after a good trial, want closed", got)
	}
}

// TestWorkerFallbacks: the worker's HTTP 200 fallbacks, by code: 0007 is
// ErrRateLimited with a Retry-After, not retried (it names no wait) and not
// a breaker failure; 0008 is ErrRejected, neither retried nor counted; the
// others are ErrFallback, counted. The placeholder is in PlaceholdersOf,
// never in the error's text.
func TestWorkerFallbacks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fault      sim.Fault
		kind       error
		attempts   int64
		counted    bool
		retryAfter time.Duration
	}{
		{"backend 401", sim.Fault{Mode: "status", Status: 401}, upstream.ErrFallback, 1, true, 0},
		{"backend 503", sim.Fault{Mode: "status", Status: 503, RetryAfter: 9}, upstream.ErrFallback, 1, true, 0},
		{"backend 429", sim.Fault{Mode: "status", Status: 429, RetryAfter: 9}, upstream.ErrRateLimited, 1, false, time.Second},
		{"rate limited", sim.Fault{Mode: "fallback", ErrorCode: "0007"}, upstream.ErrRateLimited, 1, false, time.Second},
		{"backend 400", sim.Fault{Mode: "status", Status: 400}, upstream.ErrRejected, 1, false, 0},
		{"unavailable", sim.Fault{Mode: "fallback"}, upstream.ErrFallback, 1, true, 0},
		{"timeout", sim.Fault{Mode: "fallback", ErrorCode: "0002"}, upstream.ErrFallback, 1, true, 0},
		{"internal", sim.Fault{Mode: "fallback", ErrorCode: "0099"}, upstream.ErrFallback, 1, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := setup(t, sim.Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}, nil)
			if err := s.SetFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			_, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityEVNT}, "", upstream.CallInfo{})
			if !errors.Is(err, tc.kind) {
				t.Fatalf("Mint: %v, want %v", err, tc.kind)
			}
			if n := s.Stats().Mint; n != tc.attempts {
				t.Errorf("upstream mints = %d, want %d", n, tc.attempts)
			}
			if got := c.Breaker().Failures() > 0; got != tc.counted {
				t.Errorf("breaker failures %d: counted %v, want %v", c.Breaker().Failures(), got, tc.counted)
			}
			if d, _ := upstream.RetryAfterOf(err); d != tc.retryAfter {
				t.Errorf("Retry-After %v, want %v", d, tc.retryAfter)
			}
			ph := upstream.PlaceholdersOf(err)
			if len(ph) == 0 || chittyid.FormatNumeric.Check(ph[0]) != chittyid.ErrFallbackID || ph[0][14] != 'E' {
				t.Errorf("placeholders %q, want the worker's 03-0-ERR-…-E-… placeholder", ph)
			}
			if strings.Contains(err.Error(), "-ERR-") {
				t.Errorf("the error's text quotes the placeholder: %q", err)
			}
		})
	}
}

// TestRateLimitedRetries: a 429 is retried only after a Retry-After that
// upstream named and that fits the deadline, and at most once; without
// one, the error comes at once with upstream.BriefRetryAfter. The mint is
// answered 429 on every attempt.
func TestRateLimitedRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		retryAfter int // upstream's Retry-After, seconds; 0: none
		deadline   time.Duration
		attempts   int64
		want       time.Duration // the error's Retry-After
	}{
		{"no Retry-After", 0, 5 * time.Second, 1, upstream.BriefRetryAfter},
		{"Retry-After that fits", 1, 5 * time.Second, 2, time.Second},
		{"Retry-After beyond the deadline", 30, 5 * time.Second, 1, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := setup(t, sim.Config{}, func(cfg *upstream.Config) { cfg.Retry.MaxAttempts = 5 })
			if err := s.SetFault(sim.Fault{Mode: "status", Status: 429, RetryAfter: tc.retryAfter, Routes: []string{"mint"}}); err != nil {
				t.Fatal(err)
			}
			_, err := c.Mint(ctxFor(t, tc.deadline), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
			if !errors.Is(err, upstream.ErrRateLimited) {
				t.Fatalf("Mint: %v, want rate limited", err)
			}
			if n := s.Stats().Mint; n != tc.attempts || upstream.AttemptsOf(err) != int(tc.attempts) {
				t.Errorf("upstream mints %d (error says %d), want %d", n, upstream.AttemptsOf(err), tc.attempts)
			}
			if d, _ := upstream.RetryAfterOf(err); d != tc.want {
				t.Errorf("Retry-After %v, want %v", d, tc.want)
			}
		})
	}
}

// TestRateLimitNotABreakerFailure: a rate-limited answer, a 429 (with or
// without Retry-After) or the worker's fallback 0007, says upstream is up
// and asks for less: however many come in a row, the breaker counts no
// failure and stays closed, in either dialect; as many 500s open it.
func TestRateLimitNotABreakerFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		dialect upstream.Dialect
		fault   sim.Fault
		kind    error
		opens   bool
	}{
		{"429", upstream.DialectClientV1, sim.Fault{Mode: "status", Status: 429}, upstream.ErrRateLimited, false},
		{"429 Retry-After", upstream.DialectClientV1, sim.Fault{Mode: "status", Status: 429, RetryAfter: 30}, upstream.ErrRateLimited, false},
		{"worker 0007", upstream.DialectWorker, sim.Fault{Mode: "fallback", ErrorCode: "0007"}, upstream.ErrRateLimited, false},
		{"500, the control", upstream.DialectClientV1, sim.Fault{Mode: "status", Status: 500}, upstream.ErrUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const failures = 2
			s, c := setup(t, sim.Config{Dialect: tc.dialect, Format: chittyid.FormatNumeric}, func(cfg *upstream.Config) {
				cfg.Breaker.Failures = failures
			})
			tc.fault.Routes = []string{"mint"}
			if err := s.SetFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			for i := range 2 * failures {
				_, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
				if tc.opens && i >= failures {
					tc.kind = upstream.ErrCircuitOpen
				}
				if !errors.Is(err, tc.kind) {
					t.Fatalf("mint %d: %v, want %v", i+1, err, tc.kind)
				}
			}
			if got, want := c.Breaker().State() == upstream.BreakerOpen, tc.opens; got != want {
				t.Errorf("breaker %s (%d failures counted, %d trips) after %d such answers; open %v, want %v",
					c.Breaker().State(), c.Breaker().Failures(), c.Breaker().Trips(), 2*failures, got, want)
			}
			if !tc.opens && c.Breaker().Failures() != 0 {
				t.Errorf("breaker counted %d failures, want none", c.Breaker().Failures())
			}
		})
	}
}

func TestInFlightCapWaitsWithinDeadline(t *testing.T) {
	t.Parallel()
	s, c := setup(t, sim.Config{}, func(cfg *upstream.Config) { cfg.MaxInFlight = 1; cfg.Timeout = 5 * time.Second })
	if err := s.SetFault(sim.Fault{Mode: "hang", Routes: []string{"mint"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Mint(ctxFor(t, 5*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
		done <- err
	}()
	if err := s.WaitHung(ctxFor(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	_, err := c.Mint(ctxFor(t, 100*time.Millisecond), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
	if !errors.Is(err, upstream.ErrTimeout) || upstream.AttemptsOf(err) != 0 {
		t.Errorf("second mint with the only slot taken: %v (attempts %d), want a timeout with no attempt", err, upstream.AttemptsOf(err))
	}
	if n := s.Stats().Mint; n != 1 {
		t.Errorf("upstream mints = %d, want 1", n)
	}
	if err := s.SetFault(sim.Fault{Mode: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("released mint: %v", err)
	}
}

func TestIdempotentMintRetriesAfterTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		idempotent   bool
		wantAttempts int64
	}{{false, 1}, {true, 3}} {
		s, c := setup(t, sim.Config{}, func(cfg *upstream.Config) {
			cfg.IdempotentMint = tc.idempotent
			cfg.Timeout = 100 * time.Millisecond
		})
		if err := s.SetFault(sim.Fault{Mode: "slow", Latency: "300ms", Routes: []string{"mint"}}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "key-1", upstream.CallInfo{})
		if !errors.Is(err, upstream.ErrTimeout) {
			t.Errorf("idempotent=%v: %v, want a timeout", tc.idempotent, err)
		}
		if n := s.Stats().Mint; n != tc.wantAttempts {
			t.Errorf("idempotent=%v: %d upstream attempts, want %d", tc.idempotent, n, tc.wantAttempts)
		}
	}
}
