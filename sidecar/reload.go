package sidecar

import (
	"fmt"
	"reflect"

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
	restart := keepRestartOnly(old, next)
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
	s.limits.reconfigure(next.RateLimit)
	restart = append(restart, s.reconfigureFleet(old, next)...)
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
	return restart, nil
}

// keepRestartOnly copies into next the running values of settings that only
// apply at start, and names those that the new file changed.
func keepRestartOnly(old, next *config.Config) []string {
	var changed []string
	keep := func(key string, running, fresh any) {
		if !reflect.DeepEqual(running, fresh) {
			changed = append(changed, key)
		}
	}
	keep("listen", old.Listen, next.Listen)
	keep("cache.maxSizeMB", old.Cache.MaxSizeMB, next.Cache.MaxSizeMB)
	keep("cache.shards", old.Cache.Shards, next.Cache.Shards)
	keep("limits.maxBodyBytes", old.Limits.MaxBodyBytes, next.Limits.MaxBodyBytes)
	keep("log.format", old.Log.Format, next.Log.Format)
	keep("metrics.listen", old.Metrics.Listen, next.Metrics.Listen)
	// The snapshot is read from its path at start only; writing elsewhere
	// would leave the next start to restore a file that stopped changing.
	keep("snapshot.path", old.Snapshot.Path, next.Snapshot.Path)
	next.Listen, next.Cache, next.Metrics = old.Listen, old.Cache, old.Metrics
	next.Snapshot.Path = old.Snapshot.Path
	next.Limits.MaxBodyBytes, next.Log.Format = old.Limits.MaxBodyBytes, old.Log.Format
	return changed
}
