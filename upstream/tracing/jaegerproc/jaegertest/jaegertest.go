// Package jaegertest starts a Jaeger for a test (jaegerproc), stopped when
// the test ends. Without a jaeger binary the test is skipped, or fails
// when CHITTYID_TEST_REQUIRE_SERVERS=1 (as CI sets it, after building it
// with .ci/jaeger-tool).
package jaegertest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc"
)

// RequireEnv makes a missing Jaeger a failure instead of a skip.
const RequireEnv = "CHITTYID_TEST_REQUIRE_SERVERS"

// Start runs a Jaeger for t.
func Start(t testing.TB) *jaegerproc.Process {
	t.Helper()
	bin, err := jaegerproc.Find(os.LookupEnv)
	if errors.Is(err, jaegerproc.ErrNotFound) && os.Getenv(RequireEnv) != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Its config and log go to a directory kept when the test fails, so
	// the failure can name the log instead of printing it.
	dir, err := os.MkdirTemp("", "jaegertest-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := jaegerproc.Start(ctx, bin, dir)
	if err != nil {
		t.Fatal(err) // names the log, which stays
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("Jaeger's log: %s", p.LogFile)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return p
}
