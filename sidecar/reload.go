package sidecar

import (
	"fmt"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream"
)

// applyConfig installs a reloaded config (config.ApplyFunc). It builds what
// the change needs first and swaps only when everything is ready; on error
// nothing changes. The cache (entries and counters), the breaker's state and
// the lifecycle state survive, and so do TLS sessions while the trust
// settings stay the same (upstream.Sessions). A new client reads the TLS
// files as config.Parse read them and the proxy variables again, and
// applies to new connections. Requests in flight keep the config snapshot
// they started with. It runs on the watcher's goroutine only.
func (s *Sidecar) applyConfig(next *config.Config) ([]string, error) {
	old := s.cfg.Load()
	restart := config.KeepRestartOnly(old, next)
	var client *upstream.Client
	if next.Upstream != old.Upstream || next.Format != old.Format {
		c, err := upstream.New(next.Upstream, next.Format, s.breaker, s.upstreamOptions())
		if err != nil {
			return nil, fmt.Errorf("building the upstream client: %w", err)
		}
		client = c
	}
	// Everything is built: swap.
	s.breaker.Reconfigure(next.Upstream.Breaker)
	s.life.Reconfigure(next.Health)
	s.limits.Reconfigure(next.RateLimit)
	s.reconfigureFleet(next)
	s.tracer.Apply(next.Tracing)
	if s.level != nil {
		s.level.Set(next.Log.SlogLevel())
	}
	s.cfg.Store(next)
	if next.Snapshot.Interval != old.Snapshot.Interval {
		s.snaps.reconfigured()
	}
	if client != nil {
		s.client.Swap(client).Close() // requests still using the old one finish on it
	}
	s.logTransport(next)
	s.logWarnings(next)
	return restart, nil
}

// logWarnings logs what loading the config found worth fixing (a secret
// file every user may read, a file used although others could write it),
// at start and on every reload.
func (s *Sidecar) logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		s.log.Warn("config warning", "warning", w)
	}
}
