package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is an ApplyFunc that keeps what it was given.
type recorder struct {
	mu      sync.Mutex
	applied []*Config
	fail    error
}

func (r *recorder) apply(c *Config) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return nil, r.fail
	}
	r.applied = append(r.applied, c)
	return nil, nil
}

func (r *recorder) last() *Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return nil
	}
	return r.applied[len(r.applied)-1]
}

func batchFile(n int) string { return "limits: {maxBatch: " + strconv.Itoa(n) + "}\n" }

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newLoaded returns a watcher that has loaded path.
func newLoaded(t *testing.T, path string) *Watcher {
	t.Helper()
	w := NewWatcher(path, noEnv, WatcherOptions{})
	if _, err := w.Load(); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s := w.Status(); s.Generation != 1 || s.Hash == "" || s.LastError != "" {
		t.Fatalf("status after Load: %+v", s)
	}
	return w
}

func TestWatcherSeesEveryKindOfChange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		layout func(t *testing.T, dir string) (path string, update func(content string))
	}{
		{"edit in place", func(t *testing.T, dir string) (string, func(string)) {
			p := filepath.Join(dir, "config.yaml")
			return p, func(c string) { mustWrite(t, p, c) }
		}},
		{"atomic rename", func(t *testing.T, dir string) (string, func(string)) {
			p := filepath.Join(dir, "config.yaml")
			return p, func(c string) {
				tmp := filepath.Join(dir, ".config.yaml.tmp")
				mustWrite(t, tmp, c)
				if err := os.Rename(tmp, p); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"ConfigMap ..data symlink swap", configMapLayout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, update := tc.layout(t, t.TempDir())
			update(batchFile(10))
			w := newLoaded(t, path)
			var r recorder
			if w.Check(r.apply, false) {
				t.Fatal("Check applied an unchanged file")
			}
			update(batchFile(20))
			if !w.Check(r.apply, false) || r.last().Limits.MaxBatch != 20 {
				t.Fatalf("change not applied: %+v", r.last())
			}
			s := w.Status()
			if s.Generation != 2 || s.LastError != "" {
				t.Errorf("status %+v, want generation 2", s)
			}
		})
	}
}

// configMapLayout mimics a Kubernetes ConfigMap volume: config.yaml is a
// symlink to ..data/config.yaml, ..data a symlink to a timestamped folder,
// and an update writes a new folder and renames a new ..data over the old.
func configMapLayout(t *testing.T, dir string) (string, func(string)) {
	n := 0
	update := func(content string) {
		n++
		ts := filepath.Join(dir, "..2026_11_25_00_00_0"+strconv.Itoa(n))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(ts, "config.yaml"), content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")); err != nil {
				t.Fatal(err)
			}
		}
	}
	return filepath.Join(dir, "config.yaml"), update
}

func TestWatcherKeepsRunningConfigOnBadFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, content, inError string }{
		{"bad YAML", "limits: {maxBatch: [\n", "yaml"},
		{"unknown key", "limits: {maxBatchh: 5}\n", "limits.maxBatchh: unknown key"},
		{"invalid value", "limits: {maxBatch: 0}\n", "limits.maxBatch must be between 1 and 1000"},
		{"empty file", "", "config file is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			mustWrite(t, path, batchFile(10))
			w := newLoaded(t, path)
			var r recorder
			mustWrite(t, path, tc.content)
			if w.Check(r.apply, false) || r.last() != nil {
				t.Fatal("a bad file was applied")
			}
			s := w.Status()
			if s.Generation != 1 || !strings.Contains(s.LastError, tc.inError) || s.LastErrorAt == nil {
				t.Fatalf("status %+v, want generation 1 and an error with %q", s, tc.inError)
			}
			mustWrite(t, path, batchFile(30))
			if !w.Check(r.apply, false) || r.last().Limits.MaxBatch != 30 {
				t.Fatal("the fixed file was not applied")
			}
			if s := w.Status(); s.Generation != 2 || s.LastError != "" {
				t.Errorf("after the fix: %+v, want generation 2 and no error", s)
			}
		})
	}
}

func TestWatcherApplyErrorKeepsGeneration(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	mustWrite(t, path, batchFile(10))
	w := newLoaded(t, path)
	r := recorder{fail: errors.New("cannot build the client")}
	mustWrite(t, path, batchFile(11))
	if w.Check(r.apply, false) {
		t.Fatal("applied despite the apply error")
	}
	if s := w.Status(); s.Generation != 1 || !strings.Contains(s.LastError, "cannot build the client") {
		t.Errorf("status %+v", s)
	}
}

func TestWatcherReloadsOnTokenRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	mustWrite(t, tok, "old-token\n")
	path := filepath.Join(dir, "config.yaml")
	mustWrite(t, path, "upstream: {tokenFile: "+tok+"}\n")
	w := newLoaded(t, path)
	var r recorder
	mustWrite(t, tok, "new-token\n")
	if !w.Check(r.apply, false) || r.last().Upstream.Token.Reveal() != "new-token" {
		t.Fatal("a rotated token did not reload the config")
	}
	if s := w.Status(); strings.Contains(s.Hash+s.LastError, "token") {
		t.Errorf("status mentions the token: %+v", s)
	}
}

// TestWatcherReloadsOnPasswordRotation: rewriting only the fleet's Redis
// password file reloads the config with the new password.
func TestWatcherReloadsOnPasswordRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "redis-password")
	mustWrite(t, pw, "old-password\n")
	path := filepath.Join(dir, "config.yaml")
	mustWrite(t, path, "fleet: {redis: {addrs: [redis:6379], passwordFile: "+pw+"}}\n")
	w := newLoaded(t, path)
	var r recorder
	if w.Check(r.apply, false) {
		t.Fatal("reloaded without a change")
	}
	mustWrite(t, pw, "new-password\n")
	if !w.Check(r.apply, false) || r.last().Fleet.Redis.Password.Reveal() != "new-password" {
		t.Fatal("a rotated Redis password did not reload the config")
	}
	if s := w.Status(); strings.Contains(s.Hash+s.LastError, "password") {
		t.Errorf("status mentions the password: %+v", s)
	}
}

func TestWatcherRunPollsAndHonoursTrigger(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	mustWrite(t, path, "reload: {interval: 1h}\n"+batchFile(10))
	w := newLoaded(t, path)
	var r recorder
	trigger := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, r.apply, trigger) }()
	mustWrite(t, path, "reload: {interval: 1h}\n"+batchFile(40))
	trigger <- os.Interrupt // stands in for SIGHUP: the poll interval is an hour
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := w.Wait(wctx, func(s Status) bool { return s.Generation == 2 }); err != nil {
		t.Fatal(err)
	}
	// A short interval picks up the next change by polling alone.
	mustWrite(t, path, "reload: {interval: 100ms}\n"+batchFile(50))
	trigger <- os.Interrupt
	if err := w.Wait(wctx, func(s Status) bool { return s.Generation == 3 }); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, path, "reload: {interval: 100ms}\n"+batchFile(60))
	if err := w.Wait(wctx, func(s Status) bool { return s.Generation == 4 }); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.last().Limits.MaxBatch; got != 60 {
		t.Errorf("maxBatch = %d, want 60", got)
	}
}
