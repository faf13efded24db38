package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseEnvOverrides(t *testing.T) {
	t.Parallel()
	const file = "listen: 127.0.0.1:8787\nupstream: {url: https://id.chitty.cc/v1, token: file-token}\n"
	for _, tc := range []struct {
		name                   string
		env                    map[string]string
		listen, url, wantToken string
	}{
		{"none", nil, "127.0.0.1:8787", "https://id.chitty.cc/v1", "file-token"},
		{"all", map[string]string{
			EnvListen: "127.0.0.2:9090", EnvServiceURL: "https://sim:8080/v1", EnvToken: "env-token",
		}, "127.0.0.2:9090", "https://sim:8080/v1", "env-token"},
		{"empty values count as unset", map[string]string{
			EnvListen: "", EnvServiceURL: "", EnvToken: "  ",
		}, "127.0.0.1:8787", "https://id.chitty.cc/v1", "file-token"},
		{"token is trimmed", map[string]string{EnvToken: "env-token\n"}, "127.0.0.1:8787", "https://id.chitty.cc/v1", "env-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(file), env(tc.env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Listen != tc.listen || c.Upstream.URL != tc.url || c.Upstream.Token.Reveal() != tc.wantToken {
				t.Errorf("listen, url, token = %q, %q, %q; want %q, %q, %q",
					c.Listen, c.Upstream.URL, c.Upstream.Token.Reveal(), tc.listen, tc.url, tc.wantToken)
			}
		})
	}
}

func TestParseNilLookupEnv(t *testing.T) {
	t.Parallel()
	if _, err := Parse([]byte("{}"), nil); err != nil {
		t.Fatalf("Parse with nil lookupEnv: %v", err)
	}
}

func TestParseEnvOverrideErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("listen: 127.0.0.1:8787\n"), env(map[string]string{
		EnvListen: ":8787", EnvServiceURL: "id.chitty.cc",
	}))
	checkErrs(t, err, []string{
		`env CHITTYID_SIDECAR_LISTEN: listen host must be an IP address or localhost, got ""`,
		`env CHITTYID_SERVICE_URL: upstream.url must be an http or https URL with a host, got "id.chitty.cc"`,
	})
}

func TestParseTokenPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", "  file-token\n")
	withFile := fmt.Sprintf("upstream: {tokenFile: %q, token: inline-token}\n", tokenFile)
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"tokenFile wins over env and token", withFile, map[string]string{EnvToken: "env-token"}, "file-token"},
		{"tokenFile wins over token", withFile, nil, "file-token"},
		{"env wins over token", "upstream: {token: inline-token}\n", map[string]string{EnvToken: "env-token"}, "env-token"},
		{"token alone", "upstream: {token: inline-token}\n", nil, "inline-token"},
		{"no token at all", "{}", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), env(tc.env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.Upstream.Token.Reveal(); got != tc.want {
				t.Errorf("token = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseTokenFileProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := writeFile(t, dir, "empty", " \n\t\n")
	spaced := writeFile(t, dir, "spaced", "two words\n")
	for _, tc := range []struct {
		name, path string
		wantErrs   []string
	}{
		{"missing", missing, []string{"line 2: upstream.tokenFile: open " + missing + ": no such file or directory"}},
		{"unreadable (a directory)", dir, []string{fmt.Sprintf("line 2: upstream.tokenFile: not a regular file: %q is a directory", dir)}},
		{"empty", empty, []string{fmt.Sprintf("line 2: upstream.tokenFile: %q: file is empty", empty)}},
		{"not header-safe", spaced, []string{fmt.Sprintf("line 2: upstream.tokenFile: %q: the token must be visible ASCII", spaced)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			yaml := fmt.Sprintf("upstream:\n  tokenFile: %q\n", tc.path)
			// The env token must not stand in for a broken token file.
			c, err := Parse([]byte(yaml), env(map[string]string{EnvToken: "env-token"}))
			if c != nil {
				t.Errorf("Parse returned a config: %+v", *c)
			}
			checkErrs(t, err, tc.wantErrs)
		})
	}
}

func TestParseTokenMustBeHeaderSafe(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("upstream:\n  token: \"a\\tb\"\n"), noEnv)
	checkErrs(t, err, []string{"line 2: upstream.token: the token must be visible ASCII characters without spaces"})
	_, err = Parse([]byte("{}"), env(map[string]string{EnvToken: "a b"}))
	checkErrs(t, err, []string{"env CHITTY_ID_TOKEN: upstream.token: the token must be visible ASCII"})
}

func TestTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-T0KEN-value"
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", secret+"\n")
	// Each file has the token set and other problems, so that Parse fails.
	bad := "upstream: {url: nope, token: " + secret + ", timeout: 5x, tokn: " + secret + "}\nlog: {level: loud}\n"
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
	}{
		{"inline token, bad file", bad, nil},
		{"env token, bad file", "upstream: {url: nope}\n", map[string]string{EnvToken: secret}},
		{"file token, bad file", fmt.Sprintf("upstream: {tokenFile: %q, url: nope}\n", tokenFile), nil},
		{"env token with a space", "{}", map[string]string{EnvToken: secret + " x"}},
		{"config file is the token", secret + "\n", nil},
		{"token as a section", "upstream: {token: {" + secret + ": 1}}\n", nil},
		{"token with an explicit int tag", "upstream: {token: !!int " + secret + "}\n", nil},
		{"token with an explicit bool tag", "upstream: {token: !!bool " + secret + "}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml), env(tc.env))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error reveals the token: %v", err)
			}
		})
	}
	for _, tc := range []struct{ name, yaml string }{
		{"token file", fmt.Sprintf("upstream: {tokenFile: %q}\n", tokenFile)},
		{"inline token", "upstream: {token: " + secret + "}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), noEnv)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Upstream.Token.Reveal() != secret {
				t.Fatalf("token = %q, want %q", c.Upstream.Token.Reveal(), secret)
			}
			for _, s := range []string{c.Summary(), fmt.Sprintf("%v %+v %#v %s", *c, *c, *c, c.Upstream.Token)} {
				if strings.Contains(s, secret) {
					t.Errorf("output reveals the token: %s", s)
				}
			}
		})
	}
}

// TestParsePasswordFile: fleet.redis.passwordFile is read and trimmed into
// the config, like the token file; its problems name the key and line and
// never show the content.
func TestParsePasswordFile(t *testing.T) {
	t.Parallel()
	const secret = "r3dis-PASS word"
	dir := t.TempDir()
	good := writeFile(t, dir, "password", "  "+secret+"\n")
	missing := filepath.Join(dir, "missing")
	empty := writeFile(t, dir, "empty", " \n")
	twoLines := writeFile(t, dir, "two", secret+"\nsecond line\n")
	file := func(path string) string {
		return fmt.Sprintf("fleet:\n  redis:\n    addrs: [redis:6379]\n    passwordFile: %q\n", path)
	}
	c, err := Parse([]byte(file(good)), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Fleet.Redis.Password.Reveal() != secret {
		t.Errorf("password %q, want %q", c.Fleet.Redis.Password.Reveal(), secret)
	}
	for _, s := range []string{fmt.Sprintf("%v %+v %#v", *c, *c, *c)} {
		if strings.Contains(s, secret) {
			t.Errorf("output reveals the password: %s", s)
		}
	}
	for _, tc := range []struct {
		name, path string
		wantErrs   []string
	}{
		{"missing", missing, []string{"line 4: fleet.redis.passwordFile: open " + missing + ": no such file or directory"}},
		{"a directory", dir, []string{fmt.Sprintf("line 4: fleet.redis.passwordFile: not a regular file: %q is a directory", dir)}},
		{"empty", empty, []string{fmt.Sprintf("line 4: fleet.redis.passwordFile: %q: file is empty", empty)}},
		{"two lines", twoLines, []string{fmt.Sprintf("line 4: fleet.redis.passwordFile: %q: the password must be one line", twoLines)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(file(tc.path)), noEnv)
			checkErrs(t, err, tc.wantErrs)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
	// Without the fleet tier the file is refused, not read.
	_, err = Parse([]byte(fmt.Sprintf("fleet: {redis: {passwordFile: %q}}\n", good)), noEnv)
	checkErrs(t, err, []string{"line 1: fleet.redis.passwordFile is set but fleet.redis.addrs is empty"})
}

// The OpenTelemetry variables configure tracing where the file is silent,
// and a bad one is named in the error.
func TestParseTracingEnv(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("tracing: {sampleRatio: 0.5}\n"), env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
		"OTEL_TRACES_SAMPLER":         "always_on",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Export.URL != "http://127.0.0.1:4318/v1/traces" || c.Tracing.SampleRatio != 0.5 {
		t.Errorf("tracing = %+v: want the env endpoint and the file's ratio", c.Tracing)
	}
	_, err = Parse([]byte("listen: 127.0.0.1:0\n"), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector"}))
	if err == nil || !strings.Contains(err.Error(), "tracing.endpoint") || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("error %v: want tracing.endpoint named with the variable it came from", err)
	}
}
