package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// httpClient is for setup and checks, not for load.
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512, IdleConnTimeout: 30 * time.Second},
}

// call sends one request and decodes a JSON answer into v (if not nil).
// It returns the answer's headers.
func call(ctx context.Context, method, url, token string, body, v any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the body for %s: %w", url, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Header, fmt.Errorf("%s %s: status %d: %.300s", method, url, resp.StatusCode, raw)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return resp.Header, fmt.Errorf("decoding the answer of %s: %w: %.300s", url, err, raw)
		}
	}
	return resp.Header, nil
}

// mintMany mints n IDs through base (a sidecar, or a simulator when token
// is set) in batches of batch, conc batches at a time, and returns them.
func mintMany(ctx context.Context, base, token string, n, batch, conc int) ([]string, error) {
	entities := []string{"PEO", "PLACE", "PROP", "EVNT", "AUTH", "INFO", "FACT", "CONTEXT", "ACTOR"}
	ids := make([]string, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for start := 0; start < n; start += batch {
		g.Go(func() error {
			k := min(batch, n-start)
			reqs := make([]map[string]string, k)
			for i := range reqs {
				reqs[i] = map[string]string{"entity": entities[(start+i)%len(entities)]}
			}
			var ans struct {
				ChittyIDs []string `json:"chittyIds"`
			}
			body := map[string]any{"requests": reqs}
			if _, err := call(gctx, http.MethodPost, base+"/v1/mint/batch", token, body, &ans); err != nil {
				return err
			}
			if len(ans.ChittyIDs) != k {
				return fmt.Errorf("batch of %d answered %d IDs", k, len(ans.ChittyIDs))
			}
			copy(ids[start:], ans.ChittyIDs)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return ids, nil
}

// validateAll validates every ID once through base, conc at a time, and
// counts the X-Cache values of the answers. Every answer must be valid.
func validateAll(ctx context.Context, base string, ids []string, conc int) (map[string]int, error) {
	var mu sync.Mutex
	seen := map[string]int{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, id := range ids {
		g.Go(func() error {
			var ans struct {
				Valid bool `json:"valid"`
			}
			h, err := call(gctx, http.MethodGet, base+"/v1/validate/"+id, "", nil, &ans)
			if err != nil {
				return err
			}
			if !ans.Valid {
				return fmt.Errorf("%s answered not valid for %s", base, id)
			}
			mu.Lock()
			seen[h.Get("X-Cache")]++
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return seen, err
}

// simStats is GET /sim/stats.
type simStats struct {
	Mint, Batch, Validate, Health, Minted int64
}

func (s *simProc) stats(ctx context.Context) (simStats, error) {
	var st simStats
	_, err := call(ctx, http.MethodGet, s.ctlURL+"/sim/stats", "", nil, &st)
	return st, err
}

// cacheStats is the cache part of the sidecar's /health.
type cacheStats struct {
	Hits, Misses, Evictions, Coalesced, Size, Bytes int64
}

func (s *sidecarProc) cacheStats(ctx context.Context) (cacheStats, error) {
	var doc struct {
		Resilience struct {
			Cache cacheStats `json:"cache"`
		} `json:"resilience"`
	}
	_, err := call(ctx, http.MethodGet, "http://"+s.addr+"/health", "", nil, &doc)
	return doc.Resilience.Cache, err
}

// burst is the outcome of n simultaneous requests.
type burst struct {
	OK, Valid int            // 200 answers; of which valid:true
	Statuses  map[int]int    // every status seen
	XCache    map[string]int // X-Cache values seen
	Spread    time.Duration  // first write to last write
}

// concurrentGet opens n connections to addr, then sends GET path on all of
// them at once and reads every answer.
func concurrentGet(ctx context.Context, addr, path string, n int) (burst, error) {
	out := burst{Statuses: map[int]int{}, XCache: map[string]int{}}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var d net.Dialer
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return out, fmt.Errorf("opening connection %d to %s: %w", len(conns)+1, addr, err)
		}
		conns = append(conns, c)
	}
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	var mu sync.Mutex
	var first, last time.Time
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(req); err != nil {
				errs <- err
				return
			}
			now := time.Now()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if first.IsZero() || now.Before(first) {
				first = now
			}
			if now.After(last) {
				last = now
			}
			out.Statuses[resp.StatusCode]++
			out.XCache[resp.Header.Get("X-Cache")]++
			if resp.StatusCode == http.StatusOK {
				out.OK++
				if bytes.Contains(body, []byte(`"valid":true`)) {
					out.Valid++
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	out.Spread = last.Sub(first)
	return out, <-errs
}

// writeIDs writes ids one per line.
func writeIDs(path string, ids []string) error {
	if err := os.WriteFile(path, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
