package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
)

// env returns a lookup func backed by m, in place of os.LookupEnv.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// noEnv is an environment with no variables set.
func noEnv(string) (string, bool) { return "", false }

// problems splits a joined error into its lines.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// checkErrs fails unless err has exactly one problem per entry of want, each
// containing its entry, in order.
func checkErrs(t *testing.T, err error, want []string) {
	t.Helper()
	got := problems(err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseMinimalFileGivesDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml string }{
		{"listen only", "listen: 127.0.0.1:8787\n"},
		{"empty mapping", "{}"},
		{"comments and null sections", "# sidecar\nupstream:\nvalidate: ~\nformat: ~\nlog: {}\n"},
		{"document marker", "---\nlisten: 127.0.0.1:8787\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), noEnv)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if want := Defaults(); !reflect.DeepEqual(*c, want) {
				t.Errorf("Parse = %+v\nwant    %+v", *c, want)
			}
		})
	}
}

// TestBreakerOpenTimeoutBeyondDefaultMax: an openTimeout longer than the
// default maxOpenTimeout (5m) is accepted without setting maxOpenTimeout:
// the cap is then openTimeout itself (the open period does not grow).
func TestBreakerOpenTimeoutBeyondDefaultMax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"upstream:\n  breaker: {openTimeout: 1h}\n", time.Hour},
		{"upstream:\n  breaker: {openTimeout: 1m}\n", 5 * time.Minute},
		{"upstream:\n  breaker: {openTimeout: 1m, maxOpenTimeout: 2h}\n", 2 * time.Hour},
		{"upstream:\n  breaker: {openTimeout: 10m, maxOpenTimeout: 10m}\n", 10 * time.Minute},
	} {
		c, err := Parse([]byte(tc.yaml), noEnv)
		if err != nil {
			t.Errorf("%s: %v", tc.yaml, err)
			continue
		}
		if got := c.Upstream.Breaker.MaxOpen(); got != tc.want {
			t.Errorf("%s: the open period's cap is %v, want %v", tc.yaml, got, tc.want)
		}
	}
}

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Defaults().Validate() = %v", err)
	}
}

const fullFile = `
listen: 127.0.0.1:9000
upstream:
  url: http://127.0.0.1:8080/v1
  dialect: client-v1
  tokenFile: ""
  token: inline-token
  timeout: 2s
  mintTimeout: 15s
  lateAnswerWindow: 20s
  validateTimeout: 1500ms
  maxInFlight: 8
  idempotentMint: true
  retry: {maxAttempts: 4, baseDelay: 50ms, maxDelay: 1s}
  breaker: {failures: 3, openTimeout: 10s, maxOpenTimeout: 2m, halfOpenProbes: 2}
format: numeric
validate: {mode: local, ttl: 5m, negativeTtl: 30s, staleIfError: 1h}
cache: {maxSizeMB: 32, shards: 16}
shutdown: {drainTimeout: 45s}
limits: {maxBodyBytes: 131072, maxMetadataBytes: 4096, maxBatch: 50}
log: {level: debug, format: text, access: false}
health:
  interval: 10s
  timeout: 2s
  failuresToReconnect: 2
  maxReconnectAttempts: 4
  reconnect: {baseDelay: 500ms, maxDelay: 20s}
readiness: {policy: connected}
reload: {interval: 5s}
rateLimit:
  mint: {perCallerPerMinute: 60, globalPerMinute: 600, burst: 50, fleetPerMinute: 6000, fleetBurst: 200}
  validate: {globalPerSecond: 2000, burst: 500}
  maxCallers: 500
snapshot: {path: /var/lib/chittyid-sidecar/snapshot.bin, interval: 30s}
fleet:
  redis:
    addrs: [redis-0.redis:6379, redis-1.redis:6379, redis-2.redis:6379]
    sentinel: {masterName: ""}
    username: sidecar
    db: 0
    tls: {enabled: true, caFile: REDIS_CA, serverName: redis.internal}
  keyPrefix: "app1:"
  timeout: 20ms
  lockTtl: 3s
tracing:
  endpoint: http://127.0.0.1:4318/
  sampleRatio: 0.25
  headers: {X-Api-Key: tracing-key}
`

func TestParseFullFile(t *testing.T) {
	t.Parallel()
	redisCA, _, _ := tlsFiles(t) // read and checked by Parse
	c, err := Parse([]byte(strings.Replace(fullFile, "REDIS_CA", redisCA, 1)), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Config{
		Listen: "127.0.0.1:9000",
		Upstream: upstream.Config{
			URL:              "http://127.0.0.1:8080/v1",
			Dialect:          upstream.DialectClientV1,
			Token:            "inline-token",
			Timeout:          2 * time.Second,
			MintTimeout:      15 * time.Second,
			LateAnswerWindow: 20 * time.Second,
			ValidateTimeout:  1500 * time.Millisecond,
			MaxInFlight:      8,
			IdempotentMint:   true,
			Retry:            upstream.RetryConfig{MaxAttempts: 4, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second},
			Breaker:          upstream.BreakerConfig{Failures: 3, OpenTimeout: 10 * time.Second, MaxOpenTimeout: 2 * time.Minute, HalfOpenProbes: 2},
			TLS:              upstream.TLSConfig{MinVersion: upstream.TLSVersion12},
		},
		Format:     chittyid.FormatNumeric,
		Validation: Validate{Mode: ValidateModeLocal, TTL: 5 * time.Minute, NegativeTTL: 30 * time.Second, StaleIfError: time.Hour},
		Cache:      cache.Config{MaxSizeMB: 32, Shards: 16},
		Shutdown:   Shutdown{DrainTimeout: 45 * time.Second},
		Limits:     Limits{MaxBodyBytes: 128 << 10, MaxMetadataBytes: 4096, MaxBatch: 50},
		Log:        Log{Level: "debug", Format: "text"},
		Health: fsm.Config{Interval: 10 * time.Second, Timeout: 2 * time.Second, FailuresToReconnect: 2, MaxReconnectAttempts: 4,
			Reconnect: fsm.ReconnectConfig{BaseDelay: 500 * time.Millisecond, MaxDelay: 20 * time.Second}},
		Readiness: Readiness{Policy: ReadinessConnected},
		Reload:    Reload{Interval: 5 * time.Second},
		RateLimit: RateLimit{
			Mint:       MintRate{PerCallerPerMinute: 60, GlobalPerMinute: 600, Burst: 50, FleetPerMinute: 6000, FleetBurst: 200},
			Validate:   ValidateRate{GlobalPerSecond: 2000, Burst: 500},
			MaxCallers: 500,
		},
		Snapshot: Snapshot{Path: "/var/lib/chittyid-sidecar/snapshot.bin", Interval: 30 * time.Second},
		Fleet: fleet.Config{
			Redis: fleet.Redis{
				Addrs:    []string{"redis-0.redis:6379", "redis-1.redis:6379", "redis-2.redis:6379"},
				Username: "sidecar",
				TLS:      fleet.TLS{Enabled: true, CAFile: redisCA, ServerName: "redis.internal"},
			},
			KeyPrefix: "app1:",
			Timeout:   20 * time.Millisecond,
			LockTTL:   3 * time.Second,
		},
		Tracing: tracing.Defaults(),
	}
	want.Tracing.Endpoint = "http://127.0.0.1:4318/"
	want.Tracing.SampleRatio = 0.25
	want.Tracing.Headers = map[string]field.Secret{"X-Api-Key": "tracing-key"}
	want.Tracing.Export.URL = "http://127.0.0.1:4318/v1/traces"
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", *c, want)
	}
}

func TestParseRejectsBadFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		yaml     string
		wantErrs []string
	}{
		{"unknown top-level key", "listen: 127.0.0.1:8787\nlistn: x\n",
			[]string{`line 2: listn: unknown key (did you mean "listen"?)`}},
		{"unknown nested key", "upstream:\n  retyr: {maxAttempts: 2}\n",
			[]string{`line 2: upstream.retyr: unknown key (did you mean "retry"?)`}},
		{"unknown deeply nested key", "upstream:\n  retry:\n    maxAttempt: 2\n",
			[]string{`line 3: upstream.retry.maxAttempt: unknown key (did you mean "maxAttempts"?)`}},
		{"key in the wrong case", "validate: {negativeTTL: 1m}\n",
			[]string{`line 1: validate.negativeTTL: unknown key (did you mean "negativeTtl"?)`}},
		{"bad reload interval", "reload:\n  interval: 10ms\n", []string{"line 2: reload.interval must be between 100ms and 1h"}},
		{"rateLimit maxCallers zero", "rateLimit: {maxCallers: 0}\n", []string{"line 1: rateLimit.maxCallers must be between 1 and 1000000, got 0"}},
		{"rateLimit negative rate", "rateLimit:\n  validate: {globalPerSecond: -1}\n",
			[]string{"line 2: rateLimit.validate.globalPerSecond must be >= 0 (0 = no limit), got -1"}},
		{"rateLimit burst under maxBatch", "limits: {maxBatch: 20}\nrateLimit:\n  mint: {perCallerPerMinute: 60, burst: 10}\n",
			[]string{"line 3: rateLimit.mint.burst must be >= limits.maxBatch (20) while a mint rate is set, got 10"}},
		{"rateLimit fractional rate", "rateLimit: {mint: {globalPerMinute: 0.5}}\n",
			[]string{`line 1: rateLimit.mint.globalPerMinute: must be an integer, got !!float "0.5"`}},
		{"bad readiness policy", "readiness: {policy: sometimes}\n", []string{"line 1: readiness.policy must be connected, degraded or always"}},
		{"bad health interval", "health: {interval: 0s}\n", []string{"line 1: health.interval must be > 0", "health.timeout (5s) must be <= health.interval (0s)"}},
		{"bad reload interval", "reload: {interval: 10ms}\n", []string{"line 1: reload.interval must be between 100ms and 1h"}},
		{"misspelt rateLimit key", "rateLimit: {maxCaller: 5}\n", []string{`line 1: rateLimit.maxCaller: unknown key (did you mean "maxCallers"?)`}},
		{"bad metrics.listen", "metrics: {listen: \"nowhere\"}\n", []string{`line 1: metrics.listen must be host:port, got "nowhere"`}},
		{"metrics.listen equal to listen", "listen: 127.0.0.1:9000\nmetrics: {listen: 127.0.0.1:9000}\n", []string{"metrics.listen must differ from listen"}},
		{"not yet supported audit", "audit: {path: \"\"}\n", []string{"line 1: audit: unknown key"}},
		{"snapshot interval too short", "snapshot: {path: /tmp/s.bin, interval: 10ms}\n", []string{"line 1: snapshot.interval must be between 100ms and 24h0m0s, got 10ms"}},
		{"snapshot interval without a unit", "snapshot:\n  interval: 60\n", []string{`line 2: snapshot.interval: must be a duration with a unit`}},
		{"snapshot path a directory", "snapshot: {path: /var/lib/chittyid/}\n", []string{`line 1: snapshot.path must name a file, not a directory, got "/var/lib/chittyid/"`}},
		{"misspelt snapshot key", "snapshot: {pathh: /tmp/s.bin}\n", []string{`line 1: snapshot.pathh: unknown key (did you mean "path"?)`}},
		{"log.access not a bool", "log: {level: info, access: sometimes}\n", []string{"line 1: log.access: "}},
		{"string for an int", "upstream: {maxInFlight: many}\n",
			[]string{`line 1: upstream.maxInFlight: must be an integer, got !!str "many"`}},
		{"quoted number for an int", "limits: {maxBatch: \"10\"}\n",
			[]string{`line 1: limits.maxBatch: must be an integer, got !!str "10"`}},
		{"float for an int", "limits:\n  maxBatch: 1.5\n",
			[]string{`line 2: limits.maxBatch: must be an integer, got !!float "1.5"`}},
		{"mapping for an int", "cache:\n  shards: {n: 1}\n",
			[]string{"line 2: cache.shards: must be an integer, got a mapping"}},
		{"scalar for a section", "upstream: fast\n", []string{`line 1: upstream: must be a mapping, got !!str "fast"`}},
		{"sequence for a string", "listen: [a, b]\n", []string{"line 1: listen: cannot unmarshal !!seq into string"}},
		{"token with an explicit tag", "upstream: {token: !!int abc}\n",
			[]string{"line 1: upstream.token: must be a plain string (the value is not shown)"}},
		{"bad bool", "upstream:\n  idempotentMint: maybe\n",
			[]string{"line 2: upstream.idempotentMint: cannot unmarshal !!str `maybe` into bool"}},
		{"bad duration", "upstream:\n  timeout: 5x\n", []string{`line 2: upstream.timeout: invalid duration "5x"`}},
		{"duration without unit", "shutdown: {drainTimeout: \"20\"}\n", []string{`line 1: shutdown.drainTimeout: invalid duration "20"`}},
		{"integer duration", "upstream:\n  retry:\n    baseDelay: 100\n",
			[]string{`line 3: upstream.retry.baseDelay: must be a duration with a unit such as "5s" or "250ms", got !!int "100"`}},
		{"idempotentMint with the worker dialect", "upstream:\n  dialect: worker\n  idempotentMint: true\n",
			[]string{`line 3: upstream.idempotentMint must be false with upstream.dialect "worker": the worker does not forward Idempotency-Key`}},
		{"maxOpenTimeout below openTimeout", "upstream:\n  breaker: {openTimeout: 1m, maxOpenTimeout: 30s}\n",
			[]string{"line 2: upstream.breaker.maxOpenTimeout (30s) must be >= upstream.breaker.openTimeout (1m0s)"}},
		{"negative maxOpenTimeout", "upstream:\n  breaker: {maxOpenTimeout: -1m}\n",
			[]string{"line 2: upstream.breaker.maxOpenTimeout must be >= 0 (0: the default), got -1m0s"}},
		{"maxOpenTimeout without a unit", "upstream:\n  breaker:\n    maxOpenTimeout: 300\n",
			[]string{"line 3: upstream.breaker.maxOpenTimeout: must be a duration with a unit"}},
		{"bad dialect", "upstream:\n  dialect: grpc\n", []string{`line 2: upstream.dialect must be client-v1 or worker, got "grpc"`}},
		{"bad format", "format: hex\n", []string{`line 1: format: unknown format "hex"`}},
		{"bad validate mode", "validate:\n  mode: remote\n", []string{`line 2: validate.mode must be upstream or local, got "remote"`}},
		{"bad log level", "log: {level: trace}\n", []string{`line 1: log.level must be debug, info, warn or error, got "trace"`}},
		{"bad log format", "log: {format: xml}\n", []string{`line 1: log.format must be json or text, got "xml"`}},
		{"negative maxInFlight", "upstream:\n  maxInFlight: -1\n", []string{"line 2: upstream.maxInFlight must be >= 1, got -1"}},
		{"bad cache size", "cache: {maxSizeMB: 1}\n", []string{"line 1: cache.maxSizeMB must be >= 2, got 1"}},
		{"negativeTtl over ttl", "validate: {ttl: 10m, negativeTtl: 20m}\n",
			[]string{"line 1: validate.negativeTtl must be <= validate.ttl (10m0s), got 20m0s"}},
		{"duplicate top-level key", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
			[]string{"line 2: listen: duplicate key (first defined at line 1)"}},
		{"duplicate nested key", "upstream:\n  timeout: 1s\n  timeout: 2s\n",
			[]string{"line 3: upstream.timeout: duplicate key (first defined at line 2)"}},
		{"duplicate section", "log: {level: info}\nlog: {format: text}\n",
			[]string{"line 2: log: duplicate key (first defined at line 1)"}},
		{"merge key", "validate: &v {ttl: 5m}\nlog: {<<: *v}\n", []string{"line 2: log: keys must be plain strings"}},
		{"complex key", "? [a, b]\n: 1\n", []string{"line 1: top level: keys must be plain strings"}},
		{"empty file", "", []string{"config file is empty"}},
		{"comment-only file", "# nothing yet\n\n", []string{"config file is empty"}},
		{"null document", "---\n~\n", []string{"config file is empty"}},
		{"invalid YAML syntax", "upstream:\n  url: [http://x\n", []string{"yaml: line 1: did not find expected ',' or ']'"}},
		{"bad indentation", "upstream:\n  url: http://x\n timeout: 1s\n", []string{"yaml: line 2: did not find expected key"}},
		{"top level not a mapping", "- listen\n", []string{"line 1: config file must be a mapping of keys, got a !!seq node"}},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n",
			[]string{"line 2: config file must hold one YAML document"}},
		{"broken second document", "listen: 127.0.0.1:1\n---\n[\n", []string{"yaml: line 3:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), noEnv)
			if c != nil {
				t.Errorf("Parse returned a config with an error: %+v", *c)
			}
			checkErrs(t, err, tc.wantErrs)
		})
	}
}

func TestParseAliases(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("validate: {ttl: &t 30m, staleIfError: *t}\nshutdown: {drainTimeout: *t}\n"), noEnv)
	if c != nil {
		t.Fatalf("Parse = %+v, want an error", *c)
	}
	// The alias is decoded like the value it names, and the line is the
	// anchor's.
	checkErrs(t, err, []string{"line 1: shutdown.drainTimeout must be > 0 and <= 5m0s, got 30m0s"})

	c, err = Parse([]byte("validate: {ttl: &t 30m, staleIfError: *t}\n"), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if v := c.Validation; v.TTL != 30*time.Minute || v.StaleIfError != 30*time.Minute {
		t.Errorf("validate = %+v, want ttl and staleIfError 30m", v)
	}
}

func TestStrictDecodeCrossCheck(t *testing.T) {
	t.Parallel()
	if err := strictDecode([]byte("{}"), Defaults()); err != nil {
		t.Errorf("strictDecode agreeing = %v, want nil", err)
	}
	if err := strictDecode([]byte("{}"), Config{}); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("strictDecode disagreeing = %v, want an internal error", err)
	}
	if err := strictDecode([]byte("listn: x\n"), Defaults()); err == nil || !strings.Contains(err.Error(), "listn") {
		t.Errorf("strictDecode unknown key = %v, want yaml.v3's error", err)
	}
}

func TestYAMLKey(t *testing.T) {
	t.Parallel()
	type s struct {
		Tagged   int `yaml:"tagged,omitempty"`
		Untagged int
		Skipped  int `yaml:"-"`
	}
	if got, want := fieldKeys(reflect.TypeFor[s]()), []string{"tagged", "untagged"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fieldKeys = %q, want %q", got, want)
	}
}

func TestParseEmptyIsErrEmpty(t *testing.T) {
	t.Parallel()
	if _, err := Parse([]byte("# truncated\n"), noEnv); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Parse = %v, want ErrEmpty", err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	const yaml = `listen: "8787"
upstream:
  url: ftp://example.com
  retyr: {maxAttempts: 2}
  timeout: 5x
  mintTimeout: 10
  maxInFlight: -1
  retry: {maxAttempts: 0}
format: hex
validate: {mode: remote, ttl: 10m, negativeTtl: 20m, staleIfError: 1m}
cache: {shards: 3}
shutdown: {drainTimeout: 10m}
limits: {maxBodyBytes: 10, maxMetadataBytes: 0, maxBatch: 5000}
log: {level: trace, format: xml, access: true, color: true}
audit: {path: x}
readiness: {policy: sometimes}
`
	_, err := Parse([]byte(yaml), noEnv)
	checkErrs(t, err, []string{
		// Decoding, in file order.
		"line 4: upstream.retyr: unknown key",
		`line 5: upstream.timeout: invalid duration "5x"`,
		"line 6: upstream.mintTimeout: must be a duration",
		"line 9: format: unknown format",
		"line 14: log.color: unknown key",
		"line 15: audit: unknown key",
		// Validation, section by section.
		`line 1: listen must be host:port, got "8787"`,
		`line 3: upstream.url must be an http or https URL`,
		"line 7: upstream.maxInFlight must be >= 1, got -1",
		"line 8: upstream.retry.maxAttempts must be between 1 and 10, got 0",
		`line 10: validate.mode must be upstream or local, got "remote"`,
		"line 10: validate.negativeTtl must be <= validate.ttl (10m0s), got 20m0s",
		"line 10: validate.staleIfError must be >= validate.ttl (10m0s), got 1m0s",
		"line 11: cache.shards must be a power of two",
		"line 12: shutdown.drainTimeout must be > 0 and <= 5m0s, got 10m0s",
		"line 13: limits.maxBodyBytes must be between 1024 and 16777216, got 10",
		"line 13: limits.maxMetadataBytes must be between 1 and limits.maxBodyBytes (10), got 0",
		"line 13: limits.maxBatch must be between 1 and 1000, got 5000",
		`line 14: log.level must be debug, info, warn or error, got "trace"`,
		`line 14: log.format must be json or text, got "xml"`,
		"line 16: readiness.policy must be connected, degraded or always",
	})
}

// TestParseFleetProblems: the fleet section's problems name their keys
// and lines, list entries included, and every one is reported.
func TestParseFleetProblems(t *testing.T) {
	t.Parallel()
	const yaml = `fleet:
  redis:
    addrs:
      - redis:6379
      - redis
    pasword: x
    db: 2
    tls: {caFile: /ca.pem}
  keyPrefix: "a{b}"
  timeout: 5s
  lockTtl: 1
rateLimit:
  mint: {fleetPerMinute: 60, fleetBurst: 10}
`
	_, err := Parse([]byte(yaml), noEnv)
	checkErrs(t, err, []string{
		// Decoding, in file order.
		"line 6: fleet.redis.pasword: unknown key",
		`line 11: fleet.lockTtl: must be a duration`,
		// Validation, section by section.
		"line 13: rateLimit.mint.fleetBurst must be >= limits.maxBatch (100) while rateLimit.mint.fleetPerMinute is set, got 10",
		`line 4: fleet.redis.addrs[1] must be host:port, got "redis"`,
		"line 7: fleet.redis.db must be 0 with several fleet.redis.addrs",
		"line 8: fleet.redis.tls.caFile is set but fleet.redis.tls.enabled is false",
		`line 9: fleet.keyPrefix must be 1 to 64 visible ASCII characters without spaces or braces, got "a{b}"`,
		"line 10: fleet.timeout must be between 1ms and 1s, got 5s",
	})
}

func TestParseSkipsValidationOfUndecodedKeys(t *testing.T) {
	t.Parallel()
	// ttl keeps its default (10m) after failing to decode; complaining that
	// negativeTtl exceeds it would send the operator the wrong way.
	_, err := Parse([]byte("validate: {ttl: 5x, negativeTtl: 20m}\n"), noEnv)
	checkErrs(t, err, []string{`line 1: validate.ttl: invalid duration "5x"`})
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "listen: 127.0.0.1:8787\n")
	bad := writeFile(t, dir, "bad.yaml", "listen: 127.0.0.1:8787\naudit: {}\nlog: {level: loud}\n")
	empty := writeFile(t, dir, "empty.yaml", "")
	missing := filepath.Join(dir, "missing.yaml")

	if c, err := Load(good, noEnv); err != nil || c.Listen != "127.0.0.1:8787" {
		t.Errorf("Load(good) = %v, %v", c, err)
	}
	for _, tc := range []struct {
		name, path string
		wantErrs   []string
	}{
		{"missing", missing, []string{fmt.Sprintf("loading config %q: open %s: no such file or directory", missing, missing)}},
		{"empty", empty, []string{fmt.Sprintf("loading config %q: config file is empty", empty)}},
		{"every problem", bad, []string{
			fmt.Sprintf("loading config %q: line 2: audit: unknown key", bad),
			`line 3: log.level must be debug, info, warn or error, got "loud"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(tc.path, noEnv)
			if c != nil {
				t.Errorf("Load returned a config: %+v", *c)
			}
			checkErrs(t, err, tc.wantErrs)
		})
	}
	if _, err := Load(empty, noEnv); !errors.Is(err, ErrEmpty) {
		t.Errorf("Load(empty) = %v, want ErrEmpty", err)
	}
}
