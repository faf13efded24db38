package sidecar_test

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

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

// dbsize asks the server how many keys it holds, speaking RESP on a
// connection of its own.
func (r *redisServer) dbsize() int {
	r.t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "*1\r\n$6\r\nDBSIZE\r\n"); err != nil {
		r.t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ":") {
		r.t.Fatalf("DBSIZE answered %q, %v", line, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}
