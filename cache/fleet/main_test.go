package fleet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
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

// redisServer is a redis-server of the test's own (redistest), with an
// admin client for questions.
type redisServer struct {
	*redistest.Server
	t testing.TB
}

// startRedis starts redis-server with extra arguments (e.g. "--requirepass",
// "pw") and waits until it accepts connections.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	return &redisServer{Server: redistest.Start(t, extra...), t: t}
}

// do runs one command on the server through a client of its own, logged
// in with password if set.
func (s *redisServer) do(password string, args ...string) rueidis.RedisResult {
	s.t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}, Password: password,
		DisableCache: true, ForceSingleClient: true, ClientSetInfo: rueidis.DisableClientSetInfo})
	if err != nil {
		s.t.Fatalf("admin client for %s: %v", s.Addr, err)
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
	cmd.Env = append(os.Environ(), holderEnv+"="+srv.Addr, "FLEET_TEST_HOLDER_PREFIX="+prefix,
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
