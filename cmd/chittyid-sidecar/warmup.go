package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// warmUpTimeout bounds how long dev waits for its sidecars before it
// prints what to try.
const warmUpTimeout = 10 * time.Second

// warmUp waits until every sidecar at bases is ready, then mints one ID
// through mintBase, as an app would, so that dev's examples can use an
// ID that exists (and is cached). It returns the ID, or why there is none.
func warmUp(ctx context.Context, mintBase string, bases ...string) (string, error) {
	c := &http.Client{}
	for _, b := range bases {
		if err := awaitReady(ctx, c, b); err != nil {
			return "", err
		}
	}
	return devMint(ctx, c, mintBase)
}

// awaitReady polls base's /readyz until it answers 200 or ctx ends.
func awaitReady(ctx context.Context, c *http.Client, base string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("asking %s whether it is ready: %w", base, err)
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready in time: %w", base, ctx.Err())
		case <-tick.C:
		}
	}
}

// devMint mints one PEO through the sidecar at base and returns its ID.
func devMint(ctx context.Context, c *http.Client, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/mint", strings.NewReader(`{"entity":"PEO"}`))
	if err != nil {
		return "", fmt.Errorf("minting an ID to try: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("minting an ID to try: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		ChittyID string `json:"chittyId"`
		Error    string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body); err != nil {
		return "", fmt.Errorf("minting an ID to try: HTTP %d, %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || body.ChittyID == "" {
		return "", fmt.Errorf("minting an ID to try: HTTP %d %s", resp.StatusCode, body.Error)
	}
	return body.ChittyID, nil
}
