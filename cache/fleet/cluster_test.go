package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
)

// startCluster starts a Redis Cluster of three masters, the slots split
// between them (redistest.StartCluster), and waits until every node sees
// it whole.
func startCluster(t *testing.T) []*redisServer {
	t.Helper()
	var nodes []*redisServer
	for _, n := range redistest.StartCluster(t, 3, 0, 2*time.Second).Nodes {
		nodes = append(nodes, &redisServer{t: t, Server: n})
	}
	return nodes
}

// outcomeObserver counts calls by outcome.
type outcomeObserver struct {
	noObserver
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomeObserver) Call(_, outcome string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[outcome]++
}

// failed is how many calls timed out or were skipped so far.
func (o *outcomeObserver) failed() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n["timeout"] + o.n["skipped"]
}

// TestCluster: with several addresses the tier talks to a Redis Cluster:
// an ID's verdict and lock share a slot (the scripts would fail with
// CROSSSLOT otherwise: an error outcome), IDs spread over every node, and
// the mint limit works. A verdict one tier fetched is a fleet hit on the
// other, unless a call about it timed out (a machine too slow for
// fleet.timeout): then the other fetches too.
func TestCluster(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t)
	cfg := testConfig(t, nodes[0].Addr, nodes[1].Addr, nodes[2].Addr)
	obs := &outcomeObserver{n: map[string]int{}}
	opts := testOptions()
	opts.Observer = obs
	a := newTier(t, cfg, opts, true)
	b := newTier(t, cfg, opts, true)
	ctx := context.Background()
	var fetches atomic.Int64
	fetch := func(context.Context) (Verdict, error) {
		fetches.Add(1)
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	}
	const ids = 60
	fellBack := 0
	for i := range ids {
		id := fmt.Sprintf("CT-A-CHI-%04d-I-24-A-0", i)
		failed := obs.failed()
		if _, src, err := a.Fetch(ctx, id, testPolicy(), fetch); err != nil || src != SourceFetched {
			t.Fatalf("Fetch(%s) on a: %s, %v", id, src, err)
		}
		_, src, err := b.Fetch(ctx, id, testPolicy(), fetch)
		switch {
		case err == nil && src == SourceFleet:
		case err == nil && src == SourceFetched && obs.failed() > failed:
			fellBack++
		default:
			t.Fatalf("Fetch(%s) on b: %s, %v; want a fleet hit", id, src, err)
		}
	}
	if got := fetches.Load(); got != ids+int64(fellBack) {
		t.Errorf("%d fetches for %d IDs, %d of them fetched again after a call timed out", got, ids, fellBack)
	}
	for i, n := range nodes {
		keys, err := n.do("", "DBSIZE").AsInt64()
		if err != nil || keys == 0 {
			t.Errorf("node %d holds %d keys (%v): the IDs did not spread", i, keys, err)
		}
	}
	if ok, _, err := a.AllowMint(ctx, 5, 60, 10); !ok || err != nil {
		t.Errorf("AllowMint on the cluster: %v, %v", ok, err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.n["error"] != 0 {
		t.Errorf("calls failing on the cluster: %v, last %q", obs.n, a.Status().LastError)
	}
}

// TestClusterOneAddress: one address is a standalone server; when it is a
// node of a Redis Cluster, the error the tier keeps says to list the
// Cluster's nodes, instead of only MOVED.
func TestClusterOneAddress(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t)
	tr := newTier(t, testConfig(t, nodes[0].Addr), testOptions(), true)
	for i := range 30 { // some land on the other nodes' slots
		_ = tr.Put(context.Background(), fmt.Sprintf("CT-A-CHI-%04d-I-24-A-0", i), Verdict{Valid: true}, time.Hour)
	}
	if st := tr.Status(); !strings.Contains(st.LastError, "MOVED") || !strings.Contains(st.LastError, "list two or more of its nodes in fleet.redis.addrs") {
		t.Errorf("last error %q: want MOVED and what to do", st.LastError)
	}
}
