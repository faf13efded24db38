package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// (m) Scrape cost: what one /metrics scrape costs the sidecar, idle and
// after a workload, for the sidecar built here and, with --alt, the other
// tree (before and after a change, in one run).

// scrapesPerMeasure is how many scrapes one CPU measurement spans: the
// process's CPU time is counted in 10 ms ticks.
const scrapesPerMeasure = 1000

// scrapeCost is one contender's scrape in one phase.
type scrapeCost struct {
	Contender, Phase string
	Series           int           // samples: lines that are neither empty nor comments
	Bytes, GzipBytes int           // the text format, as is and gzip-compressed
	CPUPerScrape     time.Duration // the sidecar's CPU time per gzip scrape
	P50              time.Duration // one scrape's time, on one keep-alive connection
	Scrapes          int
}

// scrapeClient sends its own Accept-Encoding, so gzip bodies are counted
// as sent.
var scrapeClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1}}

// scrape fetches /metrics once, gzip-compressed or not, and returns the
// body as sent.
func scrape(ctx context.Context, addr string, gzip bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if gzip { // as Prometheus asks
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("scraping %s: status %d", addr, resp.StatusCode)
	}
	return b, err
}

// measureScrape measures sc's scrape: its size, then the CPU time the
// sidecar spends on scrapesPerMeasure gzip scrapes in a row (after 50
// unmeasured ones) and their median time.
func (b *bench) measureScrape(ctx context.Context, contender, phase string, sc *sidecarProc) (scrapeCost, error) {
	c := scrapeCost{Contender: contender, Phase: phase, Scrapes: scrapesPerMeasure}
	plain, err := scrape(ctx, sc.addr, false)
	if err != nil {
		return c, err
	}
	c.Bytes = len(plain)
	for line := range strings.SplitSeq(string(plain), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			c.Series++
		}
	}
	for range 50 {
		if _, err := scrape(ctx, sc.addr, true); err != nil {
			return c, err
		}
	}
	path := fmt.Sprintf("/proc/%d/stat", sc.p.pid())
	before, _, err := procTicks(path)
	if err != nil {
		return c, err
	}
	took := make([]time.Duration, 0, scrapesPerMeasure)
	for range scrapesPerMeasure {
		began := time.Now()
		body, err := scrape(ctx, sc.addr, true)
		if err != nil {
			return c, err
		}
		took = append(took, time.Since(began))
		c.GzipBytes = len(body)
	}
	after, _, err := procTicks(path)
	if err != nil {
		return c, err
	}
	c.CPUPerScrape = time.Duration(after-before) * (time.Second / clockTicks) / scrapesPerMeasure
	slices.Sort(took)
	c.P50 = took[len(took)/2]
	b.logf("(m) %s, %s: %d series, %d bytes (%d gzip), %v CPU and %v per scrape", contender, phase, c.Series, c.Bytes, c.GzipBytes, c.CPUPerScrape, c.P50)
	return c, nil
}

// scrapeWorkload touches every route of every family of routes, the API's
// error statuses and upstream failures (a 401, a 503 retried, a timeout),
// and the fleet tier (misses and puts, hits on verdicts a mint stored), so
// that the series a first use creates are there.
func (b *bench) scrapeWorkload(ctx context.Context, sc *sidecarProc, sim *simProc) error {
	base := "http://" + sc.addr
	type req struct {
		method, path, ctype, body string
		header                    [2]string
	}
	var reqs []req
	for _, p := range []string{"/v1", "/api/v1", ""} {
		reqs = append(reqs,
			req{"POST", p + "/mint", "application/json", `{"entity":"PEO"}`, [2]string{}},
			req{"POST", p + "/mint/batch", "application/json", `{"requests":[{"entity":"PEO"},{"entity":"EVNT"}]}`, [2]string{}},
			req{"GET", p + "/validate/CT-Z-QQQ-0001-P-26-Z-9", "", "", [2]string{}},
			req{"POST", p + "/validate", "application/json", `{"chittyId":"CT-Z-QQQ-0002-P-26-Z-9"}`, [2]string{}},
			req{"GET", p + "/health", "", "", [2]string{}},
			req{"GET", p + "/no-such-route", "", "", [2]string{}})
	}
	reqs = append(reqs,
		req{"GET", "/api/get-chittyid?type=PEO", "", "", [2]string{}},
		req{"GET", "/generate?type=PEO", "", "", [2]string{}},
		req{"POST", "/api/validate", "application/json", `{"chittyId":"CT-Z-QQQ-0003-P-26-Z-9"}`, [2]string{}},
		req{"GET", "/api/health", "", "", [2]string{}},
		req{"GET", "/api/spec", "", "", [2]string{}},
		req{"GET", "/healthz", "", "", [2]string{}},
		req{"GET", "/readyz", "", "", [2]string{}},
		req{"GET", "/v1/validate/not-an-id", "", "", [2]string{}},
		req{"POST", "/v1/mint", "application/json", `nope`, [2]string{}},
		req{"POST", "/v1/mint", "application/json", `{"entity":"DOG"}`, [2]string{}},
		req{"POST", "/v1/mint", "text/plain", `{"entity":"PEO"}`, [2]string{}},
		req{"POST", "/v1/mint", "application/json", `{"entity":"PEO"}`, [2]string{"Sec-Fetch-Site", "cross-site"}},
		req{"DELETE", "/v1/mint", "", "", [2]string{}},
	)
	send := func(r req) error {
		hr, err := http.NewRequestWithContext(ctx, r.method, base+r.path, strings.NewReader(r.body))
		if err != nil {
			return err
		}
		if r.ctype != "" {
			hr.Header.Set("Content-Type", r.ctype)
		}
		if r.header[0] != "" {
			hr.Header.Set(r.header[0], r.header[1])
		}
		resp, err := httpClient.Do(hr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", r.method, r.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	for _, r := range reqs {
		if err := send(r); err != nil {
			return err
		}
	}
	// Validates of what the mints stored: local hits.
	var minted struct {
		ChittyID string `json:"chittyId"`
	}
	if _, err := call(ctx, http.MethodPost, base+"/v1/mint", "", map[string]string{"entity": "INFO"}, &minted); err != nil {
		return err
	}
	for range 3 {
		if err := send(req{"GET", "/v1/validate/" + minted.ChittyID, "", "", [2]string{}}); err != nil {
			return err
		}
	}
	for _, f := range []string{
		`{"mode":"status","status":401,"routes":["mint"],"count":1}`,
		`{"mode":"status","status":503,"routes":["mint"],"count":2}`,
		`{"mode":"status","status":503,"routes":["validate"],"count":1}`,
		`{"mode":"ok"}`,
	} {
		if _, err := call(ctx, http.MethodPost, sim.ctlURL+"/sim/faults", "", jsonRaw(f), nil); err != nil {
			return err
		}
		if f == `{"mode":"ok"}` {
			break
		}
		if err := send(req{"POST", "/v1/mint", "application/json", `{"entity":"PEO"}`, [2]string{}}); err != nil {
			return err
		}
		if err := send(req{"GET", "/v1/validate/CT-Z-QQQ-0004-P-26-Z-9", "", "", [2]string{}}); err != nil {
			return err
		}
	}
	return nil
}

// jsonRaw is a JSON text that call sends as it is.
type jsonRaw string

func (j jsonRaw) MarshalJSON() ([]byte, error) { return []byte(j), nil }

// scenarioM measures the scrape of a sidecar with the bench config and
// the fleet tier on (its own Redis), idle and after scrapeWorkload, for
// each contender: the sidecar built here and the --alt tree's.
func (b *bench) scenarioM(ctx context.Context) error {
	redisAddr, _, err := b.startRedis(ctx)
	if err != nil {
		return err
	}
	sim, err := b.startSim(ctx, "sim-m", 0)
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(b.work, "conf", "token")
	if err := os.WriteFile(tokenFile, []byte(b.token+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the token file: %w", err)
	}
	contenders := [][2]string{{"sidecar", b.sidecarBin}}
	if b.altBin != "" {
		contenders = append(contenders, [2]string{"sidecar-alt", b.altBin})
	}
	for _, c := range contenders {
		name, bin := c[0], c[1]
		cfg := sidecarConfig("%s", sim.addr, tokenFile, 256) +
			fmt.Sprintf("fleet:\n  redis: {addrs: [%q]}\n  keyPrefix: %q\n", redisAddr, "m-"+name+":")
		sc, err := b.startSidecarConfig(ctx, bin, "m-"+name, cfg)
		if err != nil {
			return err
		}
		if err := pause(ctx, 2*time.Second); err != nil {
			return err
		}
		idle, err := b.measureScrape(ctx, name, "idle", sc)
		if err != nil {
			return err
		}
		if err := b.scrapeWorkload(ctx, sc, sim); err != nil {
			return err
		}
		busy, err := b.measureScrape(ctx, name, "after the workload", sc)
		if err != nil {
			return err
		}
		b.res.M = append(b.res.M, idle, busy)
		sc.p.stop()
	}
	return nil
}

func (w *report) scenarioM() {
	if len(w.r.M) == 0 {
		return
	}
	w.f("\n## (m) Scrape cost: one /metrics scrape, idle and after a workload\n\n")
	w.f("A sidecar with the bench config and the fleet tier on (a Redis of its own), scraped on one keep-alive connection as Prometheus does (text format, `Accept-Encoding: gzip`): 50 unmeasured scrapes, then %d in a row. Series: the lines that are neither empty nor comments (`curl -s …/metrics | grep -vc '^#'`). Server CPU: the sidecar's user + system time over the %d scrapes (from `/proc/PID/stat`), divided by them. The workload touches every route of every family, the API's error statuses, upstream failures (401, 503 retried) and the fleet tier.", scrapesPerMeasure, scrapesPerMeasure)
	if w.r.AltSource != "" {
		w.f(" `sidecar-alt`: %s.", w.r.AltSource)
	}
	w.f("\n\n| sidecar | phase | series | bytes | gzip bytes | server CPU / scrape | scrape p50 |\n|---|---|---|---|---|---|---|\n")
	for _, c := range w.r.M {
		w.f("| %s | %s | %d | %d | %d | %s | %s |\n", c.Contender, c.Phase, c.Series, c.Bytes, c.GzipBytes,
			us(float64(c.CPUPerScrape.Microseconds())), us(float64(c.P50.Microseconds())))
	}
}
