package upstream_test

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestMayHaveProcessed: a mint's error says upstream may have minted when
// an attempt's answer was lost once the request was on its way (an answer
// cut short, a timeout, a 5xx other than 503), and not when the request
// certainly went unprocessed (no connection, 503, 429).
func TestMayHaveProcessed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault sim.Fault
		want  bool
	}{
		{"refused", sim.Fault{Mode: "refuse"}, false},
		{"503", sim.Fault{Mode: "status", Status: 503}, false},
		{"429", sim.Fault{Mode: "status", Status: 429}, false},
		{"500", sim.Fault{Mode: "status", Status: 500}, true},
		{"no answer in time", sim.Fault{Mode: "slow", Latency: "2s"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := setup(t, sim.Config{}, func(cfg *upstream.Config) { cfg.Timeout = 200 * time.Millisecond })
			if err := s.SetFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			_, err := c.Mint(ctxFor(t, time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
			if err == nil || upstream.MayHaveProcessed(err) != tc.want {
				t.Errorf("Mint: %v; may have processed %v, want %v", err, upstream.MayHaveProcessed(err), tc.want)
			}
		})
	}
	t.Run("answer cut short", func(t *testing.T) {
		t.Parallel()
		addr := cutServer(t)
		cfg := upstream.Defaults()
		cfg.URL, cfg.Token, cfg.AllowInsecure = "http://"+addr+"/v1", token, true
		cfg.Retry.MaxAttempts = 1
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		c, err := upstream.New(cfg, chittyid.FormatOfficial, upstream.NewBreaker(cfg.Breaker, nil), upstream.Options{Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		_, err = c.Mint(ctxFor(t, 2*time.Second), upstream.MintRequest{Entity: chittyid.EntityPEO}, "", upstream.CallInfo{})
		if !errors.Is(err, upstream.ErrUnavailable) || !upstream.MayHaveProcessed(err) {
			t.Errorf("Mint with the answer cut short: %v; may have processed %v, want true", err, upstream.MayHaveProcessed(err))
		}
	})
}

// cutServer answers every request with the first bytes of a 200 whose
// body never comes in full, then closes the connection, as a network that
// cuts an answer mid-body does.
func cutServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() { // owned by the test: its cleanup closes the listener and waits
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				req.Body.Close()
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\r\n{\"chittyId\":\"CT-A-"))
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
