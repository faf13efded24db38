package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/rueidis"
)

// run is the tier's one goroutine: it connects, then probes Redis each
// time the tier is skipped, until Close.
func (t *Tier) run() {
	defer close(t.done)
	if !t.connect() {
		return
	}
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
		}
		if !t.recover() {
			return
		}
	}
}

// connect builds the client and probes it, retrying with backoff, until
// the tier is up (true) or closed (false).
func (t *Tier) connect() bool {
	backoff := t.opts.ProbeInterval
	for {
		err := t.dial()
		if err == nil {
			t.setUp()
			return true
		}
		t.record(err)
		if !t.pause(backoff) {
			return false
		}
		backoff = min(2*backoff, t.opts.MaxProbeInterval)
	}
}

// recover probes the skipped tier with backoff until Redis answers
// (true) or the tier is closed (false). The client is there: connect
// stored it, and Close removes it only once run has returned.
func (t *Tier) recover() bool {
	backoff := t.opts.ProbeInterval
	for t.state.Load() == codeSkipped {
		if !t.pause(backoff) {
			return false
		}
		if err := t.probe(t.client.Load().c); err != nil {
			t.record(err)
			backoff = min(2*backoff, t.opts.MaxProbeInterval)
			continue
		}
		t.setUp()
	}
	return true
}

// setUp moves a connecting or skipped tier up, its failure count reset.
func (t *Tier) setUp() {
	t.failures.Store(0)
	t.move(codeUp, nil, codeConnecting, codeSkipped)
}

// pause waits about d (±20 %) or until Close; false means closed.
func (t *Tier) pause(d time.Duration) bool {
	d = d - d/5 + rand.N(2*d/5+1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.stop:
		return false
	case <-timer.C:
		return true
	}
}

// probe asks Redis for PING twice: once within ConnectTimeout, which may
// include connecting, then within fleet.timeout, the budget of a call.
func (t *Tier) probe(c rueidis.Client) error {
	t.gate.Lock() // waits for calls begun before the tier was skipped
	defer t.gate.Unlock()
	for _, limit := range []time.Duration{t.opts.ConnectTimeout, t.live.Load().timeout} {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		start := time.Now()
		err := c.Do(ctx, c.B().Ping().Build()).Error()
		d := time.Since(start)
		cancel()
		if isTimeout(err) {
			err = ErrTimeout
		}
		if err != nil {
			t.opts.Observer.Call("probe", "error", d)
			return fmt.Errorf("probing Redis: %w", err)
		}
	}
	t.opts.Observer.Call("probe", "ok", 0)
	return nil
}

// dial builds the client and probes it.
func (t *Tier) dial() error {
	rc, err := rueidis.NewClient(t.clientOption())
	if err != nil {
		if rc != nil { // a single client comes back with its dial error
			rc.Close()
		}
		return fmt.Errorf("connecting to Redis %v: %w", t.cfg.Redis.Addrs, err)
	}
	c := pinned{rc}
	if err := t.probe(c); err != nil {
		c.Close()
		return err
	}
	t.client.Store(&client{c})
	return nil
}
