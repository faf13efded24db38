package fsm

import (
	"errors"
	"math"
	"testing"
	"time"

	looplab "github.com/looplab/fsm"
)

// testConfig has thresholds above 1 so counting shows.
var testConfig = Config{
	Interval:             30 * time.Second,
	Timeout:              5 * time.Second,
	FailuresToReconnect:  3,
	MaxReconnectAttempts: 5,
	Reconnect:            ReconnectConfig{BaseDelay: time.Second, MaxDelay: 60 * time.Second},
}

func TestNext(t *testing.T) {
	t.Parallel()
	type st = Status
	for _, tc := range []struct {
		name   string
		cfg    Config
		s      Status
		o      Observation
		want   Status
		reason string
	}{
		// CONNECTING
		{"connecting ok", testConfig, st{State: Connecting}, PollOK, st{State: Connected, EverConnected: true}, "poll ok"},
		{"connecting fail goes straight to reconnecting", testConfig, st{State: Connecting}, PollFailed, st{State: Reconnecting}, "first poll failed"},
		{"connecting breaker ignored", testConfig, st{State: Connecting}, BreakerOpened, st{State: Connecting}, "breaker opened"},
		{"connecting shutdown", testConfig, st{State: Connecting}, Shutdown, st{State: Disconnected}, "shutdown"},
		{"connecting ok while the breaker is open", testConfig, st{State: Connecting}, PollOKBreakerOpen, st{State: Reconnecting}, "breaker open"},
		{"connecting breaker closed ignored", testConfig, st{State: Connecting}, BreakerClosed, st{State: Connecting}, "breaker closed"},
		// CONNECTED
		{"connected ok", testConfig, st{State: Connected, EverConnected: true}, PollOK, st{State: Connected, EverConnected: true}, "poll ok"},
		{"connected ok resets failures", testConfig, st{State: Connected, Failures: 2, EverConnected: true}, PollOK, st{State: Connected, EverConnected: true}, "poll ok"},
		{"connected 1st failure", testConfig, st{State: Connected, EverConnected: true}, PollFailed, st{State: Connected, Failures: 1, EverConnected: true}, "1 failed poll in a row"},
		{"connected 2nd failure", testConfig, st{State: Connected, Failures: 1, EverConnected: true}, PollFailed, st{State: Connected, Failures: 2, EverConnected: true}, "2 failed polls in a row"},
		{"connected 3rd failure reaches threshold", testConfig, st{State: Connected, Failures: 2, EverConnected: true}, PollFailed, st{State: Reconnecting, EverConnected: true}, "3 failed polls in a row"},
		{"connected breaker opened bypasses threshold", testConfig, st{State: Connected, Failures: 1, EverConnected: true}, BreakerOpened, st{State: Reconnecting, EverConnected: true}, "breaker opened"},
		{"connected shutdown", testConfig, st{State: Connected, Failures: 1, EverConnected: true}, Shutdown, st{State: Disconnected, Failures: 1, EverConnected: true}, "shutdown"},
		{"connected ok while the breaker is open (its signal missed)", testConfig, st{State: Connected, Failures: 1, EverConnected: true}, PollOKBreakerOpen, st{State: Reconnecting, EverConnected: true}, "breaker open"},
		{"connected breaker closed changes nothing", testConfig, st{State: Connected, Failures: 1, EverConnected: true}, BreakerClosed, st{State: Connected, Failures: 1, EverConnected: true}, "breaker closed"},
		// RECONNECTING
		{"reconnecting ok", testConfig, st{State: Reconnecting, Attempts: 3, EverConnected: true}, PollOK, st{State: Connected, EverConnected: true}, "poll ok"},
		{"reconnecting ok never connected before", testConfig, st{State: Reconnecting, Attempts: 1}, PollOK, st{State: Connected, EverConnected: true}, "poll ok"},
		{"reconnecting 1st attempt fails", testConfig, st{State: Reconnecting, EverConnected: true}, PollFailed, st{State: Reconnecting, Attempts: 1, EverConnected: true}, "reconnect attempt 1 failed"},
		{"reconnecting 4th attempt fails", testConfig, st{State: Reconnecting, Attempts: 3}, PollFailed, st{State: Reconnecting, Attempts: 4}, "reconnect attempt 4 failed"},
		{"reconnecting last attempt fails", testConfig, st{State: Reconnecting, Attempts: 4, EverConnected: true}, PollFailed, st{State: Failed, Attempts: 5, EverConnected: true}, "5 reconnect attempts failed"},
		{"reconnecting breaker ignored", testConfig, st{State: Reconnecting, Attempts: 2}, BreakerOpened, st{State: Reconnecting, Attempts: 2}, "breaker opened"},
		{"reconnecting shutdown", testConfig, st{State: Reconnecting, Attempts: 2}, Shutdown, st{State: Disconnected, Attempts: 2}, "shutdown"},
		{"reconnecting ok while the breaker is open stays", testConfig, st{State: Reconnecting, EverConnected: true}, PollOKBreakerOpen, st{State: Reconnecting, EverConnected: true}, "breaker open"},
		{"reconnecting ok while the breaker is open restarts attempts", testConfig, st{State: Reconnecting, Attempts: 4}, PollOKBreakerOpen, st{State: Reconnecting}, "breaker open"},
		{"reconnecting breaker closed", testConfig, st{State: Reconnecting, Attempts: 2}, BreakerClosed, st{State: Connected, EverConnected: true}, "breaker closed"},
		// FAILED
		{"failed ok", testConfig, st{State: Failed, Attempts: 7}, PollOK, st{State: Connected, EverConnected: true}, "poll ok"},
		{"failed stays failed on failure", testConfig, st{State: Failed, Attempts: 5, EverConnected: true}, PollFailed, st{State: Failed, Attempts: 6, EverConnected: true}, "reconnect attempt 6 failed"},
		{"failed breaker ignored", testConfig, st{State: Failed, Attempts: 5}, BreakerOpened, st{State: Failed, Attempts: 5}, "breaker opened"},
		{"failed shutdown", testConfig, st{State: Failed, Attempts: 5}, Shutdown, st{State: Disconnected, Attempts: 5}, "shutdown"},
		{"failed ok while the breaker is open", testConfig, st{State: Failed, Attempts: 7, EverConnected: true}, PollOKBreakerOpen, st{State: Reconnecting, EverConnected: true}, "breaker open"},
		{"failed breaker closed waits for a poll", testConfig, st{State: Failed, Attempts: 5}, BreakerClosed, st{State: Failed, Attempts: 5}, "breaker closed"},
		// DISCONNECTED absorbs everything
		{"disconnected ok", testConfig, st{State: Disconnected, EverConnected: true}, PollOK, st{State: Disconnected, EverConnected: true}, "already disconnected"},
		{"disconnected fail", testConfig, st{State: Disconnected}, PollFailed, st{State: Disconnected}, "already disconnected"},
		{"disconnected breaker", testConfig, st{State: Disconnected}, BreakerOpened, st{State: Disconnected}, "already disconnected"},
		{"disconnected shutdown", testConfig, st{State: Disconnected}, Shutdown, st{State: Disconnected}, "already disconnected"},
		{"disconnected ok while the breaker is open", testConfig, st{State: Disconnected}, PollOKBreakerOpen, st{State: Disconnected}, "already disconnected"},
		{"disconnected breaker closed", testConfig, st{State: Disconnected}, BreakerClosed, st{State: Disconnected}, "already disconnected"},
		// edges
		{"unknown observation ignored", testConfig, st{State: Connected}, Observation(0), st{State: Connected}, "unknown observation(0)"},
		{"zero thresholds count as 1: connected", Config{}, st{State: Connected}, PollFailed, st{State: Reconnecting}, "1 failed poll in a row"},
		{"zero thresholds count as 1: reconnecting", Config{}, st{State: Reconnecting}, PollFailed, st{State: Failed, Attempts: 1}, "1 reconnect attempt failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, reason := Next(tc.cfg, tc.s, tc.o)
			if got != tc.want || reason != tc.reason {
				t.Fatalf("Next(%+v, %v) = %+v, %q; want %+v, %q", tc.s, tc.o, got, reason, tc.want, tc.reason)
			}
			if got.State == tc.s.State {
				return
			}
			// Every state change Next decides must be an event looplab allows.
			ev, ok := eventFor(tc.s.State, got.State)
			if !ok {
				t.Fatalf("eventFor(%s, %s): no event for a transition Next decided", tc.s.State, got.State)
			}
			f := looplab.NewFSM(string(tc.s.State), events(), nil)
			if err := f.Event(t.Context(), ev); err != nil || f.Current() != string(got.State) {
				t.Fatalf("looplab %q from %s: err %v, now %s; want %s", ev, tc.s.State, err, f.Current(), got.State)
			}
		})
	}
}

// TestEventsMatchEventFor checks the looplab table against eventFor for
// every pair of states, both ways: what eventFor names, looplab performs.
func TestEventsMatchEventFor(t *testing.T) {
	t.Parallel()
	all := []State{Connecting, Connected, Reconnecting, Failed, Disconnected}
	for _, from := range all {
		for _, to := range all {
			ev, ok := eventFor(from, to)
			if !ok {
				continue
			}
			f := looplab.NewFSM(string(from), events(), nil)
			err := f.Event(t.Context(), ev)
			var same looplab.NoTransitionError
			if from == to && !errors.As(err, &same) {
				t.Errorf("%q from %s: err %v, want NoTransitionError", ev, from, err)
			}
			if from != to && err != nil {
				t.Errorf("%q from %s: %v", ev, from, err)
			}
			if f.Current() != string(to) {
				t.Errorf("%q from %s: now %s, want %s", ev, from, f.Current(), to)
			}
		}
	}
}

func TestNextPoll(t *testing.T) {
	t.Parallel()
	huge := Config{Reconnect: ReconnectConfig{BaseDelay: 1 << 62, MaxDelay: math.MaxInt64}}
	for _, tc := range []struct {
		name string
		cfg  Config
		s    Status
		want time.Duration
	}{
		{"connecting", testConfig, Status{State: Connecting}, 30 * time.Second},
		{"connected", testConfig, Status{State: Connected, Failures: 2}, 30 * time.Second},
		{"reconnecting before 1st attempt", testConfig, Status{State: Reconnecting}, time.Second},
		{"reconnecting after 1 attempt", testConfig, Status{State: Reconnecting, Attempts: 1}, 2 * time.Second},
		{"reconnecting after 2 attempts", testConfig, Status{State: Reconnecting, Attempts: 2}, 4 * time.Second},
		{"reconnecting after 5 attempts", testConfig, Status{State: Reconnecting, Attempts: 5}, 32 * time.Second},
		{"reconnecting capped", testConfig, Status{State: Reconnecting, Attempts: 6}, 60 * time.Second},
		{"reconnecting far past the cap", testConfig, Status{State: Reconnecting, Attempts: 1000}, 60 * time.Second},
		{"reconnecting no overflow", huge, Status{State: Reconnecting, Attempts: 3}, math.MaxInt64},
		{"failed", testConfig, Status{State: Failed, Attempts: 9}, 60 * time.Second},
		{"disconnected", testConfig, Status{State: Disconnected}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := NextPoll(tc.cfg, tc.s); got != tc.want {
				t.Fatalf("NextPoll(%+v) = %s, want %s", tc.s, got, tc.want)
			}
		})
	}
}

func TestJitterStaysWithinTenPercent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rand func(n int64) int64
		d    time.Duration
		want time.Duration
	}{
		{"lowest", func(int64) int64 { return 0 }, 30 * time.Second, 27 * time.Second},
		{"middle", func(n int64) int64 { return n / 2 }, 30 * time.Second, 30 * time.Second},
		{"highest", func(n int64) int64 { return n - 1 }, 30 * time.Second, 33 * time.Second},
		{"too small to jitter", func(int64) int64 { panic("rand called") }, 9, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := &Lifecycle{rand: tc.rand}
			if got := l.jitter(tc.d); got != tc.want {
				t.Fatalf("jitter(%s) = %s, want %s", tc.d, got, tc.want)
			}
		})
	}
}
