package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
)

// exitCode runs the command to its end and returns its exit code and
// everything it printed or returned.
func exitCode(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	all := out.String() + errOut.String()
	if err != nil {
		all += err.Error()
	}
	return code, all
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("listen: 127.0.0.1:9999\nupstream: {url: http://127.0.0.1:1/v1, token: s3cret-token}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("listen: nowhere\nupstream: {timeout: 5x, retyr: {}}\nformat: hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	workerIdem := filepath.Join(dir, "worker-idempotent.yaml")
	if err := os.WriteFile(workerIdem, []byte("upstream:\n  url: http://127.0.0.1:1\n  dialect: worker\n  idempotentMint: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int // 0: success
		wantOut  []string
	}{
		{"version", []string{"version"}, 0, []string{"chittyid-sidecar", "go1."}},
		{"check good config", []string{"check-config", good}, 0, []string{"ok:", "127.0.0.1:9999"}},
		{"check bad config names every problem", []string{"check-config", bad}, 2, []string{"listen", "upstream.timeout", "upstream.retyr", "format"}},
		{"check refuses idempotentMint with the worker dialect", []string{"check-config", workerIdem}, 2,
			[]string{"line 4: upstream.idempotentMint must be false", `upstream.dialect "worker"`, "does not forward Idempotency-Key"}},
		{"check missing file", []string{"check-config", filepath.Join(dir, "nope.yaml")}, 2, []string{"nope.yaml"}},
		{"check without a file", []string{"check-config"}, 2, []string{"one file"}},
		{"no command", nil, 2, []string{"no command"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"frobnicate"}},
		{"bad flag", []string{"serve", "--nope"}, 2, nil},
		{"bad dev format", []string{"dev", "--format", "hex"}, 2, []string{"--format"}},
		{"serve with a bad config", []string{"serve", "--config", bad}, 2, []string{"upstream.timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, all := exitCode(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d: %s", code, tc.wantCode, all)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			if strings.Contains(all, "s3cret-token") {
				t.Errorf("the token leaked: %s", all)
			}
		})
	}
}

// TestCheckConfigWarnsWithoutAToken: a config without a token passes
// check-config (exit 0) with one warning line that callers' Authorization
// will be forwarded; one with a token gets none.
func TestCheckConfigWarnsWithoutAToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		yaml string
		warn bool
	}{
		{"upstream: {url: http://127.0.0.1:1/v1}\n", true},
		{"upstream: {url: http://127.0.0.1:1/v1, token: s3cret-token}\n", false},
		{"upstream: {url: http://127.0.0.1:1/v1, tokenFile: " + filepath.Join(dir, "token") + "}\n", false},
	} {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret-token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if err := run(t.Context(), []string{"check-config", path}, &out, &errOut); err != nil {
			t.Fatalf("%s: check-config failed: %v\n%s%s", c.yaml, err, out.String(), errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		switch {
		case c.warn && (len(lines) != 1 || !strings.HasPrefix(lines[0], "warning: no upstream token is configured") || !strings.Contains(lines[0], "Authorization headers will be forwarded")):
			t.Errorf("%s: want one warning line, got %q", c.yaml, errOut.String())
		case !c.warn && errOut.Len() != 0:
			t.Errorf("%s: a warning with a token configured: %q", c.yaml, errOut.String())
		}
		if !strings.HasPrefix(out.String(), "ok: ") {
			t.Errorf("%s: no summary: %q", c.yaml, out.String())
		}
	}
}

// background is a command run in the background, as from a terminal
// until Ctrl-C.
type background struct {
	out, errOut syncBuffer
	cancel      context.CancelFunc
	done        chan error
	once        sync.Once
	err         error
}

// startBackground runs the command; the test's cleanup stops it if the
// test did not.
func startBackground(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- run(ctx, args, &b.out, &b.errOut) }()
	t.Cleanup(func() { _ = b.stop() })
	return b
}

// await waits until buf (b.out or b.errOut) holds s, or fails the test
// with both outputs.
func (b *background) await(t *testing.T, buf *syncBuffer, s string) {
	t.Helper()
	if err := waitFor(buf, s); err != nil {
		t.Fatalf("%v\nstdout: %s\nstderr: %s", err, testout.Cut(t, "stdout.txt", b.out.String(), nil), testout.Last(t, "stderr.txt", b.errOut.String(), nil))
	}
}

// stop cancels the command (Ctrl-C) and returns what it returned.
func (b *background) stop() error {
	b.once.Do(func() {
		b.cancel()
		b.err = <-b.done
	})
	return b.err
}

func TestDevStopsCleanlyOnCancel(t *testing.T) {
	t.Parallel()
	dev := startBackground(t, "dev", "--listen", "127.0.0.1:0")
	dev.await(t, &dev.out, "sidecar:")
	if err := dev.stop(); err != nil {
		t.Fatalf("dev returned %v after cancel; stderr: %s", err, testout.Last(t, "stderr.txt", dev.errOut.String(), nil))
	}
}

// TestDevPrintsWhatToTry: dev prints the simulator's token and control
// URL, which work, and a validate of an ID it minted, which is a HIT.
func TestDevPrintsWhatToTry(t *testing.T) {
	t.Parallel()
	dev := startBackground(t, "dev", "--listen", "127.0.0.1:0")
	dev.await(t, &dev.out, "Ctrl-C stops both")
	out := dev.out.String()
	field := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("dev printed nothing like %s:\n%s", re, out)
		}
		return m[1]
	}
	simURL, token := field(`upstream simulator: (\S+)`), field(`upstream token: +(\S+)`)
	control := field(`simulator control: +(\S+)`)
	validate := field(`minted \S+; try:\n  curl -si (\S+)\n`)

	req, _ := http.NewRequest(http.MethodPost, simURL+"/mint", strings.NewReader(`{"entity":"PEO"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if code, _ := get(t, req); code != 200 {
		t.Errorf("a mint at the simulator with the printed token: HTTP %d", code)
	}
	req, _ = http.NewRequest(http.MethodGet, control+"/sim/stats", nil)
	if code, _ := get(t, req); code != 200 {
		t.Errorf("the printed control URL's /sim/stats: HTTP %d", code)
	}
	req, _ = http.NewRequest(http.MethodGet, validate, nil)
	if code, h := get(t, req); code != 200 || h.Get("X-Cache") != "HIT" {
		t.Errorf("the printed validate %s: HTTP %d, X-Cache %q, want 200 HIT", validate, code, h.Get("X-Cache"))
	}
}

func get(t *testing.T, req *http.Request) (int, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestDefaultGC: the sidecar collects at 25 % heap growth unless GOGC says
// otherwise. Not parallel: the GC percent is process-wide.
func TestDefaultGC(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	defaultGC(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, gcPercent)
	}
	defaultGC(func(k string) (string, bool) { return "150", k == "GOGC" })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: GC percent changed to %d", got)
	}
}
