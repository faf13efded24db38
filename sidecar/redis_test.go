package sidecar_test

import (
	"strconv"
	"testing"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
)

// redisServer is a redis-server of the test's own (redistest) that the
// sidecar's fleet tests start, stop, SIGSTOP and restart, and ask how many
// keys it holds.
type redisServer struct {
	*redistest.Server
	t *testing.T
}

// startRedis starts redis-server, or skips the test (fails with
// CHITTYID_TEST_REQUIRE_SERVERS=1) without one on PATH.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	return &redisServer{Server: redistest.Start(t), t: t}
}

// dbsize asks the server how many keys it holds.
func (r *redisServer) dbsize() int {
	r.t.Helper()
	n, err := strconv.Atoi(r.command("DBSIZE"))
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// connectedClients is INFO's connected_clients, this connection included.
func (r *redisServer) connectedClients() int {
	r.t.Helper()
	n, err := strconv.Atoi(redistest.Field(r.command("INFO", "clients"), "connected_clients"))
	if err != nil {
		r.t.Fatalf("INFO clients: %v", err)
	}
	return n
}

// command sends one command on a connection of its own (redistest.Do).
func (r *redisServer) command(args ...string) string {
	r.t.Helper()
	reply, err := redistest.Do(r.Addr, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return reply
}
