package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/tracing/jaegerproc"
)

// devJaeger is dev --tracing's Jaeger; nil without it (every method then
// does nothing).
type devJaeger struct {
	*jaegerproc.Process
	dir string
}

// startDevJaeger starts Jaeger on free loopback ports, its config and log
// in a temporary directory removed at exit. Without a jaeger binary it
// says so on stderr and returns nil: dev runs without spans.
func startDevJaeger(ctx context.Context, stderr io.Writer) (*devJaeger, error) {
	bin, err := jaegerproc.Find(os.LookupEnv)
	if errors.Is(err, jaegerproc.ErrNotFound) {
		fmt.Fprintf(stderr, "dev --tracing: Jaeger is not installed, running without spans: %v\n", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chittyid-dev-jaeger-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p, err := jaegerproc.Start(ctx, bin, dir)
	if err != nil {
		return nil, fmt.Errorf("dev --tracing: starting Jaeger (%s): %w", bin, err) // its log stays in dir
	}
	return &devJaeger{Process: p, dir: dir}, nil
}

// config is the tracing section that sends every request's spans to it.
func (j *devJaeger) config() string {
	if j == nil {
		return ""
	}
	return fmt.Sprintf("tracing: {endpoint: %q, sampleRatio: 1}\n", j.OTLPEndpoint())
}

func (j *devJaeger) print(w io.Writer) {
	if j == nil {
		return
	}
	fmt.Fprintf(w, "\ntraces (Jaeger UI):   %s  (service chittyid-sidecar; spans of requests that go upstream, and of any whose traceparent is sampled)\n", j.UIURL())
}

func (j *devJaeger) stop() {
	if j == nil {
		return
	}
	j.Stop()
	_ = os.RemoveAll(j.dir)
}
