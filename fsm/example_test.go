package fsm_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/chittyos/chittyid-sidecar/fsm"
)

func Example() {
	probe := func(ctx context.Context) error { return nil } // e.g. GET {url}/health, 2xx = nil
	lc := fsm.New(fsm.Defaults(), probe, fsm.Options{Logger: slog.New(slog.DiscardHandler)})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lc.Run(ctx) }() // the only goroutine that moves the state

	if err := lc.Wait(ctx, fsm.Connected); err != nil { // polls at once
		fmt.Println(err)
	}
	fmt.Println(lc.State())

	cancel() // shutdown: Run moves to DISCONNECTED and returns
	fmt.Println(<-done, lc.State())
	for _, t := range lc.Snapshot().Transitions {
		fmt.Printf("%s -> %s: %s\n", t.From, t.To, t.Reason)
	}
	// Output:
	// CONNECTED
	// <nil> DISCONNECTED
	// CONNECTING -> CONNECTED: poll ok
	// CONNECTED -> DISCONNECTED: shutdown
}
