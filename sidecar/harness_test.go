package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
	"go.uber.org/goleak"
)

// fasthttp starts two goroutines that nobody can stop and that end on their
// own: the worker pool's cleaner notices a stopped server only after its
// sleep (MaxIdleWorkerDuration), and a HostClient's connection cleaner exits
// after its sleep once no connection is left. Every goroutine of ours must
// be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}

// clock is a test clock: real time plus what advance added, or, once
// frozen, only what advance adds.
type clock struct {
	offset atomic.Int64
	frozen atomic.Int64 // UnixNano where freeze stopped real time; 0: not frozen
}

func (c *clock) now() time.Time {
	if f := c.frozen.Load(); f != 0 {
		return time.Unix(0, f+c.offset.Load())
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}

func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// freeze stops real time for the clock: from now on it moves only by advance.
func (c *clock) freeze() { c.frozen.Store(time.Now().UnixNano()) }

// harness is a sidecar on a real loopback listener in front of a simulator.
type harness struct {
	t       *testing.T
	file    string          // the watched config file (startFile)
	reload  chan os.Signal  // SIGHUP stand-in (startFile)
	watcher *config.Watcher // (startFile)
	logs    *logBuffer      // everything the sidecar logged, JSON lines
	sc      *sidecar.Sidecar
	cancel  context.CancelFunc // stops the sidecar
	done    chan error         // Run's result
	sim     *sim.Sim
	base    string
	clock   *clock
	http    *http.Client
	rec     *recorder // every answer h.http got, for the check against openapi.json
}

const testToken = "test-token-0123456789"

// start runs a simulator with simCfg and a sidecar whose config is extra
// (YAML lines added to a minimal file pointing at the simulator).
func start(t *testing.T, simCfg sim.Config, extra string) *harness {
	t.Helper()
	return startWith(t, simCfg, extra, nil)
}

// startWith is start with a hook that runs between starting the simulator
// and starting the sidecar (e.g. to start with upstream down).
func startWith(t *testing.T, simCfg sim.Config, extra string, before func(*sim.Sim)) *harness {
	t.Helper()
	return launch(t, simCfg, extra, before, false, sidecar.Timeouts{})
}

// startFile is start with the config in a file that the sidecar watches;
// h.writeConfig changes it and h.reload stands in for SIGHUP.
func startFile(t *testing.T, simCfg sim.Config, extra string) *harness {
	t.Helper()
	return launch(t, simCfg, extra, nil, true, sidecar.Timeouts{})
}

// startTimeouts is start with the API listener's timeouts set.
func startTimeouts(t *testing.T, extra string, to sidecar.Timeouts) *harness {
	t.Helper()
	return launch(t, sim.Config{}, extra, nil, false, to)
}

// launch starts the pair. Inside TestOverTLS the simulator serves TLS with
// a throwaway CA that the sidecar trusts (upstream.tls.caFile), unless the
// test set simCfg.TLS itself. edit adjusts the sidecar's options.
func launch(t *testing.T, simCfg sim.Config, extra string, before func(*sim.Sim), fileBased bool, to sidecar.Timeouts, edit ...func(*sidecar.Options)) *harness {
	t.Helper()
	if simCfg.Token == "" {
		simCfg.Token = testToken
	}
	var caFile string
	if simCfg.TLS == nil && overTLS(t) {
		simCfg.TLS, caFile = tlsUpstream(t)
	}
	s, err := sim.Start(simCfg, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if before != nil {
		before(s)
	}
	yaml := configFor(s, simCfg, extra)
	if caFile != "" {
		yaml = strings.Replace(yaml, "upstream:\n", fmt.Sprintf("upstream:\n  tls: {caFile: %q}\n", caFile), 1)
	}
	h := newHarness(t)
	h.sim = s
	h.run(yaml, fileBased, to, edit...)
	return h
}

// newHarness makes a harness whose answers are checked against
// openapi.json when the test ends (openapi_test.go).
func newHarness(t *testing.T) *harness {
	rec := newRecorder(&http.Transport{MaxIdleConnsPerHost: 256})
	h := &harness{t: t, clock: &clock{}, logs: &logBuffer{}, rec: rec,
		http: &http.Client{Timeout: 30 * time.Second, Transport: rec}}
	t.Cleanup(h.checkAnswers)
	return h
}

// run starts a sidecar with the config file yaml (watched, if fileBased)
// on a loopback listener; the test's cleanup stops it. edit adjusts the
// sidecar's options.
func (h *harness) run(yaml string, fileBased bool, to sidecar.Timeouts, edit ...func(*sidecar.Options)) {
	t := h.t
	t.Helper()
	opts := sidecar.Options{Version: "test", Now: h.clock.now, LogOutput: h.logs, Timeouts: to, LookupEnv: noEnv,
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, e := range edit {
		e(&opts)
	}
	var cfg *config.Config
	var err error
	if fileBased {
		h.file, h.reload = filepath.Join(t.TempDir(), "config.yaml"), make(chan os.Signal, 1)
		h.writeConfig(yaml)
		h.watcher = config.NewWatcher(h.file, noEnv, config.WatcherOptions{})
		opts.Watcher, opts.Reload = h.watcher, h.reload
		cfg, err = h.watcher.Load()
	} else {
		cfg, err = config.Parse([]byte(yaml), opts.LookupEnv) // noEnv unless edit set one
	}
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yaml, err)
	}
	if h.sc, err = sidecar.New(cfg, opts); err != nil {
		t.Fatalf("sidecar.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.sc.Run(ctx, ln) }()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("sidecar Run: %v", err)
		}
		h.http.CloseIdleConnections()
	})
}

// configFor is a config file for a sidecar in front of s: extra's lines,
// with dialect and (unless extra sets them) upstream.url and token filled
// in, and {simPort} replaced by the simulator's API port.
func configFor(s *sim.Sim, simCfg sim.Config, extra string) string {
	dialect := string(simCfg.Dialect)
	if dialect == "" {
		dialect = "client-v1"
	}
	format := "official"
	if simCfg.Format != 0 {
		format = simCfg.Format.String()
	}
	yaml := fmt.Sprintf("listen: 127.0.0.1:0\nformat: %s\n%s", format, extra)
	if !strings.Contains(extra, "upstream:") {
		yaml += "upstream:\n"
	}
	if !strings.Contains(extra, "  url:") {
		yaml = strings.Replace(yaml, "upstream:\n", fmt.Sprintf("upstream:\n  url: %s\n", s.URL()), 1)
	}
	_, port, _ := net.SplitHostPort(s.APIAddr())
	yaml = strings.ReplaceAll(yaml, "{simPort}", port)
	yaml = strings.Replace(yaml, "upstream:\n", fmt.Sprintf("upstream:\n  dialect: %s\n", dialect), 1)
	if !strings.Contains(extra, "token") {
		yaml = strings.Replace(yaml, "upstream:\n", "upstream:\n  token: "+testToken+"\n", 1)
	}
	return yaml
}

func noEnv(string) (string, bool) { return "", false }

// writeConfig replaces the watched config file atomically.
func (h *harness) writeConfig(yaml string) {
	h.t.Helper()
	tmp := h.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.file); err != nil {
		h.t.Fatal(err)
	}
}

// stop shuts the sidecar down and returns Run's result; it may be called
// more than once.
func (h *harness) stop() error {
	h.cancel()
	err, ok := <-h.done
	if ok {
		close(h.done)
	}
	return err
}

// waitState waits (event-driven, at most 10s) for a lifecycle state, or
// for any of several.
func (h *harness) waitState(want ...fsm.State) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sc.WaitState(ctx, want...); err != nil {
		h.t.Fatalf("state %v not reached: %v; /health: %s", want, err, h.do("GET", "/health", "").raw)
	}
}

// waitDown waits for the link to be down after failed polls: RECONNECTING,
// or FAILED once the reconnect attempts have run out. With reconnect polls
// 10-40ms apart (fastHealth, tlsHealth) RECONNECTING lasts well under a
// tenth of a second, less than a busy machine may take to look: a test of
// what holds while upstream cannot be reached waits for either.
func (h *harness) waitDown() {
	h.t.Helper()
	h.waitState(fsm.Reconnecting, fsm.Failed)
}

// reply is an HTTP answer with its JSON body decoded.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (h *harness) do(method, path, body string, header ...string) reply {
	h.t.Helper()
	r, err := h.try(method, path, body, header...)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// try is do for other goroutines than the test's: an error instead of
// t.Fatal. header is name, value pairs.
func (h *harness) try(method, path, body string, header ...string) (reply, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, r)
	if err != nil {
		return reply{}, err
	}
	if method == "POST" { // as the apps' HTTP clients send it
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if err := json.Unmarshal(b, &rep.body); err != nil {
		return rep, fmt.Errorf("%s %s: answer is not a JSON object: %q", method, path, b)
	}
	return rep, nil
}

func (h *harness) mint(entity string) reply {
	h.t.Helper()
	return h.do("POST", "/v1/mint", `{"entity":"`+entity+`"}`)
}

func (h *harness) mustMint(entity string) string {
	h.t.Helper()
	r := h.mint(entity)
	if r.status != 200 {
		h.t.Fatalf("mint %s: HTTP %d %s", entity, r.status, r.raw)
	}
	id, _ := r.body["chittyId"].(string)
	return id
}

func (h *harness) validate(id string) reply {
	h.t.Helper()
	return h.do("GET", "/v1/validate/"+id, "")
}

func (h *harness) fault(f sim.Fault) {
	h.t.Helper()
	if err := h.sim.SetFault(f); err != nil {
		h.t.Fatalf("setting fault %+v: %v", f, err)
	}
}

// expect checks an answer's status and, if code is not empty, its error code.
func (r reply) expect(t *testing.T, what string, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: HTTP %d, want %d: %s", what, r.status, status, r.raw)
	}
	if code != "" && r.body["error"] != code {
		t.Fatalf("%s: error %v, want %s: %s", what, r.body["error"], code, r.raw)
	}
}
