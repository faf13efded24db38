package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The deployments users run in production, each of real redis-server
// processes of the test's own: a Redis Cluster with replicas, and a
// Sentinel deployment. Each waits until it is whole and stops with the
// test.

// formTimeout bounds how long a deployment may take to form.
const formTimeout = 30 * time.Second

// Do sends one command to the Redis server or Sentinel at addr on a
// connection of its own, within 5s, and returns the reply as text: a
// simple string, an integer or a bulk string as it is, an array's elements
// one per line ("" for a nil). An error reply is an error.
func Do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, req.String()); err != nil {
		return "", fmt.Errorf("sending %s to %s: %w", args[0], addr, err)
	}
	var lines []string
	if err := readReply(bufio.NewReader(c), &lines); err != nil {
		return "", fmt.Errorf("%s on %s: %w", args[0], addr, err)
	}
	return strings.Join(lines, "\n"), nil
}

// readReply reads one RESP2 reply into lines.
func readReply(r *bufio.Reader, lines *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return errors.New("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		*lines = append(*lines, line[1:])
	case '-':
		return errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			*lines = append(*lines, "")
			return nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		*lines = append(*lines, string(b[:n]))
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return fmt.Errorf("bad array length %q", line)
		}
		for range n {
			if err := readReply(r, lines); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown reply %q", line)
	}
	return nil
}

// Field returns the value of name in the "name:value" lines of an INFO
// or CLUSTER INFO reply, or "".
func Field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond every 50ms until it holds, or fails the test after
// formTimeout saying what it waited for: Redis and Sentinel report what
// they see, they have no event to wait on.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(formTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, formTimeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Cluster is a Redis Cluster of the test's own.
type Cluster struct {
	// Nodes are its servers, in the order given to redis-cli --cluster
	// create: the masters first, then their replicas.
	Nodes []*Server
	t     testing.TB
}

// StartCluster starts masters*(1+replicas) cluster nodes, makes them a
// Cluster with redis-cli --cluster create (the slots split between the
// masters, each with replicas replicas), and waits until every node sees
// it whole and every replica is in sync. nodeTimeout is
// cluster-node-timeout: how long a master may be unreachable before its
// replica takes over.
func StartCluster(t testing.TB, masters, replicas int, nodeTimeout time.Duration) *Cluster {
	t.Helper()
	cli := lookPath(t, "redis-cli", "redis-tools")
	c := &Cluster{t: t}
	for range masters * (1 + replicas) {
		c.Nodes = append(c.Nodes, StartWith(t, Options{AlsoFree: 10000, // the cluster bus is at port+10000
			Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10)}}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitWhole(len(c.Nodes))
	return c
}

// Addrs are the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return a
}

// WaitWhole waits until every node that runs reports cluster_state:ok
// with known nodes known, and every replica's link to its master is up.
func (c *Cluster) WaitWhole(known int) {
	c.t.Helper()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		waitFor(c.t, "node "+n.Addr+" sees the cluster whole", func() (bool, string) {
			info, err := Do(n.Addr, "CLUSTER", "INFO")
			if err != nil {
				return false, err.Error()
			}
			repl, err := Do(n.Addr, "INFO", "replication")
			if err != nil {
				return false, err.Error()
			}
			ok := Field(info, "cluster_state") == "ok" && Field(info, "cluster_known_nodes") == strconv.Itoa(known) &&
				(Field(repl, "role") == "master" || Field(repl, "master_link_status") == "up")
			return ok, fmt.Sprintf("state %s, %s nodes known, role %s, link %s", Field(info, "cluster_state"),
				Field(info, "cluster_known_nodes"), Field(repl, "role"), Field(repl, "master_link_status"))
		})
	}
}

// Role returns what the node says it is: "master" or "slave".
func Role(addr string) (string, error) {
	repl, err := Do(addr, "INFO", "replication")
	if err != nil {
		return "", err
	}
	return Field(repl, "role"), nil
}

// Sentinels is a Sentinel deployment of the test's own: a master, a
// replica, and three sentinels that monitor the master under Name with a
// quorum of 2.
type Sentinels struct {
	Name      string
	Master    *Server // the master at start
	Replica   *Server // its replica at start
	Sentinels []*Server
	t         testing.TB
}

// StartSentinels starts the deployment and waits until each sentinel knows
// the replica and the other two sentinels. downAfter is the sentinels'
// down-after-milliseconds: how long the master may be unreachable before
// they fail over; their failover-timeout is twice that (a failed election
// is tried again after twice the failover-timeout).
func StartSentinels(t testing.TB, name string, downAfter time.Duration) *Sentinels {
	t.Helper()
	d := &Sentinels{Name: name, t: t}
	d.Master = Start(t)
	d.Replica = Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(d.Master.Port))
	waitFor(t, "the replica is in sync", func() (bool, string) {
		repl, err := Do(d.Replica.Addr, "INFO", "replication")
		if err != nil {
			return false, err.Error()
		}
		return Field(repl, "master_link_status") == "up", repl
	})
	for range 3 {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf") // the sentinel rewrites it
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\nsentinel down-after-milliseconds %[1]s %[3]d\nsentinel failover-timeout %[1]s %[4]d\n",
			name, d.Master.Port, downAfter.Milliseconds(), (2 * downAfter).Milliseconds())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		d.Sentinels = append(d.Sentinels, StartWith(t, Options{Conf: conf, Args: []string{"--sentinel"}, Dir: dir, Ready: "+monitor master"}))
	}
	for _, s := range d.Sentinels {
		waitFor(t, "sentinel "+s.Addr+" knows the replica and the other sentinels", func() (bool, string) {
			m, err := Do(s.Addr, "SENTINEL", "MASTER", name)
			if err != nil {
				return false, err.Error()
			}
			f := pairs(m)
			return f["num-slaves"] == "1" && f["num-other-sentinels"] == "2",
				fmt.Sprintf("%s replicas, %s other sentinels", f["num-slaves"], f["num-other-sentinels"])
		})
	}
	return d
}

// Addrs are the sentinels' addresses.
func (d *Sentinels) Addrs() []string {
	var a []string
	for _, s := range d.Sentinels {
		a = append(a, s.Addr)
	}
	return a
}

// MasterAddr asks the first sentinel that answers where the master is.
func (d *Sentinels) MasterAddr() (string, error) {
	var err error
	for _, s := range d.Sentinels {
		var r string
		if r, err = Do(s.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", d.Name); err == nil {
			host, port, ok := strings.Cut(r, "\n")
			if !ok {
				return "", fmt.Errorf("sentinel %s knows no master %s", s.Addr, d.Name)
			}
			return net.JoinHostPort(host, port), nil
		}
	}
	return "", err
}

// pairs reads a reply of alternate names and values.
func pairs(reply string) map[string]string {
	f := strings.Split(reply, "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i]] = f[i+1]
	}
	return m
}
