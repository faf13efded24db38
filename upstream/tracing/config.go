package tracing

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

// Config is the tracing section of the config file (docs/observability.md,
// "Tracing"). Spans are off while no endpoint is set, in the file or the
// environment; the W3C trace context of apps' requests is forwarded
// upstream either way.
type Config struct {
	// Endpoint is the OTLP/HTTP base URL of the trace collector, such as
	// http://127.0.0.1:4318; spans are posted to /v1/traces under it. ""
	// (the default) leaves it to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
	// OTEL_EXPORTER_OTLP_ENDPOINT, and tracing is off if they are unset.
	// Reloadable.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of new traces that are sampled (0 to 1);
	// a request that carries a traceparent follows its sampled flag
	// (parent-based sampling). Default 1, or OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG when the file does not set it. Reloadable.
	SampleRatio float64 `yaml:"sampleRatio"`
	// Headers are sent with every export, such as a collector's API key;
	// the values never print. The environment's
	// (OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS) are
	// added under names the file does not use. Reloadable.
	Headers map[string]field.Secret `yaml:"headers"`

	// Export is the rest of the exporter's settings, from the environment
	// only (ApplyEnv): never read from the file.
	Export Export `yaml:"-"`
}

// Export holds what ApplyEnv resolves: the effective traces URL and the
// settings the OpenTelemetry environment variables give.
type Export struct {
	// URL is where spans are posted: Endpoint + "/v1/traces", else
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
	// OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces". "": tracing is off.
	URL string
	// ParentBased is false only when OTEL_TRACES_SAMPLER names a sampler
	// that ignores the caller's flag (always_on, always_off, traceidratio).
	ParentBased bool
	// Timeout bounds one export (OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT,
	// milliseconds). Default 10s.
	Timeout time.Duration
	// Gzip compresses exports (OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION).
	Gzip bool
	// TLS are the files an https collector is trusted and authenticated
	// with.
	TLS TLSFiles
	// ServiceName is the resource's service.name (OTEL_SERVICE_NAME).
	// Default chittyid-sidecar.
	ServiceName string
	// Resource are further resource attributes (OTEL_RESOURCE_ATTRIBUTES).
	Resource map[string]string
	// QueueSize bounds the spans waiting for export: more are dropped and
	// counted (OTEL_BSP_MAX_QUEUE_SIZE, default 2048). Read at start.
	QueueSize int
	// BatchSize is the most spans one export carries
	// (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, default 512).
	BatchSize int
	// Delay is the longest a span waits for a batch to fill
	// (OTEL_BSP_SCHEDULE_DELAY, milliseconds, default 5s).
	Delay time.Duration
}

// On reports whether spans are made and exported.
func (c Config) On() bool { return c.Export.URL != "" }

// The environment variables ApplyEnv reads (OpenTelemetry's SDK
// configuration specification).
const (
	EnvSDKDisabled       = "OTEL_SDK_DISABLED"
	EnvTracesExporter    = "OTEL_TRACES_EXPORTER"
	EnvEndpoint          = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint    = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvHeaders           = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvTracesHeaders     = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	EnvTimeout           = "OTEL_EXPORTER_OTLP_TIMEOUT"
	EnvTracesTimeout     = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
	EnvProtocol          = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol    = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvCompression       = "OTEL_EXPORTER_OTLP_COMPRESSION"
	EnvCertificate       = "OTEL_EXPORTER_OTLP_CERTIFICATE"
	EnvClientCertificate = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
	EnvClientKey         = "OTEL_EXPORTER_OTLP_CLIENT_KEY"
	EnvTracesCompression = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
	EnvSampler           = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg        = "OTEL_TRACES_SAMPLER_ARG"
	EnvServiceName       = "OTEL_SERVICE_NAME"
	EnvResource          = "OTEL_RESOURCE_ATTRIBUTES"
	EnvQueueSize         = "OTEL_BSP_MAX_QUEUE_SIZE"
	EnvBatchSize         = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
	EnvDelay             = "OTEL_BSP_SCHEDULE_DELAY"
)

// tracesPath is where OTLP/HTTP takes spans under a base URL.
const tracesPath = "/v1/traces"

// Defaults returns the section with its defaults: no endpoint, every new
// trace sampled.
func Defaults() Config {
	return Config{SampleRatio: 1, Export: exportDefaults()}
}

func exportDefaults() Export {
	return Export{ParentBased: true, Timeout: 10 * time.Second, ServiceName: "chittyid-sidecar",
		QueueSize: 2048, BatchSize: 512, Delay: 5 * time.Second}
}

// ApplyEnv resolves the section against the OpenTelemetry environment
// variables, read through lookupEnv (nil: none; a variable set to "" is
// unset), as the OpenTelemetry specification says, with the file winning:
// a key set in the file (inFile reports which, by dotted key) is not
// overridden. setOrigin records which variable a key's value came from,
// for error messages. Problems name the variable.
func (c *Config) ApplyEnv(lookupEnv func(string) (string, bool), inFile func(key string) bool, setOrigin func(key, source string)) error {
	c.Export = exportDefaults()
	env := func(name string) string {
		if lookupEnv == nil {
			return ""
		}
		v, _ := lookupEnv(name)
		return strings.TrimSpace(v)
	}
	// first returns the signal-specific variable's value if set, else the
	// generic one's, and which it was.
	first := func(specific, generic string) (string, string) {
		if v := env(specific); v != "" {
			return v, specific
		}
		return env(generic), generic
	}
	var errs field.Errors

	switch {
	case c.Endpoint != "":
		c.Export.URL = strings.TrimRight(c.Endpoint, "/") + tracesPath
	case strings.EqualFold(env(EnvSDKDisabled), "true"):
	case env(EnvTracesExporter) != "" && env(EnvTracesExporter) != "otlp":
		if v := env(EnvTracesExporter); v != "none" {
			errs.Add("tracing.endpoint", "env %s is %q: only otlp (OTLP over HTTP) and none are supported", EnvTracesExporter, v)
		}
	default:
		if v := env(EnvTracesEndpoint); v != "" {
			c.Export.URL = v // a signal's own endpoint is used as it is
			setOrigin("tracing.endpoint", "env "+EnvTracesEndpoint)
		} else if v := env(EnvEndpoint); v != "" {
			c.Export.URL = strings.TrimRight(v, "/") + tracesPath
			setOrigin("tracing.endpoint", "env "+EnvEndpoint)
		}
	}

	if v, name := first(EnvTracesProtocol, EnvProtocol); v != "" && v != "http/protobuf" {
		errs.Add("tracing.endpoint", "env %s is %q: the sidecar exports OTLP over HTTP (http/protobuf) only", name, v)
	}
	if v, name := first(EnvTracesHeaders, EnvHeaders); v != "" {
		h, err := parseKeyValues(v)
		if err != nil {
			errs.Add("tracing.headers", "env %s: %v (the value is not shown)", name, err)
		}
		for k, val := range h {
			if _, ok := c.Headers[k]; !ok {
				if c.Headers == nil {
					c.Headers = map[string]field.Secret{}
				}
				c.Headers[k] = field.Secret(val)
			}
		}
	}
	if v, name := first(EnvTracesTimeout, EnvTimeout); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			errs.Add("tracing.endpoint", "env %s must be a positive number of milliseconds, got %q", name, v)
		} else {
			c.Export.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if v, name := first(EnvTracesCompression, EnvCompression); v != "" {
		switch v {
		case "gzip":
			c.Export.Gzip = true
		case "none":
		default:
			errs.Add("tracing.endpoint", "env %s must be gzip or none, got %q", name, v)
		}
	}
	c.Export.TLS.CA, _ = first("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", EnvCertificate)
	c.Export.TLS.Cert, _ = first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", EnvClientCertificate)
	c.Export.TLS.Key, _ = first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", EnvClientKey)
	if (c.Export.TLS.Cert == "") != (c.Export.TLS.Key == "") {
		errs.Add("tracing.endpoint", "env %s and %s must be set together", EnvClientCertificate, EnvClientKey)
	}
	if !inFile("tracing.sampleRatio") {
		if err := c.samplerFromEnv(env(EnvSampler), env(EnvSamplerArg)); err != nil {
			errs = append(errs, err)
		} else if env(EnvSampler) != "" {
			setOrigin("tracing.sampleRatio", "env "+EnvSampler)
		}
	}
	if v := env(EnvServiceName); v != "" {
		c.Export.ServiceName = v
	}
	if v := env(EnvResource); v != "" {
		r, err := parseKeyValues(v)
		if err != nil {
			errs.Add("tracing.endpoint", "env %s: %v", EnvResource, err)
		}
		c.Export.Resource = r
		if n, ok := r["service.name"]; ok && env(EnvServiceName) == "" {
			c.Export.ServiceName = n
		}
	}
	for _, n := range []struct {
		name string
		dst  *int
	}{{EnvQueueSize, &c.Export.QueueSize}, {EnvBatchSize, &c.Export.BatchSize}} {
		if v := env(n.name); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i <= 0 || i > 1<<20 {
				errs.Add("tracing.endpoint", "env %s must be a number from 1 to 1048576, got %q", n.name, v)
				continue
			}
			*n.dst = i
		}
	}
	c.Export.BatchSize = min(c.Export.BatchSize, c.Export.QueueSize)
	if v := env(EnvDelay); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			errs.Add("tracing.endpoint", "env %s must be a number of milliseconds, got %q", EnvDelay, v)
		} else {
			c.Export.Delay = time.Duration(ms) * time.Millisecond
		}
	}
	return errs.Join()
}

// samplerFromEnv applies OTEL_TRACES_SAMPLER and its argument.
func (c *Config) samplerFromEnv(name, arg string) error {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, field.Errorf("tracing.sampleRatio", "env %s must be a number from 0 to 1, got %q", EnvSamplerArg, arg)
		}
		return r, nil
	}
	var err error
	switch name {
	case "":
	case "always_on", "parentbased_always_on":
		c.SampleRatio = 1
	case "always_off", "parentbased_always_off":
		c.SampleRatio = 0
	case "traceidratio", "parentbased_traceidratio":
		c.SampleRatio, err = ratio()
	default:
		return field.Errorf("tracing.sampleRatio", "env %s is %q: the sidecar supports always_on, always_off, traceidratio and their parentbased_ forms", EnvSampler, name)
	}
	c.Export.ParentBased = name == "" || strings.HasPrefix(name, "parentbased_")
	return err
}

// parseKeyValues reads "k1=v1,k2=v2" with percent-encoded values, the
// format of OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES.
func parseKeyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return out, fmt.Errorf("an item is not key=value")
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return out, fmt.Errorf("the value of %q is not percent-encoded properly", k)
		}
		out[k] = dv
	}
	return out, nil
}

// Validate reports every problem of the section, each naming its key.
func (c Config) Validate() error {
	var errs field.Errors
	if c.Export.URL != "" {
		u, err := url.Parse(c.Export.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs.Add("tracing.endpoint", "must be an http or https URL with a host, such as http://127.0.0.1:4318")
		case u.User != nil:
			errs.Add("tracing.endpoint", "must not hold credentials (user:password@): put them in tracing.headers").With("tracing.headers")
		case u.RawQuery != "" || u.Fragment != "":
			errs.Add("tracing.endpoint", "must not have a query or a fragment")
		}
	}
	if !(c.SampleRatio >= 0 && c.SampleRatio <= 1) {
		errs.Add("tracing.sampleRatio", "must be from 0 to 1, got %v", c.SampleRatio)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
		if !headerName(k) {
			errs.Add("tracing.headers", "%q is not an HTTP header name", k)
			continue
		}
		if strings.ContainsAny(c.Headers[k].Reveal(), "\r\n\x00") {
			errs.Add("tracing.headers", "the value of %q holds a line break or NUL (the value is not shown)", k)
		}
	}
	return errs.Join()
}

// headerName reports whether s is an HTTP field name (RFC 9110 token).
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
