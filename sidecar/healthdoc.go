package sidecar

import (
	"fmt"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
)

// The /health document (docs/lifecycle.md, "The /health document"): the
// types of every section, and the sections read from the lifecycle, the
// cache and the upstream client. The fleet tier's and the snapshots'
// sections are filled in by fleettier.go and snapshot.go, beside the state
// they read.

// healthDoc is the /health status document (docs/lifecycle.md, "The /health document"): the fields of the JS
// layer's getServiceHealth() where the meaning carries over, and more.
type healthDoc struct {
	Service     string           `json:"service"`
	Status      string           `json:"status"`
	Ready       bool             `json:"ready"`
	Version     string           `json:"version"`
	Uptime      string           `json:"uptime"`
	UptimeSecs  int64            `json:"uptimeSeconds"`
	Connection  healthConn       `json:"connection"`
	Resilience  healthResil      `json:"resilience"`
	Upstream    healthUpstream   `json:"upstream"`
	Readiness   healthReadiness  `json:"readiness"`
	Config      config.Status    `json:"config"`
	Snapshot    healthSnapshot   `json:"snapshot"`
	Fleet       healthFleet      `json:"fleet"`
	Transitions []fsm.Transition `json:"transitions"`
	Format      string           `json:"format"`
	Entity      []string         `json:"entityTypes"`
	Mode        string           `json:"mode"`
}

type healthConn struct {
	Initialized       bool       `json:"initialized"`
	State             fsm.State  `json:"state"`
	StateSince        time.Time  `json:"stateSince"`
	IsHealthy         bool       `json:"isHealthy"`
	LastHealthCheck   *time.Time `json:"lastHealthCheck"`
	ReconnectAttempts int        `json:"reconnectAttempts"`
	FailedPolls       int        `json:"consecutiveFailedPolls"`
	EverConnected     bool       `json:"everConnected"`
	Stats             healthPoll `json:"stats"`
}

type healthPoll struct {
	PollsOK     int64          `json:"pollsOk"`
	PollsFailed int64          `json:"pollsFailed"`
	LastPoll    healthLastPoll `json:"lastPoll"`
}

// healthLastPoll is the last completed health poll (fsm.Poll), its
// duration in milliseconds like the document's other durations.
type healthLastPoll struct {
	Time      time.Time `json:"time"`
	OK        bool      `json:"ok"`
	Error     string    `json:"error,omitempty"`
	LatencyMs float64   `json:"latencyMs"`
	// Latency is the same duration in nanoseconds, the only one before
	// latencyMs. Deprecated: kept for one release; read latencyMs.
	Latency time.Duration `json:"latency"`
}

type healthResil struct {
	Enabled        bool          `json:"enabled"`
	CircuitBreaker healthBreaker `json:"circuitBreaker"`
	Cache          healthCache   `json:"cache"`
}

type healthBreaker struct {
	State    upstream.BreakerState `json:"state"`
	Failures int64                 `json:"failures"`
	Trips    int64                 `json:"trips"`
}

type healthCache struct {
	Hits        int64  `json:"hits"`
	Misses      int64  `json:"misses"`
	StaleServed int64  `json:"staleServed"`
	Evictions   int64  `json:"evictions"`
	Coalesced   int64  `json:"coalesced"`
	Size        int64  `json:"size"`
	Bytes       int64  `json:"bytes"`
	MaxSizeMB   int    `json:"maxSizeMB"`
	TTLMs       int64  `json:"ttlMs"`
	HitRate     string `json:"hitRate"`
}

type healthUpstream struct {
	URL       string           `json:"url"`
	Dialect   upstream.Dialect `json:"dialect"`
	Token     bool             `json:"tokenConfigured"`
	InFlight  int              `json:"mintsInFlight"`
	PollEvery string           `json:"pollInterval"`
	TLS       healthTLS        `json:"tls"`
	// Proxy is the egress proxy in use, credentials redacted; "" direct.
	Proxy       string `json:"proxy"`
	ProxySource string `json:"proxySource,omitempty"`
	// Warning is set while requests cross the network unencrypted.
	Warning string `json:"warning,omitempty"`
}

type healthReadiness struct {
	Policy config.ReadinessPolicy `json:"policy"`
	Ready  bool                   `json:"ready"`
	// Reason says why ready is what it is (the state, the policy, a
	// restored snapshot).
	Reason string `json:"reason"`
}

// healthTLS is /health's upstream.tls (docs/upstream.md, "Production upstream").
type healthTLS struct {
	Enabled    bool   `json:"enabled"`
	ServerName string `json:"serverName,omitempty"`
	MinVersion string `json:"minVersion,omitempty"`
	// CAFile is upstream.tls.caFile; "" means the system trust store.
	CAFile string `json:"caFile"`
	// ClientCertNotAfter is when the client certificate expires; null
	// without one.
	ClientCertNotAfter *time.Time `json:"clientCertNotAfter"`
}

// healthFleet is /health's fleet section: the tier's state (off without
// fleet.redis.addrs), its addresses and last error, its settings and
// counters. It never holds the password.
type healthFleet struct {
	Enabled bool `json:"enabled"`
	fleet.Status
	KeyPrefix string            `json:"keyPrefix,omitempty"`
	Timeout   string            `json:"timeout,omitempty"`
	LockTTL   string            `json:"lockTtl,omitempty"`
	Stats     *healthFleetStats `json:"stats,omitempty"`
}

// healthFleetStats are the tier's counters since start (fleet.Stats).
type healthFleetStats struct {
	Hits         int64 `json:"hits"`
	Misses       int64 `json:"misses"`
	Errors       int64 `json:"errors"`
	Skipped      int64 `json:"skipped"`
	Fetches      int64 `json:"fetches"`
	LockWaits    int64 `json:"lockWaits"`
	Takeovers    int64 `json:"takeovers"`
	PeerFailures int64 `json:"peerFailures"`
	MintAllowed  int64 `json:"mintAllowed"`
	MintRefused  int64 `json:"mintRefused"`
}

// healthSnapshot is the /health snapshot section.
type healthSnapshot struct {
	Enabled  bool   `json:"enabled"`
	Path     string `json:"path"`
	Interval string `json:"interval"`
	// LoadOutcome is one of the snap* outcomes (snapshot.go); "" when disabled.
	LoadOutcome   string           `json:"loadOutcome"`
	LoadError     string           `json:"loadError"`
	Loaded        int              `json:"loaded"`
	Skipped       int              `json:"skipped"`
	Rejected      int              `json:"rejected"`
	LoadedAt      *time.Time       `json:"loadedAt"`
	LoadMs        float64          `json:"loadDurationMs"`
	FileWrittenAt *time.Time       `json:"fileWrittenAt"` // of the restored file
	LastWrite     *healthSnapWrite `json:"lastWrite"`
	WritesOK      int64            `json:"writesOk"`
	WritesFailed  int64            `json:"writesFailed"`
}

// healthSnapWrite is one snapshot write, in the snapshot section.
type healthSnapWrite struct {
	Time       time.Time `json:"time"`
	Reason     string    `json:"reason"`
	DurationMs float64   `json:"durationMs"`
	Entries    int       `json:"entries"`
	Bytes      int64     `json:"bytes"`
	Error      string    `json:"error"`
}

// connection is the document's connection section, from the lifecycle.
func connection(snap fsm.Snapshot) healthConn {
	c := healthConn{
		Initialized:       snap.Polls.OK+snap.Polls.Failed > 0,
		State:             snap.State,
		StateSince:        snap.StateSince,
		IsHealthy:         snap.State == fsm.Connected,
		ReconnectAttempts: snap.Attempts,
		FailedPolls:       snap.Failures,
		EverConnected:     snap.EverConnected,
		Stats:             healthPoll{PollsOK: snap.Polls.OK, PollsFailed: snap.Polls.Failed, LastPoll: lastPoll(snap.LastPoll)},
	}
	if !snap.LastPoll.Time.IsZero() {
		t := snap.LastPoll.Time
		c.LastHealthCheck = &t
	}
	return c
}

// lastPoll is the document's view of the last poll.
func lastPoll(p fsm.Poll) healthLastPoll {
	return healthLastPoll{Time: p.Time, OK: p.OK, Error: p.Error, LatencyMs: millis(p.Latency), Latency: p.Latency}
}

// resilience is the document's resilience section: the breaker and the
// cache.
func (s *Sidecar) resilience(cfg *config.Config) healthResil {
	st := s.cache.Stats()
	rate := 0.0
	if n := st.Hits + st.Misses; n > 0 {
		rate = 100 * float64(st.Hits) / float64(n)
	}
	return healthResil{
		Enabled:        true,
		CircuitBreaker: healthBreaker{State: s.breaker.State(), Failures: s.breaker.Failures(), Trips: s.breaker.Trips()},
		Cache: healthCache{
			Hits: st.Hits, Misses: st.Misses, StaleServed: st.StaleServed, Evictions: st.Evictions,
			Coalesced: st.Coalesced, Size: st.Entries, Bytes: st.Bytes, MaxSizeMB: cfg.Cache.MaxSizeMB,
			TTLMs: cfg.Validation.TTL.Milliseconds(), HitRate: fmt.Sprintf("%.2f%%", rate),
		},
	}
}

// upstreamHealth is /health's upstream section. It never holds the token
// or the proxy's credentials.
func upstreamHealth(cfg *config.Config, client *upstream.Client) healthUpstream {
	h := healthUpstream{URL: cfg.Upstream.RedactedURL(), Dialect: cfg.Upstream.Dialect, Token: client.HasToken(),
		InFlight: client.InFlight(), PollEvery: cfg.Health.Interval.String(), Warning: cfg.Upstream.InsecureWarning()}
	h.Proxy, h.ProxySource = client.Proxy()
	info := client.TLS()
	h.TLS = healthTLS{Enabled: info.Enabled, ServerName: info.ServerName, MinVersion: info.MinVersion, CAFile: info.CAFile}
	if t := info.ClientCertNotAfter(); !t.IsZero() {
		h.TLS.ClientCertNotAfter = &t
	}
	return h
}
