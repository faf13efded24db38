package fleet

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	on := func(mod func(*Config)) Config {
		c := Defaults()
		c.Redis.Addrs = []string{"redis:6379"}
		mod(c.ptr())
		return c
	}
	off := func(mod func(*Config)) Config {
		c := Defaults()
		mod(c.ptr())
		return c
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr []string // each must appear; none means valid
	}{
		{"defaults: off", Defaults(), nil},
		{"one address", on(func(*Config) {}), nil},
		{"cluster", on(func(c *Config) { c.Redis.Addrs = []string{"10.0.0.1:6379", "10.0.0.2:6379", "[::1]:6380"} }), nil},
		{"sentinel with a db", on(func(c *Config) {
			c.Redis.Addrs = []string{"s1:26379", "s2:26379"}
			c.Redis.Sentinel.MasterName = "mymaster"
			c.Redis.DB = 3
		}), nil},
		{"tls with everything", on(func(c *Config) {
			c.Redis.TLS = TLS{Enabled: true, CAFile: "/ca", CertFile: "/c", KeyFile: "/k", ServerName: "redis"}
		}), nil},
		{"bad addresses, every one named", on(func(c *Config) { c.Redis.Addrs = []string{"redis:6379", "redis", ":6379", "redis:0", "redis:6379"} }),
			[]string{"fleet.redis.addrs[1] must be host:port", "fleet.redis.addrs[2] must have a host", "fleet.redis.addrs[3] must have a port", "fleet.redis.addrs[4] repeats fleet.redis.addrs[0]"}},
		{"db in a cluster", on(func(c *Config) { c.Redis.Addrs = []string{"a:1", "b:1"}; c.Redis.DB = 1 }), []string{"fleet.redis.db must be 0 with several"}},
		{"negative db", on(func(c *Config) { c.Redis.DB = -1 }), []string{"fleet.redis.db must be >= 0"}},
		{"username with a space", on(func(c *Config) { c.Redis.Username = "a b" }), []string{"fleet.redis.username"}},
		{"cert without key", on(func(c *Config) { c.Redis.TLS = TLS{Enabled: true, CertFile: "/c"} }), []string{"fleet.redis.tls.certFile and fleet.redis.tls.keyFile go together"}},
		{"tls files without tls", on(func(c *Config) { c.Redis.TLS = TLS{CAFile: "/ca", ServerName: "x"} }),
			[]string{"fleet.redis.tls.caFile is set but fleet.redis.tls.enabled is false", "fleet.redis.tls.serverName is set"}},
		{"redis settings while off", off(func(c *Config) {
			c.Redis.PasswordFile = "/pw"
			c.Redis.Sentinel.MasterName = "m"
			c.Redis.TLS.Enabled = true
		}), []string{"fleet.redis.passwordFile is set but fleet.redis.addrs is empty", "fleet.redis.sentinel.masterName is set", "fleet.redis.tls.enabled is set"}},
		{"empty key prefix", on(func(c *Config) { c.KeyPrefix = "" }), []string{"fleet.keyPrefix must be 1 to 64"}},
		{"key prefix with a brace", on(func(c *Config) { c.KeyPrefix = "a{b}:" }), []string{"fleet.keyPrefix"}},
		{"key prefix too long", on(func(c *Config) { c.KeyPrefix = strings.Repeat("k", 65) }), []string{"fleet.keyPrefix"}},
		{"timeout zero", on(func(c *Config) { c.Timeout = 0 }), []string{"fleet.timeout must be between 1ms and 1s, got 0s"}},
		{"timeout too long", on(func(c *Config) { c.Timeout = 2 * time.Second }), []string{"fleet.timeout must be between"}},
		{"lock ttl too short", on(func(c *Config) { c.LockTTL = 10 * time.Millisecond }), []string{"fleet.lockTtl must be between 100ms and 1m0s"}},
		{"lock ttl not above the timeout", on(func(c *Config) { c.Timeout = 500 * time.Millisecond; c.LockTTL = 500 * time.Millisecond }),
			[]string{"fleet.lockTtl must be above fleet.timeout (500ms)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func (c *Config) ptr() *Config { return c }

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	d := Defaults()
	if d.Enabled() || d.KeyPrefix != "chittyid:" || d.Timeout != 25*time.Millisecond || d.LockTTL != 2*time.Second {
		t.Errorf("Defaults() = %+v", d)
	}
	if got := (Config{Redis: Redis{Addrs: []string{"r:1"}}}).withDefaults(); got.KeyPrefix != d.KeyPrefix || got.Timeout != d.Timeout || got.LockTTL != d.LockTTL {
		t.Errorf("zero values do not take the defaults: %+v", got)
	}
	if _, err := New(Config{Redis: Redis{Addrs: []string{"bad"}}}, Options{}); err == nil || !strings.Contains(err.Error(), "fleet.redis.addrs[0]") {
		t.Errorf("New with a bad address: %v", err)
	}
	if _, err := New(Config{Redis: Redis{Addrs: []string{"r:1"}, TLS: TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}}}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "fleet.redis.tls.caFile") {
		t.Errorf("New with a missing CA file: %v", err)
	}
}

// TestSecretNeverPrints: the password shows in no printed or encoded form
// of the config.
func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.Redis.Password = "hunter2"
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c.Redis.Password), string(j)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("the password shows: %s", s)
		}
	}
	if c.Redis.Password.Reveal() != "hunter2" || field.Secret("").String() != "" {
		t.Error("Reveal or the empty Secret is wrong")
	}
}

// TestReconfigure: the reloadable keys apply, the others keep their
// running values, and the two lists cover every key of the section.
func TestReconfigure(t *testing.T) {
	t.Parallel()
	base := Defaults()
	base.Redis.Addrs = []string{"127.0.0.1:1"} // never reached
	tr, err := New(base, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	next := base
	next.Redis.Username, next.Redis.Password = "fleet", "pw"
	next.KeyPrefix, next.Timeout, next.LockTTL = "other:", 50*time.Millisecond, 3*time.Second
	tr.Reconfigure(next)
	if s := tr.live.Load(); s.keyPrefix != "other:" || s.timeout != 50*time.Millisecond || s.lockTTL != 3*time.Second || s.username != "fleet" || s.password != "pw" {
		t.Errorf("live settings %+v", s)
	}
	next.Redis.Addrs = []string{"127.0.0.1:2"}
	next.Redis.Sentinel.MasterName = "m"
	next.Redis.DB = 2
	next.Redis.TLS = TLS{Enabled: true, CAFile: "a", CertFile: "b", KeyFile: "c", ServerName: "d"}
	tr.Reconfigure(next)
	if tr.cfg.Redis.Addrs[0] != "127.0.0.1:1" || tr.cfg.Redis.Sentinel.MasterName != "" || tr.cfg.Redis.DB != 0 || tr.cfg.Redis.TLS != (TLS{}) {
		t.Errorf("a restart-only setting changed while running: %+v", tr.cfg.Redis)
	}
	if s := tr.Status(); !slices.Equal(s.Addrs, base.Redis.Addrs) || s.MasterName != "" {
		t.Errorf("status after a reload of restart-only settings: %+v", s)
	}
	// Every leaf key of the section is in exactly one list.
	keys := append(RestartKeys(), ReloadableKeys()...)
	want := []string{"fleet.redis.addrs", "fleet.redis.sentinel.masterName", "fleet.redis.username", "fleet.redis.passwordFile",
		"fleet.redis.db", "fleet.redis.tls.enabled", "fleet.redis.tls.caFile", "fleet.redis.tls.certFile", "fleet.redis.tls.keyFile",
		"fleet.redis.tls.serverName", "fleet.keyPrefix", "fleet.timeout", "fleet.lockTtl"}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("RestartKeys + ReloadableKeys = %v, want %v", keys, want)
	}
}
