package config

import (
	"log/slog"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mutate   func(c *Config)
		wantErrs []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"listen localhost", func(c *Config) { c.Listen = "localhost:8787" }, nil},
		{"listen IPv6", func(c *Config) { c.Listen = "[::1]:8787" }, nil},
		{"listen any port", func(c *Config) { c.Listen = "127.0.0.1:0" }, nil},
		{"listen all interfaces", func(c *Config) { c.Listen = "0.0.0.0:8787" }, []string{"listen \"0.0.0.0:8787\" is not a loopback address (127.0.0.0/8, ::1, localhost): anything that reaches it could spend the upstream token; set security.allowRemote: true"}},
		{"listen all interfaces allowed", func(c *Config) { c.Listen, c.Security.AllowRemote = "0.0.0.0:8787", true }, nil},
		{"listen on another loopback address", func(c *Config) { c.Listen = "127.0.0.2:8787" }, nil},
		{"listen on ::1", func(c *Config) { c.Listen = "[::1]:8787" }, nil},
		{"allowed hosts", func(c *Config) {
			c.Security.AllowedHosts = []string{"sidecar.local", "10.0.0.7", "[fd00::1]", "fd00::2"}
		}, nil},
		{"allowed host with port", func(c *Config) { c.Security.AllowedHosts = []string{"ok.example", "sidecar.local:8787"} }, []string{"security.allowedHosts[1] must be a host name"}},
		{"allowed host empty", func(c *Config) { c.Security.AllowedHosts = []string{""} }, []string{"security.allowedHosts[0]"}},
		{"metrics allowed hosts", func(c *Config) { c.Metrics.AllowedHosts = []string{"sidecar-metrics.apps.svc", "10.0.0.7"} }, nil},
		{"metrics allowed host with scheme", func(c *Config) { c.Metrics.AllowedHosts = []string{"http://x"} }, []string{"metrics.allowedHosts[0] must be a host name"}},
		{"allowed origins", func(c *Config) { c.Security.AllowedOrigins = []string{"https://app.example", "http://localhost:3000"} }, nil},
		{"allowed origin with path", func(c *Config) { c.Security.AllowedOrigins = []string{"https://app.example/x"} }, []string{"security.allowedOrigins[0] must be scheme://host[:port] with no path"}},
		{"allowed origin without scheme", func(c *Config) { c.Security.AllowedOrigins = []string{"app.example"} }, []string{"security.allowedOrigins[0]"}},
		{"allowed origin ftp", func(c *Config) { c.Security.AllowedOrigins = []string{"ftp://app.example"} }, []string{"must start with http:// or https://"}},
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, []string{`listen must be host:port, got "127.0.0.1"`}},
		{"listen named port", func(c *Config) { c.Listen = "127.0.0.1:http" }, []string{`listen port must be a number from 0 to 65535, got "http"`}},
		{"listen port too big", func(c *Config) { c.Listen = "127.0.0.1:65536" }, []string{`listen port must be a number`}},
		{"listen host name", func(c *Config) { c.Listen = "sidecar.local:8787" }, []string{`listen host must be an IP address or localhost, got "sidecar.local"`}},
		{"listen empty host", func(c *Config) { c.Listen = ":8787" }, []string{`listen host must be an IP address or localhost, got ""`}},
		{"zero format", func(c *Config) { c.Format = 0 }, []string{"format must be official or numeric, got Format(0)"}},
		{"zero ttls", func(c *Config) { c.Validation.TTL, c.Validation.NegativeTTL = 0, 0 }, []string{
			"validate.ttl must be > 0, got 0s", "validate.negativeTtl must be > 0, got 0s",
		}},
		{"negativeTtl equal to ttl", func(c *Config) { c.Validation.NegativeTTL = c.Validation.TTL }, nil},
		{"staleIfError equal to ttl", func(c *Config) { c.Validation.StaleIfError = c.Validation.TTL }, nil},
		{"staleIfError under ttl", func(c *Config) { c.Validation.StaleIfError = time.Minute }, []string{
			"validate.staleIfError must be >= validate.ttl (10m0s), got 1m0s",
		}},
		{"drain zero", func(c *Config) { c.Shutdown.DrainTimeout = 0 }, []string{"shutdown.drainTimeout must be > 0 and <= 5m0s, got 0s"}},
		{"drain at most", func(c *Config) { c.Shutdown.DrainTimeout = 5 * time.Minute }, nil},
		{"limits at bounds", func(c *Config) { c.Limits = Limits{MaxBodyBytes: 1024, MaxMetadataBytes: 1024, MaxBatch: 1000} }, nil},
		{"limits upper body bound", func(c *Config) { c.Limits.MaxBodyBytes = 16 << 20 }, nil},
		{"limits over", func(c *Config) {
			c.Limits = Limits{MaxBodyBytes: 16<<20 + 1, MaxMetadataBytes: 16<<20 + 2, MaxBatch: 0}
		}, []string{
			"limits.maxBodyBytes must be between 1024 and 16777216, got 16777217",
			"limits.maxMetadataBytes must be between 1 and limits.maxBodyBytes (16777217), got 16777218",
			"limits.maxBatch must be between 1 and 1000, got 0",
		}},
		{"log words are case-sensitive", func(c *Config) { c.Log = Log{Level: "INFO", Format: "JSON"} }, []string{
			`log.level must be debug, info, warn or error, got "INFO"`, `log.format must be json or text, got "JSON"`,
		}},
		{"snapshot at bounds", func(c *Config) { c.Snapshot = Snapshot{Path: "snap.bin", Interval: 100 * time.Millisecond} }, nil},
		{"snapshot at upper bound", func(c *Config) { c.Snapshot = Snapshot{Path: "/data/snap.bin", Interval: 24 * time.Hour} }, nil},
		{"snapshot interval checked without a path", func(c *Config) { c.Snapshot.Interval = 0 }, []string{
			"snapshot.interval must be between 100ms and 24h0m0s, got 0s",
		}},
		{"snapshot interval too long", func(c *Config) { c.Snapshot.Interval = 25 * time.Hour }, []string{"snapshot.interval must be between"}},
		{"snapshot path not a file", func(c *Config) { c.Snapshot.Path = "/data/.." }, []string{`snapshot.path must name a file, not a directory, got "/data/.."`}},
		{"snapshot path root", func(c *Config) { c.Snapshot.Path = "/" }, []string{`snapshot.path must name a file`}},
		{"snapshot path NUL", func(c *Config) { c.Snapshot.Path = "/data/a\x00b" }, []string{`snapshot.path must not contain a NUL byte`}},
		{"leaf sections are validated", func(c *Config) { c.Upstream.Timeout = 0; c.Cache.MaxSizeMB = 0 }, []string{
			"upstream.timeout must be > 0, got 0s", "cache.maxSizeMB must be >= 2, got 0",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Defaults()
			tc.mutate(&c)
			checkErrs(t, c.Validate(), tc.wantErrs)
		})
	}
}

func TestSlogLevel(t *testing.T) {
	t.Parallel()
	for level, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "": slog.LevelInfo,
	} {
		if got := (Log{Level: level}).SlogLevel(); got != want {
			t.Errorf("Log{Level: %q}.SlogLevel() = %v, want %v", level, got, want)
		}
	}
}

func TestValidatePolicy(t *testing.T) {
	t.Parallel()
	v := Validate{TTL: time.Minute, NegativeTTL: time.Second, StaleIfError: time.Hour}
	want := cache.Policy{TTL: time.Minute, NegativeTTL: time.Second, StaleIfError: time.Hour}
	if got := v.Policy(); got != want {
		t.Errorf("Policy() = %+v, want %+v", got, want)
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    func() Config
		want string
	}{
		{"defaults", Defaults, "listen=127.0.0.1:8787 upstream=https://id.chitty.cc/v1 dialect=client-v1 format=official validate=upstream token=none tls=system-roots proxy=env"},
		{"token set, password in URL", func() Config {
			c := Defaults()
			c.Upstream.URL = "https://u:pw@id.example/v1"
			c.Upstream.Token = "t"
			return c
		}, "listen=127.0.0.1:8787 upstream=https://u:xxxxx@id.example/v1 dialect=client-v1 format=official validate=upstream token=set tls=system-roots proxy=env"},
		{"token from file", func() Config {
			c := Defaults()
			c.Upstream.TokenFile, c.Upstream.Token = "/run/token", "t"
			c.Validation.Mode, c.Format = ValidateModeLocal, chittyid.FormatNumeric
			return c
		}, "listen=127.0.0.1:8787 upstream=https://id.chitty.cc/v1 dialect=client-v1 format=numeric validate=local token=from-file tls=system-roots proxy=env"},
		{"private CA, mTLS, proxy with credentials", func() Config {
			c := Defaults()
			c.Upstream.TLS = upstream.TLSConfig{CAFile: "/etc/ca.pem", CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem", MinVersion: "1.3"}
			c.Upstream.Proxy = "http://alice:s3cret@proxy.corp:3128"
			return c
		}, "listen=127.0.0.1:8787 upstream=https://id.chitty.cc/v1 dialect=client-v1 format=official validate=upstream token=none tls=caFile+client-cert proxy=http://[redacted]@proxy.corp:3128"},
		{"plain http allowed", func() Config {
			c := Defaults()
			c.Upstream.URL, c.Upstream.Token, c.Upstream.AllowInsecure, c.Upstream.Proxy = "http://id.internal:8080/v1", "t", true, upstream.ProxyNone
			return c
		}, "listen=127.0.0.1:8787 upstream=http://id.internal:8080/v1 dialect=client-v1 format=official validate=upstream token=set tls=off proxy=none insecure=allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.c()
			if got := c.Summary(); got != tc.want {
				t.Errorf("Summary() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
