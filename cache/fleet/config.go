package fleet

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

// Bounds of the settings.
const (
	minTimeout   = time.Millisecond
	maxTimeout   = time.Second
	minLockTTL   = 100 * time.Millisecond
	maxLockTTL   = time.Minute
	maxKeyPrefix = 64
)

// Config is the fleet section of the sidecar's config file. The tier is
// off while Redis.Addrs is empty (see Enabled). New treats a zero KeyPrefix,
// Timeout or LockTTL as its default; the config file loader fills the
// defaults in before decoding, so there an explicit zero is an error.
//
// Which settings apply on reload and which need a restart: ReloadableKeys
// and RestartKeys; Tier.Reconfigure applies them.
type Config struct {
	// Redis says where the shared Redis (or Valkey) is and how to log in.
	Redis Redis `yaml:"redis"`
	// KeyPrefix starts every key the tier writes, so that several fleets
	// (or other applications) can share one Redis: 1 to 64 visible ASCII
	// characters without braces. Every sidecar of a fleet must use the same
	// one. Reloadable. Default "chittyid:".
	KeyPrefix string `yaml:"keyPrefix"`
	// Timeout bounds every call to Redis: the most the tier may add to a
	// request. 1ms to 1s. Reloadable. Default 25ms.
	Timeout time.Duration `yaml:"timeout"`
	// LockTTL is the life of the fleet-wide single-flight lock for one ID:
	// at most one upstream validate per ID per LockTTL across the fleet; a
	// sidecar that dies holding it delays the others this long at most.
	// 100ms to 1m, above Timeout. Reloadable. Default 2s.
	LockTTL time.Duration `yaml:"lockTtl"`
}

// Redis is the fleet.redis section.
type Redis struct {
	// Addrs are host:port addresses. One address: a standalone server
	// (or a proxy in front of one); several: nodes of a Redis Cluster (any
	// of them, the rest is discovered); with Sentinel.MasterName: the
	// sentinels. Empty means the fleet tier is off. Restart needed to
	// change. Default none.
	Addrs []string `yaml:"addrs"`
	// Sentinel, when MasterName is set, makes Addrs the sentinels to ask for
	// the master. Restart needed to change.
	Sentinel Sentinel `yaml:"sentinel"`
	// Username is the ACL user to log in as; empty means "default" when a
	// password is set. Applies to new connections on reload. Default none.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password (surrounding white space
	// trimmed), read at start and on every reload, like upstream.tokenFile:
	// a rotated password applies to new connections. Default none (no AUTH).
	PasswordFile string `yaml:"passwordFile"`
	// Password is the content of PasswordFile; the config loader fills it
	// in. It is not a key of the file.
	Password field.Secret `yaml:"-"`
	// DB is the database number SELECTed on each connection; a Cluster has
	// only 0. Restart needed to change. Default 0.
	DB int `yaml:"db"`
	// TLS encrypts the connections to Redis (and to the sentinels). Restart
	// needed to change; the files are read at start.
	TLS TLS `yaml:"tls"`
}

// Sentinel is the fleet.redis.sentinel section.
type Sentinel struct {
	// MasterName is the name of the master the sentinels monitor. Default
	// "" (no Sentinel). The sentinels get the same credentials as Redis: a
	// sentinel without a password takes them for the default user.
	MasterName string `yaml:"masterName"`
}

// TLS is the fleet.redis.tls section.
type TLS struct {
	// Enabled turns TLS on (TLS 1.2 or later). Default false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that may sign the server's
	// certificate. Default "": the system's roots.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that ask for one (tls-auth-clients). Both or neither.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name the server's certificate must carry. Default
	// "": the host of the address dialled.
	ServerName string `yaml:"serverName"`
}

// Defaults returns the fleet section with every default filled in: the
// tier is off (no addresses).
func Defaults() Config {
	return Config{KeyPrefix: "chittyid:", Timeout: 25 * time.Millisecond, LockTTL: 2 * time.Second}
}

// Enabled reports whether the tier is configured (Redis.Addrs is set).
func (c Config) Enabled() bool { return len(c.Redis.Addrs) > 0 }

// cluster reports whether Addrs name several Cluster nodes.
func (c Config) cluster() bool { return len(c.Redis.Addrs) > 1 && c.Redis.Sentinel.MasterName == "" }

// withDefaults returns c with each zero setting at its default.
func (c Config) withDefaults() Config {
	d := Defaults()
	if c.KeyPrefix == "" {
		c.KeyPrefix = d.KeyPrefix
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.LockTTL == 0 {
		c.LockTTL = d.LockTTL
	}
	return c
}

// Validate reports every problem of the section, each naming its dotted
// key (fleet.redis.addrs[1], fleet.timeout, …), joined with errors.Join. It
// reads no file.
func (c Config) Validate() error {
	var errs field.Errors
	for i, a := range c.Redis.Addrs {
		if err := checkAddr(a); err != nil {
			errs.Add(fmt.Sprintf("fleet.redis.addrs[%d]", i), "%s, got %q", err, a)
		} else if j := slices.Index(c.Redis.Addrs[:i], a); j >= 0 {
			errs.Add(fmt.Sprintf("fleet.redis.addrs[%d]", i), "repeats fleet.redis.addrs[%d] %q", j, a)
		}
	}
	errs = append(errs, c.Redis.validateOff(c.Enabled())...)
	if c.Redis.DB < 0 {
		errs.Add("fleet.redis.db", "must be >= 0, got %d", c.Redis.DB)
	} else if c.Redis.DB != 0 && c.cluster() {
		errs.Add("fleet.redis.db", "must be 0 with several fleet.redis.addrs (a Redis Cluster has only database 0), got %d", c.Redis.DB).With("fleet.redis.addrs")
	}
	if u := c.Redis.Username; u != "" && !visibleASCII(u) {
		errs.Add("fleet.redis.username", "must be visible ASCII characters without spaces")
	}
	if strings.ContainsRune(c.Redis.PasswordFile, 0) {
		errs.Add("fleet.redis.passwordFile", "must not contain a NUL byte")
	}
	errs = append(errs, c.Redis.TLS.validate()...)
	if p := c.KeyPrefix; p == "" || len(p) > maxKeyPrefix || !visibleASCII(p) || strings.ContainsAny(p, "{}") {
		errs.Add("fleet.keyPrefix", "must be 1 to %d visible ASCII characters without spaces or braces, got %q", maxKeyPrefix, p)
	}
	if c.Timeout < minTimeout || c.Timeout > maxTimeout {
		errs.Add("fleet.timeout", "must be between %s and %s, got %s", minTimeout, maxTimeout, c.Timeout)
	}
	switch {
	case c.LockTTL < minLockTTL || c.LockTTL > maxLockTTL:
		errs.Add("fleet.lockTtl", "must be between %s and %s, got %s", minLockTTL, maxLockTTL, c.LockTTL)
	case c.LockTTL <= c.Timeout && c.Timeout >= minTimeout && c.Timeout <= maxTimeout:
		errs.Add("fleet.lockTtl", "must be above fleet.timeout (%s), got %s", c.Timeout, c.LockTTL).With("fleet.timeout")
	}
	return errs.Join()
}

// validateOff refuses fleet.redis settings while the tier is off: they
// would be silently ignored.
func (r Redis) validateOff(enabled bool) []error {
	if enabled {
		return nil
	}
	var errs []error
	for _, s := range []struct {
		key string
		set bool
	}{
		{"fleet.redis.sentinel.masterName", r.Sentinel.MasterName != ""},
		{"fleet.redis.username", r.Username != ""},
		{"fleet.redis.passwordFile", r.PasswordFile != ""},
		{"fleet.redis.db", r.DB != 0},
		{"fleet.redis.tls.enabled", r.TLS.Enabled},
	} {
		if s.set {
			errs = append(errs, field.Errorf(s.key, "is set but fleet.redis.addrs is empty: the fleet tier is off").With("fleet.redis.addrs"))
		}
	}
	return errs
}

func (t TLS) validate() []error {
	var errs []error
	if !t.Enabled {
		for _, s := range []struct{ key, v string }{
			{"fleet.redis.tls.caFile", t.CAFile},
			{"fleet.redis.tls.certFile", t.CertFile},
			{"fleet.redis.tls.keyFile", t.KeyFile},
			{"fleet.redis.tls.serverName", t.ServerName},
		} {
			if s.v != "" {
				errs = append(errs, field.Errorf(s.key, "is set but fleet.redis.tls.enabled is false").With("fleet.redis.tls.enabled"))
			}
		}
		return errs
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, field.Errorf("fleet.redis.tls.certFile", "and fleet.redis.tls.keyFile go together: set both or neither").With("fleet.redis.tls.keyFile"))
	}
	return errs
}

// checkAddr accepts host:port with a non-empty host and a port from 1 to
// 65535.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("must be host:port")
	}
	if host == "" || strings.ContainsAny(host, " \t/") {
		return errors.New("must have a host name or IP address")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return errors.New("must have a port from 1 to 65535")
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// RestartKeys returns the keys whose new values apply only after a
// restart: they decide which servers the client connects to and how.
// Reconfigure keeps their running values; the config's restart table
// holds every one of them (a test of package config checks).
func RestartKeys() []string {
	return []string{
		"fleet.redis.addrs",
		"fleet.redis.sentinel.masterName",
		"fleet.redis.db",
		"fleet.redis.tls.enabled",
		"fleet.redis.tls.caFile",
		"fleet.redis.tls.certFile",
		"fleet.redis.tls.keyFile",
		"fleet.redis.tls.serverName",
	}
}

// ReloadableKeys returns the keys Reconfigure applies at once: the
// credentials to new connections, the rest to the next call.
func ReloadableKeys() []string {
	return []string{
		"fleet.redis.username",
		"fleet.redis.passwordFile",
		"fleet.keyPrefix",
		"fleet.timeout",
		"fleet.lockTtl",
	}
}
