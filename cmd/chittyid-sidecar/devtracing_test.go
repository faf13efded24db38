package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc/jaegertest"
)

// TestDevTracing: dev --tracing starts Jaeger, prints its UI address, the
// warm-up mint's trace reaches it, and Jaeger stops with dev.
func TestDevTracing(t *testing.T) {
	t.Parallel()
	if _, err := jaegerproc.Find(os.LookupEnv); errors.Is(err, jaegerproc.ErrNotFound) && os.Getenv(jaegertest.RequireEnv) != "1" {
		t.Skip(err)
	}
	dev := startBackground(t, "dev", "--tracing", "--listen", "127.0.0.1:0")
	dev.await(t, &dev.out, "Jaeger UI")
	m := regexp.MustCompile(`traces \(Jaeger UI\): +(\S+)`).FindStringSubmatch(dev.out.String())
	if m == nil {
		t.Fatalf("dev --tracing printed no Jaeger UI address:\n%s", dev.out.String())
	}
	ui := m[1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(ui + "api/services")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `"chittyid-sidecar"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger at %s has no chittyid-sidecar spans: %s", ui, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := dev.stop(); err != nil {
		t.Fatalf("dev returned %v; stderr: %s", err, dev.errOut.String())
	}
	if resp, err := http.Get(ui); err == nil {
		resp.Body.Close()
		t.Errorf("Jaeger at %s still answers after dev stopped", ui)
	}
}
