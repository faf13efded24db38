package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/prometheus/client_golang/prometheus"
)

// The process side of the fleet tier (docs/fleet.md): the Sidecar builds
// it in New (off, with no goroutine and no connection, without
// fleet.redis.addrs), closes it after the cache, reconfigures it on reload,
// reports it in /health and in the metrics, and logs its state changes.
// The request side is in cache/resolve (verdicts) and fleet.go (the fleet
// mint limit).

// startFleet builds the fleet tier for cfg.Fleet and, if it is on,
// registers its metrics on reg. The tier connects in the background: New
// does not wait for Redis, and requests skip the tier until it is up.
func (s *Sidecar) startFleet(cfg *config.Config, reg prometheus.Registerer) error {
	obs := newFleetObserver(s.log)
	t, err := fleet.New(cfg.Fleet, fleet.Options{Observer: obs, Now: s.now})
	if err != nil {
		return err // "building the fleet tier: …"
	}
	obs.tier.Store(t)
	if t.Enabled() {
		for _, c := range obs.collectors(t) {
			if err := reg.Register(c); err != nil {
				_ = t.Close()
				return fmt.Errorf("registering the fleet tier's metrics: %w", err)
			}
		}
	}
	s.fleet = t
	if t.Enabled() {
		f := cfg.Fleet
		s.log.Info("fleet tier on: connecting to Redis", "addrs", f.Redis.Addrs, "masterName", f.Redis.Sentinel.MasterName,
			"keyPrefix", f.KeyPrefix, "timeout", f.Timeout.String(), "lockTtl", f.LockTTL.String())
	}
	return nil
}

// fleetParts are the tier as the handlers use it, for verdicts and for
// the fleet mint limit: nil while it is off.
func (s *Sidecar) fleetParts() (resolve.Fleet, fleetLimit) {
	if !s.fleet.Enabled() {
		return nil, nil
	}
	return s.fleet, s.fleet
}

// reconfigureFleet applies a reload to the tier (credentials, timeouts,
// key prefix). What it cannot change without a restart (addresses,
// sentinel, db, TLS) config.KeepRestartOnly has already kept at the
// running values and named.
func (s *Sidecar) reconfigureFleet(next *config.Config) { s.fleet.Reconfigure(next.Fleet) }

func (s *Sidecar) fleetHealth(cfg *config.Config) healthFleet {
	h := healthFleet{Enabled: s.fleet.Enabled(), Status: s.fleet.Status()}
	if !h.Enabled {
		return h
	}
	f := cfg.Fleet
	h.KeyPrefix, h.Timeout, h.LockTTL = f.KeyPrefix, f.Timeout.String(), f.LockTTL.String()
	st := s.fleet.Stats()
	h.Stats = &healthFleetStats{Hits: st.Hits, Misses: st.Misses, Errors: st.Errors, Skipped: st.Skipped,
		Fetches: st.Fetches, LockWaits: st.LockWaits, Takeovers: st.Takeovers, PeerFailures: st.PeerFailures,
		MintAllowed: st.MintAllowed, MintRefused: st.MintRefused}
	return h
}

// fleetStates are the states the fleet_state gauge reports, one series
// each.
var fleetStates = [...]fleet.State{fleet.StateOff, fleet.StateConnecting, fleet.StateUp, fleet.StateSkipped, fleet.StateClosed}

// fleetObserver is the tier's fleet.Observer: Prometheus collectors for
// its calls and lock waits, and a log line for each change of its state.
type fleetObserver struct {
	calls       *prometheus.CounterVec
	callDur     prometheus.Histogram
	lockWaits   *prometheus.CounterVec
	lockWaitDur prometheus.Histogram
	log         *slog.Logger
	// tier is set once New returned it; its goroutine may report the
	// first state change before that.
	tier atomic.Pointer[fleet.Tier]
}

var _ fleet.Observer = (*fleetObserver)(nil)

func newFleetObserver(log *slog.Logger) *fleetObserver {
	return &fleetObserver{
		log: log,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "fleet_calls_total",
			Help: "Fleet tier operations by op (get, put, lock, commit, release, mint, probe) and outcome: hit, miss or stale (get); acquired, held, failed or verdict (lock); allowed or refused (mint); ok; error, timeout, or skipped (not sent while Redis is unavailable)."},
			[]string{"op", "outcome"}),
		// One histogram for every op: each call is one round trip to Redis
		// (fleet_calls_total has them by op). fleet.timeout is 25ms by
		// default, 1s at most.
		callDur: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fleet_call_duration_seconds",
			Help:    "Time the fleet tier's calls to Redis took, every op (calls not sent are not observed).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1}}),
		lockWaits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "fleet_lock_waits_total",
			Help: "Validates that waited for another sidecar's upstream fetch of the same ID, by how the wait ended: verdict, takeover (its lock expired), failed (its fetch failed), gave_up (deadline), fallback (Redis failed)."},
			[]string{"outcome"}),
		lockWaitDur: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fleet_lock_wait_duration_seconds",
			Help:    "How long validates waited for another sidecar's upstream fetch of the same ID.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
}

// collectors are the observer's collectors and the tier's state gauge,
// one series per state (the dashboard draws the state from all five).
// Calls and lock waits are served by op and outcome from their first.
func (o *fleetObserver) collectors(t *fleet.Tier) []prometheus.Collector {
	cols := []prometheus.Collector{o.calls, o.callDur, o.lockWaits, o.lockWaitDur}
	for _, st := range fleetStates {
		cols = append(cols, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "fleet_state",
			Help:        "1 for the fleet tier's current state (off, connecting, up, skipped, closed), 0 for the others.",
			ConstLabels: prometheus.Labels{"state": string(st)}},
			func() float64 { return boolFloat(t.Status().State == st) }))
	}
	return cols
}

// Call implements fleet.Observer.
func (o *fleetObserver) Call(op, outcome string, d time.Duration) {
	o.calls.WithLabelValues(op, outcome).Inc()
	if d > 0 {
		o.callDur.Observe(d.Seconds())
	}
}

// LockWait implements fleet.Observer.
func (o *fleetObserver) LockWait(outcome string, d time.Duration) {
	o.lockWaits.WithLabelValues(outcome).Inc()
	o.lockWaitDur.Observe(d.Seconds())
}

// StateChanged implements fleet.Observer: one log line per change, a
// warning when the tier is skipped, with the error that made it so. A tier
// that is off (whose only change is to closed, at shutdown) logs nothing.
func (o *fleetObserver) StateChanged(st fleet.State) {
	t := o.tier.Load()
	if t != nil && !t.Enabled() {
		return
	}
	level, msg := slog.LevelInfo, "fleet tier "+string(st)
	attrs := []slog.Attr{slog.String("state", string(st))}
	switch st {
	case fleet.StateUp:
		msg = "fleet tier up: Redis answers"
	case fleet.StateSkipped:
		level, msg = slog.LevelWarn, "fleet tier skipped: Redis failed several calls in a row; validates go local, then upstream, and mints are limited locally until a probe succeeds"
	}
	if t != nil {
		s := t.Status()
		attrs = append(attrs, slog.Any("addrs", s.Addrs))
		if st == fleet.StateSkipped && s.LastError != "" {
			attrs = append(attrs, slog.String("error", s.LastError))
		}
	}
	o.log.LogAttrs(context.Background(), level, msg, attrs...)
}
