package fleet

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
)

// stateObserver sends every state change on a channel.
type stateObserver struct {
	noObserver
	states chan State
}

func (o stateObserver) StateChanged(s State) { o.states <- s }

// TestRedisStopped: with Redis stopped (SIGSTOP, as a hung or partitioned
// server) every call ends at its own deadline, fleet.timeout (ErrTimeout,
// not before fleet.timeout, while the caller's context still runs); the
// tier is skipped after FailuresToSkip failures and then answers without
// touching Redis (ErrSkipped: a call sent to the stopped Redis could only
// time out), Fetch still answers through fetch, and once Redis resumes
// (SIGCONT) a probe brings the tier back.
func TestRedisStopped(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.Timeout = 40 * time.Millisecond
	obs := stateObserver{states: make(chan State, 16)}
	opts := testOptions()
	opts.Observer = obs
	tr := newTier(t, cfg, opts, true)
	ctx := context.Background()
	if err := tr.Put(ctx, "id", Verdict{Valid: true}, time.Hour); err != nil {
		t.Fatal(err)
	}

	srv.Signal(syscall.SIGSTOP)
	caller, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := range defaultFailuresToSkip {
		start := time.Now()
		_, _, err := tr.Get(caller, "id")
		if d := time.Since(start); !errors.Is(err, ErrTimeout) || caller.Err() != nil || d < cfg.Timeout {
			t.Errorf("call %d with Redis stopped: %v after %s (the caller's context: %v), want ErrTimeout at fleet.timeout (%s)", i, err, d, caller.Err(), cfg.Timeout)
		}
	}
	if s := tr.Status(); s.State != StateSkipped || s.LastError == "" || s.LastErrorAt == nil {
		t.Fatalf("after %d failures: %+v, want skipped with the last error", defaultFailuresToSkip, s)
	}
	for range 20 {
		if _, _, err := tr.Get(ctx, "id"); !errors.Is(err, ErrSkipped) {
			t.Fatalf("a call while skipped returned %v, want ErrSkipped", err)
		}
		if ok, _, err := tr.AllowMint(ctx, 1, 60, 10); !ok || !errors.Is(err, ErrSkipped) {
			t.Fatalf("AllowMint while skipped = %v, %v; want a pass with ErrSkipped", ok, err)
		}
	}
	v, src, err := tr.Fetch(ctx, "other", testPolicy(), func(context.Context) (Verdict, error) { return Verdict{Valid: true}, nil })
	if err != nil || src != SourceFetched || !v.Valid {
		t.Errorf("Fetch while skipped = %+v, %s, %v", v, src, err)
	}
	if st := tr.Stats(); st.Errors != defaultFailuresToSkip || st.Skipped < 40 {
		t.Errorf("stats %+v: want %d errors and the rest skipped", st, defaultFailuresToSkip)
	}

	srv.Signal(syscall.SIGCONT)
	waitState(t, tr, StateUp)
	if got, found, err := tr.Get(ctx, "id"); err != nil || !found || !got.Valid {
		t.Errorf("after Redis resumed: %+v, %v, %v", got, found, err)
	}
	want := []State{StateSkipped, StateUp}
	for _, w := range append([]State{StateUp}, want...) { // up: from New
		select {
		case s := <-obs.states:
			if s != w {
				t.Errorf("state change %s, want %s", s, w)
			}
		default:
			t.Errorf("no state change to %s reported", w)
		}
	}
}

// TestRedisStoppedUnderLoad: concurrent callers with Redis stopped are
// all answered (through fetch) while it is still stopped: none is left
// waiting for Redis. The test gives them a minute, fleet.timeout 1,500
// times over.
func TestRedisStoppedUnderLoad(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.Timeout = 40 * time.Millisecond
	tr := newTier(t, cfg, testOptions(), true)
	srv.Signal(syscall.SIGSTOP)
	defer srv.Signal(syscall.SIGCONT)
	const callers = 50
	var failed atomic.Int64
	done := make(chan struct{})
	for i := range callers {
		go func() {
			defer func() { done <- struct{}{} }()
			want := i%2 == 0
			v, _, err := tr.Fetch(context.Background(), "id", testPolicy(), func(context.Context) (Verdict, error) {
				return Verdict{Valid: want}, nil
			})
			if err != nil || v.Valid != want {
				failed.Add(1)
			}
		}()
	}
	guard := time.After(time.Minute)
	for i := range callers {
		select {
		case <-done:
		case <-guard:
			t.Fatalf("%d of %d Fetches still waiting after a minute with Redis stopped", callers-i, callers)
		}
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d Fetches with Redis stopped did not answer with their fetch's verdict", n, callers)
	}
}

// TestRedisRestartedEmpty: a Redis restarted without its data is only
// misses (after at most a failed call or two), and Fetch refills it.
func TestRedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), true)
	ctx := context.Background()
	if err := tr.Put(ctx, "id", Verdict{Valid: true, Value: []byte("PEO")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Restart()

	var found bool
	var err error
	for range 10 { // the first call may meet the old, broken connection
		if _, found, err = tr.Get(ctx, "id"); err == nil {
			break
		}
		waitState(t, tr, StateUp)
	}
	if err != nil || found {
		t.Fatalf("Get after the restart = %v, %v; want a miss", found, err)
	}
	var fetches atomic.Int64
	fetch := func(context.Context) (Verdict, error) {
		fetches.Add(1)
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	}
	for range 2 {
		if _, _, err := tr.Fetch(ctx, "id", testPolicy(), fetch); err != nil {
			t.Fatal(err)
		}
	}
	if fetches.Load() != 1 {
		t.Errorf("fetched %d times after the restart, want 1 (then a fleet hit)", fetches.Load())
	}
	if got, found, err := tr.Get(ctx, "id"); err != nil || !found || string(got.Value) != "PEO" {
		t.Errorf("refilled: %+v, %v, %v", got, found, err)
	}
}

// TestRedisDownAtStart: New does not wait for Redis; calls are skipped
// while it is unreachable and the tier comes up once it is there.
func TestRedisDownAtStart(t *testing.T) {
	t.Parallel()
	srv := redistest.Reserve(t, redistest.Options{})
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Wait(ctx, func(s Status) bool { return s.LastError != "" }); err != nil {
		t.Fatal(err)
	}
	if s := tr.Status(); s.State != StateConnecting {
		t.Errorf("state %s without Redis, want connecting", s.State)
	}
	if _, _, err := tr.Get(ctx, "id"); !errors.Is(err, ErrSkipped) {
		t.Errorf("Get while connecting: %v, want ErrSkipped (not sent)", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, tr, StateUp)
	if _, found, err := tr.Get(ctx, "id"); err != nil || found {
		t.Errorf("Get once up = %v, %v; want a miss", found, err)
	}
}
