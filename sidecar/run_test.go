package sidecar_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
)

// TestRunStopsWhenCancelledRightAway covers a stop that arrives before
// fasthttp's Serve has registered the listener, where its Shutdown alone
// would be a no-op and Serve would block forever.
func TestRunStopsWhenCancelledRightAway(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte("upstream: {url: http://127.0.0.1:1/v1}\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		sc, err := sidecar.New(cfg, sidecar.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- sc.Run(ctx, ln) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
	}
}
