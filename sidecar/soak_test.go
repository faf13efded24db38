package sidecar_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The soak runs only when asked:
//
//	go test ./sidecar/ -run TestSoak -count=1 -v -timeout 30m -soak.duration=10m -soak.rate=500
var (
	soakDuration = flag.Duration("soak.duration", 0, "run the soak for this long (0: skip)")
	soakRate     = flag.Int("soak.rate", 500, "soak requests per second")
	soakEvery    = flag.Duration("soak.sample", 5*time.Second, "soak sampling interval")
)

type soakSample struct {
	at                       time.Duration
	rssKB, fds, goroutines   int
	heapKB, requests, errors int64
}

// TestSoak drives a fixed request rate (validates of known and unknown IDs,
// mints) and samples RSS, open file descriptors, goroutines and heap; it
// fails if any keeps growing: the last third's average may not exceed the
// middle third's by more than a margin.
func TestSoak(t *testing.T) {
	if *soakDuration == 0 {
		t.Skip("set -soak.duration to run the soak")
	}
	// A small cache fills within the first minutes, so its growth to the cap
	// is not mistaken for a leak; the simulator keeps few minted IDs and the
	// harness keeps no logs, so what is measured is the sidecar.
	h := start(t, sim.Config{MaxMinted: 1000}, "log: {access: false}\nvalidate: {ttl: 30s, negativeTtl: 5s}\ncache: {maxSizeMB: 4, shards: 16}\n")
	h.logs.mu.Lock()
	h.logs.discard = true
	h.logs.mu.Unlock()
	h.waitState(fsm.Connected)
	known := make([]string, 100)
	for i := range known {
		known[i] = h.mustMint("PEO")
	}
	var (
		mu      sync.Mutex
		reqs    int64
		errs    int64
		samples []soakSample
	)
	tick := time.NewTicker(time.Second / time.Duration(*soakRate))
	defer tick.Stop()
	sample := time.NewTicker(*soakEvery)
	defer sample.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	began := time.Now()
	end := time.After(*soakDuration)
	for n := 0; ; n++ {
		select {
		case <-end:
			wg.Wait()
			report(t, samples)
			return
		case <-sample.C:
			mu.Lock()
			s := soakSample{at: time.Since(began).Round(time.Second), requests: reqs, errors: errs}
			mu.Unlock()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s.heapKB, s.goroutines, s.rssKB, s.fds = int64(ms.HeapAlloc>>10), runtime.NumGoroutine(), rssKB(), openFDs()
			samples = append(samples, s)
		case <-tick.C:
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				var r reply
				switch n % 10 {
				case 0:
					r = h.mint("EVNT")
				case 1, 2:
					r = h.validate(fmt.Sprintf("CT-Z-ZZZ-%04d-P-26-Z-0", n%10000))
				default:
					r = h.validate(known[n%len(known)])
				}
				mu.Lock()
				reqs++
				if r.status != 200 {
					errs++
				}
				mu.Unlock()
			}()
		}
	}
}

func report(t *testing.T, s []soakSample) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n| t | requests | errors | RSS MiB | heap MiB | goroutines | fds |\n|---|---|---|---|---|---|---|\n")
	for _, x := range s {
		fmt.Fprintf(&b, "| %v | %d | %d | %.1f | %.1f | %d | %d |\n", x.at, x.requests, x.errors, float64(x.rssKB)/1024, float64(x.heapKB)/1024, x.goroutines, x.fds)
	}
	t.Log(b.String())
	if len(s) < 6 {
		t.Fatalf("only %d samples: run longer", len(s))
	}
	third := len(s) / 3
	avg := func(part []soakSample, f func(soakSample) float64) float64 {
		sum := 0.0
		for _, x := range part {
			sum += f(x)
		}
		return sum / float64(len(part))
	}
	for _, m := range []struct {
		name  string
		f     func(soakSample) float64
		slack float64 // allowed growth, absolute
	}{
		{"RSS (KiB)", func(x soakSample) float64 { return float64(x.rssKB) }, 8 << 10},
		{"heap (KiB)", func(x soakSample) float64 { return float64(x.heapKB) }, 8 << 10},
		{"goroutines", func(x soakSample) float64 { return float64(x.goroutines) }, 50},
		{"open fds", func(x soakSample) float64 { return float64(x.fds) }, 50},
	} {
		mid, last := avg(s[third:2*third], m.f), avg(s[2*third:], m.f)
		if last > mid+m.slack {
			t.Errorf("%s keeps growing: middle third %.0f, last third %.0f", m.name, mid, last)
		}
	}
	if last := s[len(s)-1]; last.errors > 0 {
		t.Errorf("%d of %d requests failed", last.errors, last.requests)
	}
}

func rssKB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func openFDs() int {
	e, _ := os.ReadDir("/proc/self/fd")
	return len(e)
}
