package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
)

// Config is the whole config file. Parse and Load return it with every
// default filled in, the environment applied and the token resolved.
type Config struct {
	// Listen is the host:port of the local API; the host is an IP address or
	// "localhost". Port 0 picks a free port. Restart needed to change.
	// Default 127.0.0.1:8787.
	Listen string `yaml:"listen"`
	// Upstream is the ChittyID service the sidecar talks to.
	Upstream upstream.Config `yaml:"upstream"`
	// Format is the ID format profile, official or numeric. Default official.
	Format chittyid.Format `yaml:"format"`
	// Validation says how IDs are validated and how long verdicts are cached.
	// (The field is not called Validate because that is Config's method.)
	Validation Validate `yaml:"validate"`
	// Cache sizes the verdict cache. Restart needed to change.
	Cache cache.Config `yaml:"cache"`
	// Shutdown bounds a graceful stop.
	Shutdown Shutdown `yaml:"shutdown"`
	// Limits bound what one request may carry.
	Limits Limits `yaml:"limits"`
	// Log configures the process log.
	Log Log `yaml:"log"`
	// Health says how the upstream link is polled and when it is given up on.
	Health fsm.Config `yaml:"health"`
	// Readiness says when /readyz and /health report ready.
	Readiness Readiness `yaml:"readiness"`
	// Reload says how often the file is checked for changes.
	Reload Reload `yaml:"reload"`
	// RateLimit caps how fast callers may mint and validate. Reloadable.
	RateLimit RateLimit `yaml:"rateLimit"`
	// Metrics configures the optional operations listener.
	Metrics Metrics `yaml:"metrics"`
	// Snapshot saves the cache to a file so that a restarted sidecar can
	// answer validates while upstream is down.
	Snapshot Snapshot `yaml:"snapshot"`
	// Security says who may call the local API.
	Security Security `yaml:"security"`
	// Fleet is the fleet tier: a cache and limits shared by a fleet's
	// sidecars in Redis. Off without fleet.redis.addrs.
	Fleet fleet.Config `yaml:"fleet"`
	// Tracing exports spans of the requests that go upstream to an
	// OpenTelemetry collector. Off without tracing.endpoint (or the
	// OTEL_EXPORTER_OTLP_* environment variables); apps' trace context is
	// forwarded upstream either way.
	Tracing tracing.Config `yaml:"tracing"`

	// Warnings are what loading found worth fixing that is not an error: a
	// secret file every user may read, a file used although another user
	// could have written it (EnvInsecureTrustWritableFiles). The sidecar
	// logs them at start and on every reload; check-config prints them.
	// They are not part of the file.
	Warnings []string `yaml:"-"`
}

// Snapshot is the snapshot section. The sidecar writes the cache's verdicts
// (ID, verdict, fetched-at) to Path every Interval and once more at
// shutdown, after the drain, and restores them at start, before it serves.
type Snapshot struct {
	// Path is the snapshot file. Its directory must exist and be writable:
	// each write goes to a temporary file there ("Path.tmp-…") that is then
	// renamed over Path. One sidecar per file. Restart needed to change (the
	// file is read at start only). Default "" (no snapshot).
	Path string `yaml:"path"`
	// Interval is the time between two writes while running; 100ms to 24h.
	// A reload applies from the next write. Default 1m.
	Interval time.Duration `yaml:"interval"`
}

// Metrics is the metrics section.
type Metrics struct {
	// Listen, if set, is a second address (host:port) that serves only
	// /metrics and the probes (/healthz, /readyz, /health): for a Prometheus
	// scraper and the kubelet, which reach the pod's IP, not its loopback,
	// while the API stays on listen. /metrics is served on listen too.
	// Restart needed to change. Default "" (none).
	Listen string `yaml:"listen"`
	// AllowedHosts are host names (or IP addresses) that a request's Host
	// header may carry on this listener besides the loopback names and
	// addresses and the address the request arrived at (what a scraper or
	// the kubelet connecting to the pod's IP sends), such as a Service's
	// name that Prometheus scrapes through. The port is not compared, case
	// is ignored. Any other Host gets 403 FORBIDDEN on /metrics and /health
	// (DNS rebinding); /healthz and /readyz are exempt. Reloadable. Default
	// none.
	AllowedHosts []string `yaml:"allowedHosts"`
}

// Reload is the reload section.
type Reload struct {
	// Interval is how often the config file and the files it names
	// (upstream.tokenFile, the upstream.tls files, fleet.redis.passwordFile)
	// are read and hashed; a change is loaded and applied. SIGHUP reloads
	// at once. 100ms to 1h. Default 2s.
	Interval time.Duration `yaml:"interval"`
}

// ReadinessPolicy says when the sidecar reports ready.
type ReadinessPolicy string

const (
	// ReadinessConnected is ready only while the upstream link is CONNECTED.
	ReadinessConnected ReadinessPolicy = "connected"
	// ReadinessDegraded is ready while CONNECTED, and while RECONNECTING after
	// having been CONNECTED since start: the cache can still serve validates.
	// A sidecar that has not reached upstream since start is also ready while
	// RECONNECTING or FAILED if it restored servable entries from its
	// snapshot (snapshot.path).
	ReadinessDegraded ReadinessPolicy = "degraded"
	// ReadinessAlways is ready while the listener is up.
	ReadinessAlways ReadinessPolicy = "always"
)

// Readiness is the readiness section.
type Readiness struct {
	// Policy is connected, degraded or always. Default degraded.
	Policy ReadinessPolicy `yaml:"policy"`
}

// ValidateMode says who decides whether an ID is valid.
type ValidateMode string

const (
	// ValidateModeUpstream asks upstream on a cache miss (the default).
	ValidateModeUpstream ValidateMode = "upstream"
	// ValidateModeLocal trusts the local format check alone: a well-formed ID
	// is valid and upstream is never asked.
	ValidateModeLocal ValidateMode = "local"
)

// Validate is the validate section.
type Validate struct {
	// Mode is upstream or local (see ValidateMode). Default upstream.
	Mode ValidateMode `yaml:"mode"`
	// TTL is how long a "valid" verdict is served from the cache. Default 10m.
	TTL time.Duration `yaml:"ttl"`
	// NegativeTTL is how long a "not valid" verdict is served from the cache;
	// at most TTL. Default 1m.
	NegativeTTL time.Duration `yaml:"negativeTtl"`
	// StaleIfError is how old a cached verdict may be and still be served,
	// marked stale, while upstream fails; at least TTL. Default 24h.
	StaleIfError time.Duration `yaml:"staleIfError"`
}

// Policy returns the cache freshness policy of the section.
func (v Validate) Policy() cache.Policy {
	return cache.Policy{TTL: v.TTL, NegativeTTL: v.NegativeTTL, StaleIfError: v.StaleIfError}
}

// Shutdown is the shutdown section.
type Shutdown struct {
	// DrainTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM; at most 5m. Default 20s.
	DrainTimeout time.Duration `yaml:"drainTimeout"`
}

// Limits is the limits section.
type Limits struct {
	// MaxBodyBytes caps a request body, in bytes, 1 KiB to 16 MiB. Default 65536.
	MaxBodyBytes int `yaml:"maxBodyBytes"`
	// MaxMetadataBytes caps the metadata of one mint, in bytes, at most
	// MaxBodyBytes. Default 10240.
	MaxMetadataBytes int `yaml:"maxMetadataBytes"`
	// MaxBatch caps the number of IDs in one batch request, 1 to 1000. Default 100.
	MaxBatch int `yaml:"maxBatch"`
}

// Log is the log section.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
	// Access writes one log line per request (type "access"). Default true.
	Access bool `yaml:"access"`
}

// SlogLevel returns Level as a slog.Level; an unknown level gives slog.LevelInfo.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Defaults returns the config with every default filled in; it is what an
// empty mapping ("{}") in the file gives.
func Defaults() Config {
	return Config{
		Listen:   "127.0.0.1:8787",
		Upstream: upstream.Defaults(),
		Format:   chittyid.FormatOfficial,
		Validation: Validate{
			Mode:         ValidateModeUpstream,
			TTL:          10 * time.Minute,
			NegativeTTL:  time.Minute,
			StaleIfError: 24 * time.Hour,
		},
		Cache:     cache.Defaults(),
		Shutdown:  Shutdown{DrainTimeout: 20 * time.Second},
		Limits:    Limits{MaxBodyBytes: 64 << 10, MaxMetadataBytes: 10 << 10, MaxBatch: 100},
		Log:       Log{Level: "info", Format: "json", Access: true},
		Health:    fsm.Defaults(),
		Readiness: Readiness{Policy: ReadinessDegraded},
		Reload:    Reload{Interval: 2 * time.Second},
		RateLimit: defaultRateLimit(),
		Snapshot:  Snapshot{Interval: time.Minute},
		Fleet:     fleet.Defaults(),
		Tracing:   tracing.Defaults(),
	}
}

// Summary returns one line for `check-config`: the listen address, the
// upstream URL (its password redacted), dialect, format, validate mode,
// whether a token is configured, the TLS trust (off for http://,
// system-roots or caFile, +client-cert with mTLS), the egress proxy (env,
// none, or its URL with credentials redacted) and insecure=allowed when
// upstream.allowInsecure is in force. It never contains the token or the
// proxy's credentials.
func (c *Config) Summary() string {
	s := fmt.Sprintf("listen=%s upstream=%s dialect=%s format=%s validate=%s token=%s tls=%s proxy=%s",
		c.Listen, c.Upstream.RedactedURL(), c.Upstream.Dialect, c.Format, c.Validation.Mode, c.tokenState(),
		c.tlsState(), c.proxyState())
	if c.Upstream.AllowInsecure && c.Upstream.InsecureWarning() != "" {
		s += " insecure=allowed"
	}
	return s
}

func (c *Config) tlsState() string {
	if u, err := url.Parse(c.Upstream.URL); err != nil || u.Scheme != "https" {
		return "off"
	}
	s := "system-roots"
	if c.Upstream.TLS.CAFile != "" {
		s = "caFile"
	}
	if c.Upstream.TLS.CertFile != "" {
		s += "+client-cert"
	}
	return s
}

func (c *Config) proxyState() string {
	if c.Upstream.Proxy == "" {
		return "env"
	}
	return c.Upstream.Proxy.String()
}

// TokenWarning returns one line for check-config when the sidecar holds
// no upstream token: callers' own Authorization headers are then forwarded
// upstream. It returns "" when a token is configured.
func (c *Config) TokenWarning() string {
	if c.Upstream.Token != "" {
		return ""
	}
	return "no upstream token is configured (upstream.tokenFile, upstream.token or CHITTY_ID_TOKEN): callers' own Authorization headers will be forwarded upstream, and a caller that sends none gets 401 UNAUTHORIZED"
}

func (c *Config) tokenState() string {
	switch {
	case c.Upstream.Token == "":
		return "none"
	case c.Upstream.TokenFile != "":
		return "from-file"
	}
	return "set"
}
