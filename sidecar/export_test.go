package sidecar

import (
	"context"
	"errors"
	"maps"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/valyala/fasthttp"
)

// Exports for the tests of package sidecar_test, which drive the sidecar
// from outside as an embedding program would.

// Handler returns the API's request handler, for tests and benchmarks that
// drive it without a listener.
func (s *Sidecar) Handler() fasthttp.RequestHandler { return s.api.handle }

// WaitState blocks until the upstream lifecycle is in one of the states
// want or ctx ends. It wakes on transitions only (Lifecycle.Wait, one per
// state, all ended before it returns).
func (s *Sidecar) WaitState(ctx context.Context, want ...fsm.State) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(want))
	for _, st := range want {
		go func() { errs <- s.life.Wait(ctx, st) }()
	}
	var failed []error
	for range want {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		} else {
			cancel() // one is reached: the others' waits end
		}
	}
	if len(failed) == len(want) {
		return errors.Join(failed...)
	}
	return nil
}

// OpsAddr returns the operations listener's address once Run has opened it,
// or "".
func (s *Sidecar) OpsAddr() string {
	a, _ := s.opsAddr.Load().(string)
	return a
}

// WaitFleet blocks until cond holds for the fleet tier's status or ctx
// ends.
func (s *Sidecar) WaitFleet(ctx context.Context, cond func(fleet.Status) bool) error {
	return s.fleet.Wait(ctx, cond)
}

// FleetStats returns the fleet tier's counters.
func (s *Sidecar) FleetStats() fleet.Stats { return s.fleet.Stats() }

// WaitLateAnswers blocks until every mint awaited after its caller gave
// up has its answer or has run out of time (upstream.lateAnswerWindow),
// and its audit line is written. No new mint may begin meanwhile.
func (s *Sidecar) WaitLateAnswers() { s.late.Wait() }

// FleetStatus returns the fleet tier's state.
func (s *Sidecar) FleetStatus() fleet.Status { return s.fleet.Status() }

// ErrorStatuses returns every error code of the local API with its HTTP
// status, for the test that holds openapi.json to them.
func ErrorStatuses() map[string]int { return maps.Clone(codeStatus) }

// WaitSnapshotWrites blocks until at least n snapshot writes (periodic or at
// shutdown, successful or failed) have finished since start, or ctx ends.
func (s *Sidecar) WaitSnapshotWrites(ctx context.Context, n int64) error {
	for {
		s.snaps.mu.Lock()
		done, ch := s.snaps.ok+s.snaps.fail, s.snaps.changed
		s.snaps.mu.Unlock()
		if done >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
