package sidecar_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/chittyos/chittyid-sidecar/cache/fleet"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The network drill: the fault drill's load and invariants (drillkit_test.go)
// with the faults below HTTP. A Toxiproxy server of the test's own sits
// between the sidecar and upstream (the simulator) and between the sidecar
// and its fleet tier's Redis (a real redis-server), and the drill cycles
// its toxics on both links at once: latency with jitter, a bandwidth
// limit, bytes sliced and delayed, the connection cut after a few hundred
// bytes (mid-body), connections reset, and a black hole. CI runs one short
// cycle; the long run is
//
//	go test ./sidecar/ -run TestNetworkDrill -count=1 -v -timeout 60m -netdrill.phase=20s -netdrill.cycles=3 -drill.workers=16
var (
	netDrillPhase  = flag.Duration("netdrill.phase", time.Second, "how long each fault of the network drill lasts")
	netDrillCycles = flag.Int("netdrill.cycles", 1, "how many times the network drill goes through its faults")
)

// netDrillFleet is the fleet section of the network drill, Redis at
// {redis}: fleet.timeout is short, so that Redis' faults reach the tier's
// deadline. The fleet mint limit is on, far above the load, so that each
// mint asks Redis too and fails open when it must.
const netDrillFleet = `fleet:
  redis: {addrs: ["{redis}"]}
  timeout: 50ms
  lockTtl: 1s
rateLimit: {mint: {fleetPerMinute: 600000, fleetBurst: 100}}
`

// toxic is one Toxiproxy toxic: its type, its direction ("downstream":
// answers, "upstream": requests), the share of connections it applies to,
// and its attributes.
type toxic struct {
	kind     string
	stream   string
	toxicity float32
	attrs    toxiproxy.Attributes
}

// netFault is one phase of the network drill: the toxics on the upstream
// link and on the Redis link.
type netFault struct {
	name            string
	upstream, redis []toxic
}

// netFaults are the drill's faults, in the order played. Upstream answers
// within 300ms (upstream.timeout); Redis within 50ms (fleet.timeout).
func netFaults() []netFault {
	down := func(kind string, attrs toxiproxy.Attributes) toxic { return toxic{kind, "downstream", 1, attrs} }
	both := func(kind string, toxicity float32, attrs toxiproxy.Attributes) []toxic {
		return []toxic{{kind, "downstream", toxicity, attrs}, {kind, "upstream", toxicity, attrs}}
	}
	return []netFault{
		{"latency 150ms ± 150ms / Redis 30ms ± 30ms",
			[]toxic{down("latency", toxiproxy.Attributes{"latency": 150, "jitter": 150})},
			[]toxic{down("latency", toxiproxy.Attributes{"latency": 30, "jitter": 30})}},
		{"bandwidth 2 KB/s / Redis 4 KB/s",
			[]toxic{down("bandwidth", toxiproxy.Attributes{"rate": 2})},
			[]toxic{down("bandwidth", toxiproxy.Attributes{"rate": 4})}},
		{"slicer: 1-24 bytes, 2ms apart / Redis 0.5ms apart",
			both("slicer", 1, toxiproxy.Attributes{"average_size": 12, "size_variation": 11, "delay": 2000}),
			both("slicer", 1, toxiproxy.Attributes{"average_size": 12, "size_variation": 11, "delay": 500})},
		{"limit_data: cut after 700 bytes / Redis 300 bytes",
			[]toxic{down("limit_data", toxiproxy.Attributes{"bytes": 700})},
			[]toxic{down("limit_data", toxiproxy.Attributes{"bytes": 300})}},
		{"reset_peer: half the connections reset",
			both("reset_peer", 0.5, toxiproxy.Attributes{"timeout": 0}),
			both("reset_peer", 0.5, toxiproxy.Attributes{"timeout": 0})},
		{"timeout: black hole",
			[]toxic{down("timeout", toxiproxy.Attributes{"timeout": 0})},
			[]toxic{down("timeout", toxiproxy.Attributes{"timeout": 0})}},
	}
}

// addToxics puts ts on p, naming them after the phase; it returns their
// names.
func addToxics(t *testing.T, p *toxiproxy.Proxy, ts []toxic) []string {
	t.Helper()
	var names []string
	for i, x := range ts {
		name := fmt.Sprintf("%s-%s-%d", x.kind, x.stream, i)
		if _, err := p.AddToxic(name, x.kind, x.stream, x.toxicity, x.attrs); err != nil {
			t.Fatalf("adding the toxic %s to %s: %v", name, p.Name, err)
		}
		names = append(names, name)
	}
	return names
}

func removeToxics(t *testing.T, p *toxiproxy.Proxy, names []string) {
	t.Helper()
	for _, name := range names {
		if err := p.RemoveToxic(name); err != nil {
			t.Fatalf("removing the toxic %s from %s: %v", name, p.Name, err)
		}
	}
}

func TestNetworkDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds toxiproxy-server")
	}
	redis := startRedis(t)
	toxi := startToxiproxy(t)
	ledger := newDrillLedger()
	s, err := sim.Start(sim.Config{Token: testToken, OnMint: ledger.onMint}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	upLink := toxi.proxy(t, "upstream", s.APIAddr())
	redisLink := toxi.proxy(t, "redis", redis.Addr)

	cfg := strings.Replace(drillConfig, "upstream:\n", "upstream:\n  url: http://"+upLink.Listen+"/v1\n", 1) +
		strings.Replace(netDrillFleet, "{redis}", redisLink.Listen, 1)
	h := newHarness(t)
	h.sim = s
	h.run(configFor(s, sim.Config{}, cfg), false, sidecar.Timeouts{})
	ledger.tapAudit(h)
	h.waitState(fsm.Connected)
	h.waitFleet(fleet.StateUp)
	known := make([]string, 20)
	for i := range known {
		known[i] = h.mustMint("PEO")
	}
	base := takeDrillBaseline()
	baseUpConns, baseRedisConns := s.OpenConns(), redis.connectedClients()

	load := startDrillLoad(h.base, known, ledger, *drillWorkers)
	type netRow struct {
		drillRow
		fleet string // the fleet tier's state at the phase's end
	}
	var rows []netRow
	applied := map[string]int{} // toxics put on a link, by type
	phase := func(name string, f *netFault) {
		st := load.next()
		began := time.Now()
		var onUp, onRedis []string
		if f != nil {
			onUp, onRedis = addToxics(t, upLink, f.upstream), addToxics(t, redisLink, f.redis)
			for _, x := range slices.Concat(f.upstream, f.redis) {
				applied[x.kind]++
			}
		}
		time.Sleep(*netDrillPhase) // the drill is load over time: the phase length is the point
		hd := h.do("GET", "/health", "")
		state, _ := hd.body["connection"].(map[string]any)["state"].(string)
		fl, _ := hd.body["fleet"].(map[string]any)["state"].(string)
		rows = append(rows, netRow{drillRow{name, began, st, state, hd.status}, fl})
		removeToxics(t, upLink, onUp)
		removeToxics(t, redisLink, onRedis)
	}
	phase("none", nil)
	for range *netDrillCycles {
		for _, f := range netFaults() {
			phase(f.name, &f)
		}
	}
	phase("none (recovery)", nil)
	// Every toxic is gone: the link and the tier come back by themselves.
	h.waitState(fsm.Connected)
	h.waitFleet(fleet.StateUp)
	load.finish()
	h.sc.WaitLateAnswers() // the audit lines of mints answered, or not, after their callers gave up

	r := &drillReport{t: t}
	plain := make([]drillRow, len(rows))
	for i, row := range rows {
		plain[i] = row.drillRow
	}
	r.table(plain, "fleet tier at end", func(row drillRow) string {
		i := slices.IndexFunc(rows, func(n netRow) bool { return n.began == row.began })
		return rows[i].fleet
	})
	tot := r.checkAnswers(plain, ledger, known)
	hd := h.do("GET", "/health", "")
	link, _ := hd.body["connection"].(map[string]any)["state"].(string)
	tier, _ := hd.body["fleet"].(map[string]any)["state"].(string)
	r.check("link back to CONNECTED and the fleet tier up after the faults", link == "CONNECTED" && tier == "up" && hd.status == 200,
		fmt.Sprintf("link %s, fleet tier %s, /health %d", link, tier, hd.status))
	var skipped []string
	for _, row := range rows {
		if row.fleet != "up" {
			skipped = append(skipped, row.name)
		}
	}
	r.check("the fleet tier was skipped during some fault", len(skipped) > 0, "it was up at the end of every phase")
	upConns, redisConns := settleConns(s, redis, baseUpConns, baseRedisConns)
	r.check("connections to upstream and Redis back to their baseline", upConns <= baseUpConns && redisConns <= baseRedisConns,
		fmt.Sprintf("upstream %d (baseline %d), Redis %d (baseline %d)", upConns, baseUpConns, redisConns, baseRedisConns))

	var kinds []string
	for k, n := range applied {
		kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(kinds)
	var requests int
	for _, row := range plain {
		requests += row.stats.requests
	}
	fmt.Fprintf(&r.b, "- figures: %d requests; toxics applied (on both links) %s; %d IDs minted upstream (after the %d known): %d returned, %d in the audit log, %d whose answer the network lost, audited by idempotency key (mayHaveMinted), %d lost; fleet tier skipped at the end of %q\n",
		requests, strings.Join(kinds, ", "), tot.minted-len(known), len(known), tot.returned, tot.audited, tot.byKey, tot.lost, skipped)

	ledger.forget()
	rows, plain = nil, nil
	s.Reset()
	http.DefaultClient.CloseIdleConnections() // Toxiproxy's client package uses the default client

	r.checkSettled(base, (drillCacheMB*3/2+16)<<20, drillCacheMB)
	t.Log(r.b.String())
}

// settleConns waits (30s at most) until the simulator's open connections
// and Redis' clients are back to at most their baselines (the sidecar's
// idle upstream connections close after 4s), and returns them.
func settleConns(s *sim.Sim, redis *redisServer, baseUp, baseRedis int) (up, rc int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		up, rc = s.OpenConns(), redis.connectedClients()
		if up <= baseUp && rc <= baseRedis || ctx.Err() != nil {
			return up, rc
		}
		time.Sleep(100 * time.Millisecond)
	}
}
