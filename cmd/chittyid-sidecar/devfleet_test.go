package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
)

// TestDevFleet: dev --fleet 3 starts three sidecars and a redis-server,
// prints every sidecar's URL and Redis' address; an ID minted through the
// first validates on the third as a fleet HIT; a cancel stops everything,
// Redis included.
func TestDevFleet(t *testing.T) {
	t.Parallel()
	redistest.Binary(t)
	dev := startBackground(t, "dev", "--fleet", "3", "--listen", "127.0.0.1:0")
	for i := 1; i <= 3; i++ {
		dev.await(t, &dev.errOut, `msg="fleet tier up: Redis answers" sidecar=`+strconv.Itoa(i))
	}
	dev.await(t, &dev.out, "Ctrl-C stops them all")
	urls := map[int]string{}
	for _, m := range regexp.MustCompile(`sidecar (\d):\s+(http://\S+)`).FindAllStringSubmatch(dev.out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		urls[n] = m[2]
	}
	redis := regexp.MustCompile(`redis:\s+(\S+)`).FindStringSubmatch(dev.out.String())
	if len(urls) != 3 || redis == nil {
		t.Fatalf("dev --fleet 3 printed %d sidecar URLs and redis %v:\n%s", len(urls), redis, testout.Cut(t, "stdout.txt", dev.out.String(), nil))
	}

	// dev minted one ID through sidecar 1 and prints its validate at sidecar 3.
	minted := regexp.MustCompile(`minted (\S+); try:\n  curl -si (\S+)/v1/validate/(\S+)\n`).FindStringSubmatch(dev.out.String())
	if minted == nil || minted[2] != urls[3] || minted[3] != minted[1] {
		t.Fatalf("dev --fleet 3 printed no validate at sidecar 3 of an ID it minted:\n%s", dev.out.String())
	}
	resp, err := http.Get(urls[3] + "/v1/validate/" + minted[1])
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A MISS only if a call to Redis failed (dev's fleet.timeout is the
	// default 25ms, which a busy machine can miss): the sidecar 1 stored
	// it, or sidecar 3 looked it up.
	if got := resp.Header.Get("X-Cache") + " " + resp.Header.Get("X-Cache-Tier"); resp.StatusCode != 200 ||
		(got != "HIT fleet" && (got != "MISS " || fleetFailures(t, urls[1])+fleetFailures(t, urls[3]) == 0)) {
		t.Errorf("validate on sidecar 3 of an ID minted on sidecar 1: HTTP %d, %q, want HIT fleet", resp.StatusCode, got)
	}

	if err := dev.stop(); err != nil {
		t.Fatalf("dev --fleet returned %v after cancel; stderr: %s", err, testout.Last(t, "stderr.txt", dev.errOut.String(), nil))
	}
	if c, err := net.DialTimeout("tcp", redis[1], time.Second); err == nil {
		c.Close()
		t.Errorf("redis-server still answers on %s after dev stopped", redis[1])
	}
}

// fleetFailures is a sidecar's fleet calls that failed or were skipped,
// from /health.
func fleetFailures(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Fleet struct{ Stats struct{ Errors, Skipped int } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("%s/health: %v", base, err)
	}
	return doc.Fleet.Stats.Errors + doc.Fleet.Stats.Skipped
}

// TestDevFleetWithoutRedis: without a redis-server dev --fleet says what
// to install and exits 2, starting nothing.
func TestDevFleetWithoutRedis(t *testing.T) {
	t.Parallel()
	code, out := exitCode(t, "dev", "--fleet", "2", "--listen", "127.0.0.1:0", "--redis-server", "/nonexistent/redis-server")
	if code != 2 || !strings.Contains(out, "dev --fleet needs redis-server") || !strings.Contains(out, "apt-get install redis-server") {
		t.Errorf("exit code %d, output:\n%s\nwant 2 and how to install redis-server", code, out)
	}
	if strings.Contains(out, "sidecar 1:") {
		t.Errorf("started sidecars without Redis:\n%s", out)
	}
}
