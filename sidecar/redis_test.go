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

// dbsize asks the server how many keys it holds.
func (r *redisServer) dbsize() int {
	r.t.Helper()
	reply := r.command("DBSIZE")
	if !strings.HasPrefix(reply, ":") {
		r.t.Fatalf("DBSIZE answered %q", reply)
	}
	n, err := strconv.Atoi(reply[1:])
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// connectedClients is INFO's connected_clients, this connection included.
func (r *redisServer) connectedClients() int {
	r.t.Helper()
	for _, line := range strings.Split(r.command("INFO", "clients"), "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_clients:"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	r.t.Fatal("INFO clients has no connected_clients")
	return 0
}

// command sends one command on a connection of its own, speaking RESP,
// and returns the reply: a simple one's line (":12", "+OK", "-ERR …") or
// a bulk string's content.
func (r *redisServer) command(args ...string) string {
	r.t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "*" + strconv.Itoa(len(args)) + "\r\n"
	for _, a := range args {
		req += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		r.t.Fatal(err)
	}
	rd := bufio.NewReader(c)
	line, err := rd.ReadString('\n')
	if err != nil {
		r.t.Fatalf("%v answered %q, %v", args, line, err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	if !strings.HasPrefix(line, "$") {
		return line
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		r.t.Fatalf("%v answered %q", args, line)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(rd, body); err != nil {
		r.t.Fatalf("%v: reading its %d bytes: %v", args, n, err)
	}
	return string(body[:n])
}
