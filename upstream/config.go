package upstream

import (
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
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

// Config is the upstream section of the sidecar's config file. Zero values
// mean the documented default (see Defaults).
type Config struct {
	// URL is the ChittyID base URL. client-v1: the API base including /v1;
	// worker: the worker's origin (a path is ignored). No credentials and no
	// query. A plain http:// URL while a token is configured is refused
	// unless its host is loopback or AllowInsecure is set. Default
	// https://id.chitty.cc/v1.
	URL string `yaml:"url"`
	// Dialect is client-v1 (default) or worker.
	Dialect Dialect `yaml:"dialect"`
	// TokenFile is a file holding the upstream bearer token, read at start and
	// on every reload. It wins over CHITTY_ID_TOKEN and Token. Default none.
	TokenFile string `yaml:"tokenFile"`
	// Token is the upstream bearer token written in the file itself;
	// discouraged. After config.Load it holds the effective token.
	Token field.Secret `yaml:"token"`
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
	// TLS is how an https:// upstream is trusted (system roots, or CAFile)
	// and what client certificate is presented; https only.
	TLS TLSConfig `yaml:"tls"`
	// Proxy is the egress proxy: "" takes it from HTTPS_PROXY, HTTP_PROXY
	// and NO_PROXY (and their lower-case forms) as Go's net/http does,
	// "none" connects directly, and an http:// URL (credentials as its
	// userinfo) is used for every connection. Connections go through a
	// CONNECT tunnel. Default "".
	Proxy ProxyURL `yaml:"proxy"`
	// AllowInsecure permits a plain http:// URL to a host that is not
	// loopback while a token is configured, so the token crosses the
	// network unencrypted; the sidecar then warns at every start and
	// reload and in /health. It never turns off certificate checks.
	// Default false.
	AllowInsecure bool `yaml:"allowInsecure"`
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
		TLS:              TLSConfig{MinVersion: TLSVersion12},
	}
}

// Validate reports every problem of the section, each naming its key.
func (c Config) Validate() error {
	var errs field.Errors
	errs = append(errs, c.validateURL()...)
	if c.Dialect != DialectClientV1 && c.Dialect != DialectWorker {
		errs.Add("upstream.dialect", "must be client-v1 or worker, got %q", c.Dialect)
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
			errs.Add(p.key, "must be > 0, got %s", p.d)
		}
	}
	if c.Breaker.MaxOpenTimeout < 0 {
		errs.Add("upstream.breaker.maxOpenTimeout", "must be >= 0 (0: the default), got %s", c.Breaker.MaxOpenTimeout)
	} else if c.Breaker.MaxOpenTimeout != 0 && c.Breaker.MaxOpenTimeout < c.Breaker.OpenTimeout {
		errs.Add("upstream.breaker.maxOpenTimeout", "(%s) must be >= upstream.breaker.openTimeout (%s)", c.Breaker.MaxOpenTimeout, c.Breaker.OpenTimeout).With("upstream.breaker.openTimeout")
	}
	if c.IdempotentMint && c.Dialect == DialectWorker {
		errs.Add("upstream.idempotentMint", "must be false with upstream.dialect \"worker\": the worker does not forward Idempotency-Key to its mint backend, so a retried mint would mint a second ID").With("upstream.dialect")
	}
	if c.Retry.MaxDelay < c.Retry.BaseDelay {
		errs.Add("upstream.retry.maxDelay", "(%s) must be >= upstream.retry.baseDelay (%s)", c.Retry.MaxDelay, c.Retry.BaseDelay).With("upstream.retry.baseDelay")
	}
	if c.MaxInFlight < 1 {
		errs.Add("upstream.maxInFlight", "must be >= 1, got %d", c.MaxInFlight)
	}
	if c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > 10 {
		errs.Add("upstream.retry.maxAttempts", "must be between 1 and 10, got %d", c.Retry.MaxAttempts)
	}
	if c.Breaker.Failures < 1 {
		errs.Add("upstream.breaker.failures", "must be >= 1, got %d", c.Breaker.Failures)
	}
	if c.Breaker.HalfOpenProbes < 1 {
		errs.Add("upstream.breaker.halfOpenProbes", "must be >= 1, got %d", c.Breaker.HalfOpenProbes)
	}
	errs = append(errs, c.TLS.validate()...)
	if err := c.Proxy.validate(); err != nil {
		errs = append(errs, err)
	}
	return errs.Join()
}

// validateURL checks upstream.url and the settings that depend on its
// scheme (docs/upstream.md, "Production upstream").
func (c Config) validateURL() []error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return []error{field.Errorf("upstream.url", "must be an http or https URL with a host: it does not parse")}
	}
	var errs field.Errors
	shown := *u
	shown.User = nil // the URL is quoted in messages: never its credentials
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return []error{field.Errorf("upstream.url", "must be an http or https URL with a host, got %q", shown.String())}
	}
	if u.User != nil {
		errs.Add("upstream.url", "must not hold credentials (user:password@): the token goes in upstream.tokenFile, got %q", shown.String()).With("upstream.tokenFile")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		errs.Add("upstream.url", "must not have a query or a fragment, got %q", shown.String())
	}
	if u.Scheme == "https" {
		if c.AllowInsecure {
			errs.Add("upstream.allowInsecure", "only permits a plain http:// upstream.url; it never turns off certificate checks (for a private CA, set upstream.tls.caFile)").With("upstream.url", "upstream.tls.caFile")
		}
		return errs
	}
	for _, key := range c.TLS.setKeys() {
		errs.Add(key, "applies to https:// upstreams only; upstream.url is %q", shown.String()).With("upstream.url")
	}
	if c.Token != "" && !IsLoopbackHost(u.Hostname()) && !c.AllowInsecure {
		errs.Add("upstream.url", "is plain http:// to %q, which would send the token unencrypted: use https://, or set upstream.allowInsecure: true to accept that (loopback hosts are exempt)", u.Host).With("upstream.allowInsecure")
	}
	return errs
}

// IsLoopbackHost reports whether host (a name or an address, an IPv6
// address with or without brackets) is localhost or a loopback address
// (127.0.0.0/8, ::1). A name is not resolved: one that points at loopback
// still counts as remote.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && a.Unmap().IsLoopback()
}

// RedactedURL is upstream.url as it may be shown: any password replaced
// (a URL with credentials is refused at load; this is for what is shown
// before that, or of a config that bypassed it).
func (c Config) RedactedURL() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// InsecureWarning returns a warning when requests cross the network in
// clear text: upstream.url is http:// to a host that is not loopback. It
// returns "" otherwise.
func (c Config) InsecureWarning() string {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" || IsLoopbackHost(u.Hostname()) {
		return ""
	}
	if c.AllowInsecure {
		return "upstream.allowInsecure is true: the bearer token and every ID cross the network to " + u.Host + " unencrypted (plain http://)"
	}
	return "upstream.url is plain http:// to " + u.Host + ": callers' Authorization headers and every ID cross the network unencrypted"
}
