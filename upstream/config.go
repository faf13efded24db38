package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Dialect is the protocol the upstream speaks.
type Dialect string

const (
	// DialectClientV1 is the JS client 1.0.0 contract: POST {url}/mint,
	// POST {url}/mint/batch, GET {url}/validate/{id}, GET {url}/health.
	DialectClientV1 Dialect = "client-v1"
	// DialectWorker is what the newest public worker routes: POST /v1/mint
	// with entityType, POST /api/validate, GET /health at the host root, no
	// batch route.
	DialectWorker Dialect = "worker"
)

// Secret is a string that never prints: fmt, slog, JSON and YAML encoders see
// "[redacted]" (or "" when it is empty). Use Reveal to get the value.
type Secret string

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoders from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret's value, for the Authorization header only.
func (s Secret) Reveal() string { return string(s) }

// Config is the upstream section of the sidecar's config file. Zero values
// mean the documented default (see Defaults).
type Config struct {
	// URL is the ChittyID base URL. client-v1: the API base including /v1;
	// worker: the worker's origin (a path is ignored). Default https://id.chitty.cc/v1.
	URL string `yaml:"url"`
	// Dialect is client-v1 (default) or worker.
	Dialect Dialect `yaml:"dialect"`
	// TokenFile is a file holding the upstream bearer token, read at start and
	// on every reload. It wins over CHITTY_ID_TOKEN and Token. Default none.
	TokenFile string `yaml:"tokenFile"`
	// Token is the upstream bearer token written in the file itself;
	// discouraged. After config.Load it holds the effective token.
	Token Secret `yaml:"token"`
	// Timeout bounds one upstream attempt. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// MintTimeout bounds a whole mint, retries included. Default 10s.
	MintTimeout time.Duration `yaml:"mintTimeout"`
	// LateAnswerWindow is how long after a mint attempt's deadline its
	// answer is still read, so that IDs upstream minted for a caller that
	// was already told 504 are logged as orphaned rather than lost. Each
	// such wait holds one upstream connection. Default 10s.
	LateAnswerWindow time.Duration `yaml:"lateAnswerWindow"`
	// ValidateTimeout bounds one upstream validate. Default 5s.
	ValidateTimeout time.Duration `yaml:"validateTimeout"`
	// MaxInFlight caps concurrent upstream mints; others wait within their
	// own deadline. Default 64.
	MaxInFlight int `yaml:"maxInFlight"`
	// IdempotentMint says upstream honours Idempotency-Key, so a mint whose
	// outcome is unknown (timeout, broken connection) may be retried. The
	// worker dialect refuses it: the worker does not forward the key to its
	// mint backend. Default false.
	IdempotentMint bool `yaml:"idempotentMint"`
	// Retry is the mint retry policy.
	Retry RetryConfig `yaml:"retry"`
	// Breaker is the circuit breaker in front of upstream mints.
	Breaker BreakerConfig `yaml:"breaker"`
}

// RetryConfig is upstream.retry: full-jitter exponential backoff.
type RetryConfig struct {
	// MaxAttempts counts the first try; 1 means no retry. Default 3.
	MaxAttempts int `yaml:"maxAttempts"`
	// BaseDelay is the first backoff's upper bound; it doubles per retry. Default 100ms.
	BaseDelay time.Duration `yaml:"baseDelay"`
	// MaxDelay caps one backoff. Default 2s.
	MaxDelay time.Duration `yaml:"maxDelay"`
}

// BreakerConfig is upstream.breaker.
type BreakerConfig struct {
	// Failures is how many consecutive failed attempts open the breaker. Default 5.
	Failures int `yaml:"failures"`
	// OpenTimeout is how long the breaker stays open after it trips, before
	// a trial. Default 30s.
	OpenTimeout time.Duration `yaml:"openTimeout"`
	// MaxOpenTimeout caps the open period, which doubles after every failed
	// trial; when set, at least OpenTimeout. Zero means the default: 5m, or
	// OpenTimeout if that is longer (see MaxOpen).
	MaxOpenTimeout time.Duration `yaml:"maxOpenTimeout"`
	// HalfOpenProbes is how many trial requests may run at once once the
	// open period is over; one success closes the breaker, one failure opens
	// it again. Default 1.
	HalfOpenProbes int `yaml:"halfOpenProbes"`
}

// DefaultMaxOpenTimeout is upstream.breaker.maxOpenTimeout when not set
// (and openTimeout is not longer).
const DefaultMaxOpenTimeout = 5 * time.Minute

// MaxOpen returns the cap of the open period: MaxOpenTimeout, or the
// default when it is zero, and never less than OpenTimeout.
func (c BreakerConfig) MaxOpen() time.Duration {
	m := c.MaxOpenTimeout
	if m <= 0 {
		m = DefaultMaxOpenTimeout
	}
	return max(m, c.OpenTimeout)
}

// Defaults returns the upstream section with every default filled in
// (upstream.breaker.maxOpenTimeout stays zero: its default depends on
// openTimeout, see BreakerConfig.MaxOpen).
func Defaults() Config {
	return Config{
		URL:              "https://id.chitty.cc/v1",
		Dialect:          DialectClientV1,
		Timeout:          5 * time.Second,
		MintTimeout:      10 * time.Second,
		LateAnswerWindow: 10 * time.Second,
		ValidateTimeout:  5 * time.Second,
		MaxInFlight:      64,
		Retry:            RetryConfig{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second},
		Breaker:          BreakerConfig{Failures: 5, OpenTimeout: 30 * time.Second, HalfOpenProbes: 1},
	}
}

// Validate reports every problem of the section, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u, err := url.Parse(c.URL); err != nil {
		bad("upstream.url must be an http or https URL with a host: it does not parse")
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("upstream.url must be an http or https URL with a host, got %q", u.Redacted())
	}
	if c.Dialect != DialectClientV1 && c.Dialect != DialectWorker {
		bad("upstream.dialect must be client-v1 or worker, got %q", c.Dialect)
	}
	positive := []struct {
		key string
		d   time.Duration
	}{
		{"upstream.timeout", c.Timeout},
		{"upstream.mintTimeout", c.MintTimeout},
		{"upstream.lateAnswerWindow", c.LateAnswerWindow},
		{"upstream.validateTimeout", c.ValidateTimeout},
		{"upstream.retry.baseDelay", c.Retry.BaseDelay},
		{"upstream.retry.maxDelay", c.Retry.MaxDelay},
		{"upstream.breaker.openTimeout", c.Breaker.OpenTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad("%s must be > 0, got %s", p.key, p.d)
		}
	}
	if c.Breaker.MaxOpenTimeout < 0 {
		bad("upstream.breaker.maxOpenTimeout must be >= 0 (0: the default), got %s", c.Breaker.MaxOpenTimeout)
	} else if c.Breaker.MaxOpenTimeout != 0 && c.Breaker.MaxOpenTimeout < c.Breaker.OpenTimeout {
		bad("upstream.breaker.maxOpenTimeout (%s) must be >= upstream.breaker.openTimeout (%s)", c.Breaker.MaxOpenTimeout, c.Breaker.OpenTimeout)
	}
	if c.IdempotentMint && c.Dialect == DialectWorker {
		bad("upstream.idempotentMint must be false with upstream.dialect \"worker\": the worker does not forward Idempotency-Key to its mint backend, so a retried mint would mint a second ID")
	}
	if c.Retry.MaxDelay < c.Retry.BaseDelay {
		bad("upstream.retry.maxDelay (%s) must be >= upstream.retry.baseDelay (%s)", c.Retry.MaxDelay, c.Retry.BaseDelay)
	}
	if c.MaxInFlight < 1 {
		bad("upstream.maxInFlight must be >= 1, got %d", c.MaxInFlight)
	}
	if c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > 10 {
		bad("upstream.retry.maxAttempts must be between 1 and 10, got %d", c.Retry.MaxAttempts)
	}
	if c.Breaker.Failures < 1 {
		bad("upstream.breaker.failures must be >= 1, got %d", c.Breaker.Failures)
	}
	if c.Breaker.HalfOpenProbes < 1 {
		bad("upstream.breaker.halfOpenProbes must be >= 1, got %d", c.Breaker.HalfOpenProbes)
	}
	return errors.Join(errs...)
}
