package fsm

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("Defaults().Validate() = %v", err)
	}
	if got := (Config{}).withDefaults(); got != Defaults() {
		t.Fatalf("zero Config withDefaults = %+v, want %+v", got, Defaults())
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings; empty means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"zero interval", func(c *Config) { c.Interval = 0 }, []string{"health.interval must be > 0"}},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, []string{"health.timeout must be > 0"}},
		{"timeout over interval", func(c *Config) { c.Timeout = time.Minute }, []string{"health.timeout (1m0s) must be <= health.interval (30s)"}},
		{"zero base delay", func(c *Config) { c.Reconnect.BaseDelay = 0 }, []string{"health.reconnect.baseDelay must be > 0"}},
		{"max below base", func(c *Config) { c.Reconnect.MaxDelay = 500 * time.Millisecond }, []string{"health.reconnect.maxDelay (500ms) must be >= health.reconnect.baseDelay (1s)"}},
		{"zero failures", func(c *Config) { c.FailuresToReconnect = 0 }, []string{"health.failuresToReconnect must be >= 1, got 0"}},
		{"zero attempts", func(c *Config) { c.MaxReconnectAttempts = -1 }, []string{"health.maxReconnectAttempts must be >= 1, got -1"}},
		{"every problem at once", func(c *Config) { *c = Config{} }, []string{
			"health.interval", "health.timeout", "health.reconnect.baseDelay", "health.reconnect.maxDelay",
			"health.failuresToReconnect", "health.maxReconnectAttempts",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Defaults()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
