package sidecar_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// proc is the sidecar binary running `serve --config`, its log (stderr,
// JSON lines) collected in logs.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *logBuffer
	read chan struct{} // closed when the log pipe reaches EOF
	addr string        // "sidecar listening" addr
}

func startProc(t *testing.T, bin, cfgFile string) *proc {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, logs: &logBuffer{}, read: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--config", cfgFile)
	p.cmd.Env = []string{} // no CHITTY_ID_TOKEN or CHITTYID_* from the test's environment
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close() // the child holds its own copy
	go func() {
		defer close(p.read)
		defer pr.Close()
		_, _ = io.Copy(p.logs, pr)
	}()
	t.Cleanup(func() { p.kill() })
	p.addr, _ = p.waitLog(1, "sidecar listening")["addr"].(string)
	return p
}

// kill sends SIGKILL (if the process still runs) and reaps it.
func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
	<-p.read
}

// waitLog returns the n-th log line whose msg is msg (10s at most).
func (p *proc) waitLog(n int, msg string) map[string]any {
	p.t.Helper()
	seen := 0
	return p.logs.waitForLine(p.t, func(l map[string]any) bool {
		if l["msg"] != msg {
			return false
		}
		seen++
		return seen == n
	})
}

// countLog counts the log lines whose msg is msg.
func (p *proc) countLog(msg string) int {
	n := 0
	for _, l := range strings.Split(p.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			n++
		}
	}
	return n
}

// buildSidecar builds the command into dir.
func buildSidecar(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the binary: %v", err)
	}
	bin := filepath.Join(dir, "chittyid-sidecar")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/chittyos/chittyid-sidecar/cmd/chittyid-sidecar").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// checkSnapshotAfterKill checks the file at path: absent, or a whole
// snapshot of want entries whose trailer is the SHA-256 of the rest, that
// restores in full. It says whether the file was there.
func checkSnapshotAfterKill(t *testing.T, path string, want int) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := cache.VerifySnapshot(path)
	if err != nil {
		t.Fatalf("snapshot after kill -9: %v", err)
	}
	sum := sha256.Sum256(b[:max(len(b)-32, 0)])
	if info.Entries != want || info.Bytes != int64(len(b)) || !bytes.Equal(b[len(b)-32:], sum[:]) || info.Checksum != sum {
		t.Fatalf("snapshot after kill -9: %+v (%d bytes, SHA-256 %x), want %d entries", info, len(b), sum, want)
	}
	p := config.Defaults().Validation.Policy()
	c, err := cache.New(cache.Defaults(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.RestoreSnapshot(path, p, time.Now(), nil); err != nil || r.Loaded != want {
		t.Fatalf("restoring the snapshot after kill -9: %+v, %v", r, err)
	}
	return true
}

// tempFiles lists the temporary files of interrupted writes next to path.
func tempFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSnapshotSurvivesKill9DuringWrites runs the real binary with a
// snapshot written every 100ms and kills it with SIGKILL at random moments
// of its writes, again and again: after each kill the file at snapshot.path
// must be absent or a whole, checksummed snapshot, and the next start must
// restore it in full (docs/snapshot.md: a crash mid-write never leaves a broken
// snapshot). It goes on until at least five kills have landed in the middle
// of a write (a temporary file left behind proves it).
func TestSnapshotSurvivesKill9DuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it repeatedly")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := buildSidecar(t, dir)
	s, err := sim.Start(sim.Config{Token: testToken}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	path := filepath.Join(dir, "data", "snapshot.bin")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nupstream: {url: %q, token: %q}\nsnapshot: {path: %q, interval: 100ms}\nlog: {level: debug, access: false}\n",
		s.URL(), testToken, path)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startProc(t, bin, cfgFile)
	const ids = 3000
	h := &harness{t: t, base: "http://" + p.addr, http: &http.Client{Timeout: 30 * time.Second}}
	batch := `{"requests":[` + strings.TrimSuffix(strings.Repeat(`{"entity":"PEO"},`, 100), ",") + `]}`
	for range ids / 100 {
		h.do("POST", "/v1/mint/batch", batch).expect(t, "batch mint", 200, "")
	}
	h.http.CloseIdleConnections()
	for n := 1; ; n++ { // the first write that holds every ID
		if l := p.waitLog(n, "snapshot written"); l["entries"] == float64(ids) {
			break
		}
	}

	midWrite, kills := 0, 0
	for ; midWrite < 5 && kills < 100; kills++ {
		// A random moment within the next write: it begins with "writing
		// snapshot" and took about durationMs last time.
		took := p.waitLog(max(p.countLog("snapshot written"), 1), "snapshot written")["durationMs"].(float64)
		p.waitLog(p.countLog("writing snapshot")+1, "writing snapshot")
		time.Sleep(time.Duration(rand.Float64() * took * float64(time.Millisecond)))
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.kill()
		left := tempFiles(t, path)
		if len(left) > 0 {
			midWrite++
		}
		if !checkSnapshotAfterKill(t, path, ids) {
			t.Fatalf("kill %d: the snapshot is gone", kills+1)
		}
		p = startProc(t, bin, cfgFile)
		if l := p.waitLog(1, "snapshot restored"); l["loaded"] != float64(ids) {
			t.Fatalf("restart %d restored %v", kills+1, l)
		}
		for _, name := range left { // removed at start, before the restore
			if _, err := os.Stat(name); !os.IsNotExist(err) {
				t.Fatalf("restart %d kept the temporary file %s of the killed write (%v)", kills+1, name, err)
			}
		}
	}
	t.Logf("%d kills, %d in the middle of a write", kills, midWrite)
	if midWrite < 5 {
		t.Errorf("only %d of %d kills landed in the middle of a write", midWrite, kills)
	}

	// A clean stop writes once more and exits 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	<-p.read
	p.logs.waitForLine(t, func(l map[string]any) bool {
		return l["msg"] == "snapshot written" && l["reason"] == "shutdown" && l["entries"] == float64(ids)
	})
	checkSnapshotAfterKill(t, path, ids)
}
