package fleet

import (
	"context"
	"fmt"
	"strings"
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

// TestCluster: with several addresses the tier talks to a Redis Cluster:
// an ID's verdict and lock share a slot (the scripts would fail with
// CROSSSLOT otherwise), IDs spread over every node, and the mint limit works.
func TestCluster(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t)
	cfg := testConfig(t, nodes[0].Addr, nodes[1].Addr, nodes[2].Addr)
	a := newTier(t, cfg, testOptions(), true)
	b := newTier(t, cfg, testOptions(), true)
	ctx := context.Background()
	var fetches atomic.Int64
	fetch := func(context.Context) (Verdict, error) {
		fetches.Add(1)
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	}
	const ids = 60
	for i := range ids {
		id := fmt.Sprintf("CT-A-CHI-%04d-I-24-A-0", i)
		if _, src, err := a.Fetch(ctx, id, testPolicy(), fetch); err != nil || src != SourceFetched {
			t.Fatalf("Fetch(%s) on a: %s, %v", id, src, err)
		}
		if _, src, err := b.Fetch(ctx, id, testPolicy(), fetch); err != nil || src != SourceFleet {
			t.Fatalf("Fetch(%s) on b: %s, %v; want a fleet hit", id, src, err)
		}
	}
	if fetches.Load() != ids {
		t.Errorf("%d fetches for %d IDs", fetches.Load(), ids)
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
	if st := a.Stats(); st.Errors != 0 {
		t.Errorf("errors on the cluster: %+v, last %q", st, a.Status().LastError)
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
