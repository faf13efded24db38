package fsm

import (
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

// Config is the health section of the sidecar's config file: how the
// upstream link is polled and when it is given up on. Zero values mean the
// documented default (see Defaults).
type Config struct {
	// Interval is the time between polls while CONNECTED, jittered ±10%.
	// Default 30s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one poll. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// FailuresToReconnect is how many failed polls in a row move CONNECTED to
	// RECONNECTING. Default 1.
	FailuresToReconnect int `yaml:"failuresToReconnect"`
	// MaxReconnectAttempts is how many failed polls in RECONNECTING move it to
	// FAILED. Default 5.
	MaxReconnectAttempts int `yaml:"maxReconnectAttempts"`
	// Reconnect is the backoff between polls while RECONNECTING and FAILED.
	Reconnect ReconnectConfig `yaml:"reconnect"`
}

// ReconnectConfig is health.reconnect: exponential backoff between polls
// while RECONNECTING; FAILED polls every MaxDelay. Delays are jittered ±10%.
type ReconnectConfig struct {
	// BaseDelay is the wait before the first reconnect poll; it doubles after
	// each failed one. Default 1s.
	BaseDelay time.Duration `yaml:"baseDelay"`
	// MaxDelay caps the reconnect backoff and is FAILED's poll interval.
	// Default 60s.
	MaxDelay time.Duration `yaml:"maxDelay"`
}

// Defaults returns the health section with every default filled in.
func Defaults() Config {
	return Config{
		Interval:             30 * time.Second,
		Timeout:              5 * time.Second,
		FailuresToReconnect:  1,
		MaxReconnectAttempts: 5,
		Reconnect:            ReconnectConfig{BaseDelay: time.Second, MaxDelay: 60 * time.Second},
	}
}

// Validate reports every problem of the section, each naming its key.
func (c Config) Validate() error {
	var errs field.Errors
	positive := []struct {
		key string
		d   time.Duration
	}{
		{"health.interval", c.Interval},
		{"health.timeout", c.Timeout},
		{"health.reconnect.baseDelay", c.Reconnect.BaseDelay},
		{"health.reconnect.maxDelay", c.Reconnect.MaxDelay},
	}
	for _, p := range positive {
		if p.d <= 0 {
			errs.Add(p.key, "must be > 0, got %s", p.d)
		}
	}
	if c.Timeout > c.Interval {
		errs.Add("health.timeout", "(%s) must be <= health.interval (%s)", c.Timeout, c.Interval).With("health.interval")
	}
	if c.Reconnect.MaxDelay < c.Reconnect.BaseDelay {
		errs.Add("health.reconnect.maxDelay", "(%s) must be >= health.reconnect.baseDelay (%s)",
			c.Reconnect.MaxDelay, c.Reconnect.BaseDelay).With("health.reconnect.baseDelay")
	}
	if c.FailuresToReconnect < 1 {
		errs.Add("health.failuresToReconnect", "must be >= 1, got %d", c.FailuresToReconnect)
	}
	if c.MaxReconnectAttempts < 1 {
		errs.Add("health.maxReconnectAttempts", "must be >= 1, got %d", c.MaxReconnectAttempts)
	}
	return errs.Join()
}

// withDefaults returns c with every zero or negative field replaced by its
// default, so a Lifecycle never spins on a zero delay.
func (c Config) withDefaults() Config {
	d := Defaults()
	fill := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&c.Interval, d.Interval)
	fill(&c.Timeout, d.Timeout)
	fill(&c.Reconnect.BaseDelay, d.Reconnect.BaseDelay)
	fill(&c.Reconnect.MaxDelay, max(d.Reconnect.MaxDelay, c.Reconnect.BaseDelay))
	if c.FailuresToReconnect < 1 {
		c.FailuresToReconnect = d.FailuresToReconnect
	}
	if c.MaxReconnectAttempts < 1 {
		c.MaxReconnectAttempts = d.MaxReconnectAttempts
	}
	return c
}
