package fsm

import (
	"context"
	"fmt"
	"time"
)

// Transition is one change of state, as listed in /health.
type Transition struct {
	From   State     `json:"from"`
	To     State     `json:"to"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Poll is the outcome of one health poll.
type Poll struct {
	// Time is when the poll started; zero before the first poll.
	Time time.Time `json:"time"`
	// OK says the probe returned nil.
	OK bool `json:"ok"`
	// Error is the probe's error text, empty when OK.
	Error string `json:"error,omitempty"`
	// Latency is how long the probe took (nanoseconds in JSON).
	Latency time.Duration `json:"latency"`
}

// PollCounts counts completed polls since start.
type PollCounts struct {
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
}

// Snapshot is a consistent copy of the lifecycle, for /health.
type Snapshot struct {
	// State is the current state.
	State State `json:"state"`
	// StateSince is when State was entered (New's time for CONNECTING).
	StateSince time.Time `json:"stateSince"`
	// Attempts, Failures and EverConnected are as in Status.
	Attempts      int  `json:"attempts"`
	Failures      int  `json:"failures"`
	EverConnected bool `json:"everConnected"`
	// LastPoll is the last completed poll; zero before the first.
	LastPoll Poll `json:"lastPoll"`
	// Polls counts completed polls.
	Polls PollCounts `json:"polls"`
	// Transitions are the last transitions (at most 20), oldest first.
	Transitions []Transition `json:"transitions"`
	// TransitionsTotal counts every transition since start.
	TransitionsTotal int64 `json:"transitionsTotal"`
}

// Snapshot returns a copy of the current status, poll figures and recent
// transitions. It is safe from any goroutine.
func (l *Lifecycle) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Snapshot{
		State:         l.status.State,
		StateSince:    l.stateSince,
		Attempts:      l.status.Attempts,
		Failures:      l.status.Failures,
		EverConnected: l.status.EverConnected,
		LastPoll:      l.lastPoll,
		Polls:         l.polls,
		Transitions:   l.transitions.list(),

		TransitionsTotal: l.transitions.total,
	}
}

// Wait blocks until the state is want or ctx ends. It wakes on transitions
// (a channel closed by each one), never by polling. Meant for tests.
func (l *Lifecycle) Wait(ctx context.Context, want State) error {
	for {
		l.mu.Lock()
		st, changed := l.status.State, l.changed
		l.mu.Unlock()
		if st == want {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("fsm: waiting for %s in %s: %w", want, st, ctx.Err())
		}
	}
}

// current returns the status.
func (l *Lifecycle) current() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// recordPoll stores one poll's outcome.
func (l *Lifecycle) recordPoll(start time.Time, latency time.Duration, err error) {
	p := Poll{Time: start, OK: err == nil, Latency: latency}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		p.Error = err.Error()
		l.polls.Failed++
	} else {
		l.polls.OK++
	}
	l.lastPoll = p
}

// ringSize is how many transitions Snapshot keeps.
const ringSize = 20

// ring holds the newest ringSize transitions.
type ring struct {
	buf   [ringSize]Transition
	next  int   // index the next push writes
	n     int   // how many are stored
	total int64 // pushes since start
}

func (r *ring) push(t Transition) {
	r.buf[r.next] = t
	r.next = (r.next + 1) % ringSize
	r.n = min(r.n+1, ringSize)
	r.total++
}

// list returns the stored transitions, oldest first.
func (r *ring) list() []Transition {
	out := make([]Transition, 0, r.n)
	for i := range r.n {
		out = append(out, r.buf[(r.next-r.n+i+ringSize)%ringSize])
	}
	return out
}
