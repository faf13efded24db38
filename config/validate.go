package config

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// Bounds of the settings this package owns.
const (
	maxDrainTimeout = 5 * time.Minute
	minBodyBytes    = 1 << 10
	maxBodyBytes    = 16 << 20
	maxBatchLimit   = 1000
	minSnapshotGap  = 100 * time.Millisecond
	maxSnapshotGap  = 24 * time.Hour
	logLevelWords   = "debug, info, warn or error"
)

// Validate reports every problem of the config, each naming its dotted key:
// the upstream and cache sections' own problems and those of this package's
// sections, joined with errors.Join. It returns nil if there is none.
func (c *Config) Validate() error {
	return errors.Join(
		c.validateListen(),
		c.Upstream.Validate(),
		c.validateFormat(),
		c.Validation.validate(),
		c.Cache.Validate(),
		c.Shutdown.validate(),
		c.Limits.validate(),
		c.Log.validate(),
		c.Health.Validate(),
		c.Readiness.validate(),
		c.Reload.validate(),
		c.RateLimit.validate(c.Limits.MaxBatch),
		c.validateMetrics(),
		c.Snapshot.validate(),
		c.Security.validate(c.Listen),
		c.Fleet.Validate(),
		c.validateFleetRate(),
		c.Tracing.Validate(),
	)
}

// validateFleetRate refuses a fleet mint limit without the fleet tier,
// which would be ignored.
func (c *Config) validateFleetRate() error {
	if c.RateLimit.Mint.FleetPerMinute > 0 && !c.Fleet.Enabled() {
		return field.Errorf("rateLimit.mint.fleetPerMinute", "is set (%d) but fleet.redis.addrs is empty: the fleet limit lives in Redis", c.RateLimit.Mint.FleetPerMinute).With("fleet.redis.addrs")
	}
	return nil
}

func (c *Config) validateListen() error { return validateAddr("listen", c.Listen) }

func (c *Config) validateMetrics() error {
	if err := errors.Join(validateHosts("metrics.allowedHosts", c.Metrics.AllowedHosts)...); err != nil {
		return err
	}
	if c.Metrics.Listen == "" {
		return nil
	}
	if err := validateAddr("metrics.listen", c.Metrics.Listen); err != nil {
		return err
	}
	if c.Metrics.Listen == c.Listen && !strings.HasSuffix(c.Listen, ":0") { // port 0: two free ports
		return field.Errorf("metrics.listen", "must differ from listen, both are %q", c.Listen).With("listen")
	}
	return nil
}

// validateAddr checks a host:port listen address named key.
func validateAddr(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return field.Errorf(key, "must be host:port, got %q", addr)
	}
	var errs []error
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, field.Errorf(key, "port must be a number from 0 to 65535, got %q", port))
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
		errs = append(errs, field.Errorf(key, "host must be an IP address or localhost, got %q", host))
	}
	return errors.Join(errs...)
}

func (c *Config) validateFormat() error {
	if c.Format != chittyid.FormatOfficial && c.Format != chittyid.FormatNumeric {
		return field.Errorf("format", "must be official or numeric, got %s", c.Format)
	}
	return nil
}

func (v Validate) validate() error {
	var errs field.Errors
	if v.Mode != ValidateModeUpstream && v.Mode != ValidateModeLocal {
		errs.Add("validate.mode", "must be upstream or local, got %q", v.Mode)
	}
	if v.TTL <= 0 {
		errs.Add("validate.ttl", "must be > 0, got %s", v.TTL)
	}
	if v.NegativeTTL <= 0 {
		errs.Add("validate.negativeTtl", "must be > 0, got %s", v.NegativeTTL)
	}
	if v.NegativeTTL > v.TTL {
		errs.Add("validate.negativeTtl", "must be <= validate.ttl (%s), got %s", v.TTL, v.NegativeTTL).With("validate.ttl")
	}
	if v.StaleIfError < v.TTL {
		errs.Add("validate.staleIfError", "must be >= validate.ttl (%s), got %s", v.TTL, v.StaleIfError).With("validate.ttl")
	}
	return errs.Join()
}

func (s Shutdown) validate() error {
	if s.DrainTimeout <= 0 || s.DrainTimeout > maxDrainTimeout {
		return field.Errorf("shutdown.drainTimeout", "must be > 0 and <= %s, got %s", maxDrainTimeout, s.DrainTimeout)
	}
	return nil
}

func (l Limits) validate() error {
	var errs field.Errors
	if l.MaxBodyBytes < minBodyBytes || l.MaxBodyBytes > maxBodyBytes {
		errs.Add("limits.maxBodyBytes", "must be between %d and %d, got %d", minBodyBytes, maxBodyBytes, l.MaxBodyBytes)
	}
	if l.MaxMetadataBytes < 1 || l.MaxMetadataBytes > l.MaxBodyBytes {
		errs.Add("limits.maxMetadataBytes", "must be between 1 and limits.maxBodyBytes (%d), got %d", l.MaxBodyBytes, l.MaxMetadataBytes).With("limits.maxBodyBytes")
	}
	if l.MaxBatch < 1 || l.MaxBatch > maxBatchLimit {
		errs.Add("limits.maxBatch", "must be between 1 and %d, got %d", maxBatchLimit, l.MaxBatch)
	}
	return errs.Join()
}

func (l Log) validate() error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, field.Errorf("log.level", "must be %s, got %q", logLevelWords, l.Level))
	}
	if l.Format != "json" && l.Format != "text" {
		errs = append(errs, field.Errorf("log.format", "must be json or text, got %q", l.Format))
	}
	return errors.Join(errs...)
}

func (r Readiness) validate() error {
	switch r.Policy {
	case ReadinessConnected, ReadinessDegraded, ReadinessAlways:
		return nil
	}
	return field.Errorf("readiness.policy", "must be connected, degraded or always, got %q", r.Policy)
}

func (r Reload) validate() error {
	if r.Interval < 100*time.Millisecond || r.Interval > time.Hour {
		return field.Errorf("reload.interval", "must be between 100ms and 1h, got %s", r.Interval)
	}
	return nil
}

func (s Snapshot) validate() error {
	var errs []error
	if s.Interval < minSnapshotGap || s.Interval > maxSnapshotGap {
		errs = append(errs, field.Errorf("snapshot.interval", "must be between %s and %s, got %s", minSnapshotGap, maxSnapshotGap, s.Interval))
	}
	if s.Path == "" {
		return errors.Join(errs...)
	}
	// The file system is not looked at here (a config may be checked on
	// another machine); only a path that cannot name a file is refused.
	switch base := filepath.Base(s.Path); {
	case strings.ContainsRune(s.Path, 0):
		errs = append(errs, field.Errorf("snapshot.path", "must not contain a NUL byte, got %q", s.Path))
	case strings.HasSuffix(s.Path, "/") || base == "." || base == ".." || base == "/":
		errs = append(errs, field.Errorf("snapshot.path", "must name a file, not a directory, got %q", s.Path))
	}
	return errors.Join(errs...)
}
