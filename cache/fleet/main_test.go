package fleet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(holderEnv); addr != "" {
		os.Exit(runHolder(addr))
	}
	// rueidis' Cluster client closes connections dropped by a topology
	// refresh from a goroutine that first sleeps 5s, owned by no one and
	// outliving Close; it ends by itself.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
}

// requireServersEnv set to 1 makes a missing redis-server a failure
// instead of a skip (CI sets it).
const requireServersEnv = "CHITTYID_TEST_REQUIRE_SERVERS"

// redisServer is a redis-server process of the test's own, on a free port
// of 127.0.0.1, without persistence. It is stopped when the test ends.
type redisServer struct {
	t     testing.TB
	port  int
	addr  string
	conf  string   // a config file to start with, if set
	args  []string // after the port and persistence flags
	dir   string
	ready string // the log line that says it is ready (redisproc's default if empty)

	// mu guards proc, replaced by each start.
	mu   sync.Mutex
	proc *redisproc.Process
}

// redisBinary returns redis-server's path, or skips (fails with
// CHITTYID_TEST_REQUIRE_SERVERS=1) without it.
func redisBinary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(requireServersEnv) == "1" {
			t.Fatalf("redis-server is not on PATH and %s=1: install Debian's redis-server (.ci/run does)", requireServersEnv)
		}
		t.Skipf("redis-server is not on PATH (Debian package redis-server); %s=1 makes this a failure", requireServersEnv)
	}
	return path
}

// startRedis starts redis-server with extra arguments (e.g. "--requirepass",
// "pw") and waits until it accepts connections.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	redisBinary(t)
	s := &redisServer{t: t, args: extra, dir: t.TempDir()}
	s.launch(0)
	return s
}

// launch starts s on a free port (and port+also free too), retrying if
// another process takes the port first, and stops it when the test ends.
func (s *redisServer) launch(also int) {
	s.t.Helper()
	var err error
	for range 5 {
		if s.port, err = redisproc.FreePort(also); err != nil {
			s.t.Fatal(err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		if err = s.start(); err == nil {
			s.t.Cleanup(s.stop)
			return
		}
	}
	s.t.Fatalf("starting redis-server: %v", err)
}

// start runs the process on s.port and waits for its ready log line.
func (s *redisServer) start() error {
	p, err := redisproc.Start(context.Background(), redisproc.Options{Bin: redisBinary(s.t), Port: s.port,
		Dir: s.dir, Conf: s.conf, Args: s.args, Ready: s.ready})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// stop ends the process (resuming it first if it was stopped) and waits.
func (s *redisServer) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// restart stops the server and starts an empty one on the same port.
func (s *redisServer) restart() {
	s.t.Helper()
	s.stop()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// signal sends sig (SIGSTOP, SIGCONT) to the process.
func (s *redisServer) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// do runs one command on the server through a client of its own, logged
// in with password if set.
func (s *redisServer) do(password string, args ...string) rueidis.RedisResult {
	s.t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.addr}, Password: password,
		DisableCache: true, ForceSingleClient: true, ClientSetInfo: rueidis.DisableClientSetInfo})
	if err != nil {
		s.t.Fatalf("admin client for %s: %v", s.addr, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

// testOptions make a tier react fast enough for tests.
func testOptions() Options {
	return Options{ProbeInterval: 10 * time.Millisecond, MaxProbeInterval: 40 * time.Millisecond,
		ConnectTimeout: 500 * time.Millisecond}
}

// testConfig is a fleet section for addrs with a prefix of the test's own.
func testConfig(t testing.TB, addrs ...string) Config {
	c := Defaults()
	c.Redis.Addrs = addrs
	c.KeyPrefix = "test:" + strings.NewReplacer("/", ":", " ", "_").Replace(t.Name()) + ":"
	if len(c.KeyPrefix) > maxKeyPrefix {
		c.KeyPrefix = c.KeyPrefix[len(c.KeyPrefix)-maxKeyPrefix:]
	}
	c.Timeout = 200 * time.Millisecond // generous: the race detector and a shared machine
	return c
}

// newTier builds a tier, closed when the test ends, and waits until it is
// up (unless wait is false).
func newTier(t testing.TB, cfg Config, opts Options, wait bool) *Tier {
	t.Helper()
	tr, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	if wait {
		waitState(t, tr, StateUp)
	}
	return tr
}

func waitState(t testing.TB, tr *Tier, want State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Wait(ctx, func(s Status) bool { return s.State == want }); err != nil {
		t.Fatalf("%v (last error %q)", err, tr.Status().LastError)
	}
}

// holderEnv makes the test binary a lock holder that never finishes its
// fetch (see TestFetchHolderKilled): its value is the Redis address.
const holderEnv = "FLEET_TEST_HOLDER_ADDR"

// runHolder takes the lock of the ID in FLEET_TEST_HOLDER_ID with a fetch
// that never returns, prints "holding" once it does, and waits to be
// killed.
func runHolder(addr string) int {
	cfg := Defaults()
	cfg.Redis.Addrs = []string{addr}
	cfg.KeyPrefix = os.Getenv("FLEET_TEST_HOLDER_PREFIX")
	cfg.LockTTL, _ = time.ParseDuration(os.Getenv("FLEET_TEST_HOLDER_LOCKTTL"))
	cfg.Timeout = 200 * time.Millisecond
	tr, err := New(cfg, testOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Wait(ctx, func(s Status) bool { return s.State == StateUp }); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _, err = tr.Fetch(context.Background(), os.Getenv("FLEET_TEST_HOLDER_ID"), testPolicy(),
		func(context.Context) (Verdict, error) {
			fmt.Println("holding")
			select {} // until SIGKILL
		})
	fmt.Fprintln(os.Stderr, "fetch returned:", err)
	return 1
}

// startHolder runs the test binary as a holder of id's lock and returns
// once it holds it; the process is killed when the test ends at the
// latest.
func startHolder(t *testing.T, srv *redisServer, prefix, id string, lockTTL time.Duration) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+srv.addr, "FLEET_TEST_HOLDER_PREFIX="+prefix,
		"FLEET_TEST_HOLDER_ID="+id, "FLEET_TEST_HOLDER_LOCKTTL="+lockTTL.String())
	cmd.Dir = filepath.Dir(exe)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "holding\n" {
		t.Fatalf("holder process: read %q, %v", line, err)
	}
	return cmd
}

// testPolicy is the freshness policy of the tests unless they say otherwise.
func testPolicy() Policy {
	return Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: time.Hour}
}

func itoa(i int) string { return strconv.Itoa(i) }
