package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/k8s/internal/kubeapi"
)

// TestUsageErrors: bad invocations exit 2 with a message.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"mutate"}, `unknown command "mutate"`},
		{[]string{"serve"}, "--tls-cert-file and --tls-key-file"},
		{[]string{"serve", "--tls-cert-file", "/nonexistent.crt", "--tls-key-file", "/nonexistent.key"}, "reading the TLS certificate"},
		{[]string{"serve", "--tls-cert-file", "a", "--tls-key-file", "b", "--config", "/nonexistent.yaml"}, "loading injector config"},
	} {
		var stderr bytes.Buffer
		err := run(t.Context(), tc.args, &bytes.Buffer{}, &stderr)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want exit 2 saying %q", tc.args, err, tc.want)
		}
	}
}

// TestDev: the one command that shows the injector at work starts the
// real API server and prints an annotated pod that came out injected.
func TestDev(t *testing.T) {
	if _, _, err := kubeapi.Binaries(); err != nil {
		if os.Getenv("CHITTYID_TEST_REQUIRE_SERVERS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"dev", "--once"}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"id.chitty.cc/status: injected", "name: chittyid-sidecar", "restartPolicy: Always", "value: http://127.0.0.1:8787/v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev's output lacks %q:\n%s", want, out)
		}
	}
}
