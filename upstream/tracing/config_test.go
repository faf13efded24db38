package tracing

import (
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

func applyEnv(c *Config, env map[string]string, inFile ...string) (map[string]string, error) {
	origins := map[string]string{}
	err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		func(k string) bool {
			for _, f := range inFile {
				if f == k {
					return true
				}
			}
			return false
		},
		func(k, src string) { origins[k] = src })
	return origins, err
}

func TestEnvFollowsTheSpecTheFileWins(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		file    func(*Config)
		inFile  []string
		env     map[string]string
		url     string
		ratio   float64
		parent  bool
		headers map[string]string
		origin  string
	}{
		{name: "off by default", ratio: 1, parent: true},
		{name: "file endpoint", file: func(c *Config) { c.Endpoint = "http://127.0.0.1:4318/" }, inFile: []string{"tracing.endpoint"},
			url: "http://127.0.0.1:4318/v1/traces", ratio: 1, parent: true},
		{name: "generic env endpoint gets the path", env: map[string]string{EnvEndpoint: "http://collector:4318"},
			url: "http://collector:4318/v1/traces", ratio: 1, parent: true, origin: "env " + EnvEndpoint},
		{name: "traces env endpoint as it is, over the generic", env: map[string]string{EnvEndpoint: "http://a:4318", EnvTracesEndpoint: "https://b/custom"},
			url: "https://b/custom", ratio: 1, parent: true, origin: "env " + EnvTracesEndpoint},
		{name: "file endpoint over env", file: func(c *Config) { c.Endpoint = "http://file:4318" }, env: map[string]string{EnvTracesEndpoint: "http://env/x"},
			url: "http://file:4318/v1/traces", ratio: 1, parent: true},
		{name: "disabled", env: map[string]string{EnvEndpoint: "http://a:4318", EnvSDKDisabled: "true"}, ratio: 1, parent: true},
		{name: "exporter none", env: map[string]string{EnvEndpoint: "http://a:4318", EnvTracesExporter: "none"}, ratio: 1, parent: true},
		{name: "sampler from env", env: map[string]string{EnvSampler: "parentbased_traceidratio", EnvSamplerArg: "0.25"}, ratio: 0.25, parent: true, origin: ""},
		{name: "non-parent sampler", env: map[string]string{EnvSampler: "traceidratio", EnvSamplerArg: "0.5"}, ratio: 0.5, parent: false},
		{name: "always_off", env: map[string]string{EnvSampler: "always_off"}, ratio: 0, parent: false},
		{name: "file ratio wins", file: func(c *Config) { c.SampleRatio = 0.1 }, inFile: []string{"tracing.sampleRatio"},
			env: map[string]string{EnvSampler: "always_on"}, ratio: 0.1, parent: true},
		{name: "headers merged, file wins by name", file: func(c *Config) { c.Headers = map[string]field.Secret{"Authorization": "file"} },
			env:   map[string]string{EnvHeaders: "authorization=generic", EnvTracesHeaders: "Authorization=env,X-Scope-OrgID=team%20a"},
			ratio: 1, parent: true,
			headers: map[string]string{"Authorization": "file", "X-Scope-OrgID": "team a"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Defaults()
			if c.file != nil {
				c.file(&cfg)
			}
			origins, err := applyEnv(&cfg, c.env, c.inFile...)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if cfg.Export.URL != c.url || cfg.SampleRatio != c.ratio || cfg.Export.ParentBased != c.parent {
				t.Errorf("url %q ratio %v parent-based %v; want %q %v %v", cfg.Export.URL, cfg.SampleRatio, cfg.Export.ParentBased, c.url, c.ratio, c.parent)
			}
			if c.origin != "" && origins["tracing.endpoint"] != c.origin {
				t.Errorf("origin of tracing.endpoint = %q, want %q", origins["tracing.endpoint"], c.origin)
			}
			if c.headers != nil {
				got := map[string]string{}
				for k, v := range cfg.Headers {
					got[k] = v.Reveal()
				}
				if len(got) != len(c.headers) || got["Authorization"] != c.headers["Authorization"] || got["X-Scope-OrgID"] != c.headers["X-Scope-OrgID"] {
					t.Errorf("headers %v, want %v", got, c.headers)
				}
			}
		})
	}
}

func TestEnvSettings(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	_, err := applyEnv(&cfg, map[string]string{
		EnvEndpoint: "http://a:4318", EnvTimeout: "2500", EnvCompression: "gzip",
		EnvServiceName: "svc", EnvResource: "deployment.environment=prod,service.name=ignored",
		EnvQueueSize: "100", EnvBatchSize: "500", EnvDelay: "250",
	})
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Export
	if e.Timeout != 2500*time.Millisecond || !e.Gzip || e.ServiceName != "svc" || e.Resource["deployment.environment"] != "prod" ||
		e.QueueSize != 100 || e.BatchSize != 100 || e.Delay != 250*time.Millisecond {
		t.Errorf("export settings %+v", e)
	}
}

func TestBadSettingsNameTheirSource(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		file func(*Config)
		env  map[string]string
		want string
	}{
		{"grpc", nil, map[string]string{EnvEndpoint: "http://a:4317", EnvProtocol: "grpc"}, EnvProtocol},
		{"zipkin", nil, map[string]string{EnvTracesExporter: "zipkin"}, EnvTracesExporter},
		{"sampler", nil, map[string]string{EnvSampler: "jaeger_remote"}, EnvSampler},
		{"sampler arg", nil, map[string]string{EnvSampler: "traceidratio", EnvSamplerArg: "2"}, EnvSamplerArg},
		{"timeout", nil, map[string]string{EnvTracesTimeout: "soon"}, EnvTracesTimeout},
		{"headers", nil, map[string]string{EnvHeaders: "novalue"}, EnvHeaders},
		{"ratio", func(c *Config) { c.SampleRatio = 1.5 }, nil, "tracing.sampleRatio"},
		{"endpoint scheme", func(c *Config) { c.Endpoint = "grpc://a:4317" }, nil, "tracing.endpoint"},
		{"endpoint credentials", func(c *Config) { c.Endpoint = "http://u:secretpw@a:4318" }, nil, "tracing.headers"},
		{"header name", func(c *Config) { c.Headers = map[string]field.Secret{"Bad Name": "x"} }, nil, "Bad Name"},
		{"header value", func(c *Config) { c.Headers = map[string]field.Secret{"X-Key": "a\r\nInjected: yes"} }, nil, "line break"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Defaults()
			if c.file != nil {
				c.file(&cfg)
			}
			_, err := applyEnv(&cfg, c.env)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
			if strings.Contains(err.Error(), "secretpw") || strings.Contains(err.Error(), "Injected") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}
