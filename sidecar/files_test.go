//go:build unix

package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// TestConfigOthersCouldWriteIsRefused: a config file any user may write
// is refused at start, and at reload, where the running config stays and
// /health's config.lastError says why. Before, another local user could
// point upstream.url at a listener of theirs and receive the token with
// the next mint.
func TestConfigOthersCouldWriteIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("upstream: {url: http://127.0.0.1:1/v1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := config.NewWatcher(path, noEnv, config.WatcherOptions{}).Load(); err == nil || !strings.Contains(err.Error(), "is writable by group or others (mode 0666)") {
		t.Fatalf("start with a 0666 config: %v, want it refused", err)
	}

	h := startFile(t, sim.Config{}, "limits: {maxBatch: 5}\n")
	three := `{"requests":[{"entity":"PEO"},{"entity":"PEO"},{"entity":"PEO"}]}`
	h.writeConfig(configFor(h.sim, sim.Config{}, "limits: {maxBatch: 2}\n"))
	if err := os.Chmod(h.file, 0o666); err != nil {
		t.Fatal(err)
	}
	h.reload <- os.Interrupt
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.watcher.Wait(ctx, func(s config.Status) bool { return s.LastError != "" }); err != nil {
		t.Fatalf("the 0666 config was not refused at reload: %v; status %+v", err, h.watcher.Status())
	}
	doc := h.configDoc()
	if last, _ := doc["lastError"].(string); doc["generation"] != float64(1) || !strings.Contains(last, "writable by group or others (mode 0666); make it writable by its owner only (chmod go-w)") {
		t.Errorf("/health config section %v, want generation 1 and why", doc)
	}
	h.do("POST", "/v1/mint/batch", three).expect(t, "the running config (maxBatch 5) still applies", 200, "")
}

// TestSpecialTokenFileDoesNotHang: a token file swapped for a FIFO is
// refused at the next reload poll, which returns at once, and the sidecar
// still stops when told to. Before, the poll waited forever for a writer,
// reloads stopped silently and a SIGTERM never finished the shutdown.
// /dev/zero as the token file is refused at load instead of read until
// memory runs out.
func TestSpecialTokenFileDoesNotHang(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	zeroCfg := filepath.Join(dir, "zero.yaml")
	if err := os.WriteFile(zeroCfg, []byte("upstream: {tokenFile: /dev/zero}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded := make(chan error, 1)
	go func() { _, err := config.Load(zeroCfg, noEnv); loaded <- err }()
	select {
	case err := <-loaded:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("tokenFile /dev/zero: %v, want it refused as not a regular file", err)
		}
	case <-time.After(20 * time.Second): // generous: nothing is read at all
		t.Fatal("loading a config with tokenFile /dev/zero did not return")
	}

	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startFile(t, sim.Config{}, "reload: {interval: 100ms}\nupstream:\n  tokenFile: "+tok+"\n")
	if err := os.Remove(tok); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // if an open waits for a writer, let it go
		if f, err := os.OpenFile(tok, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.watcher.Wait(ctx, func(s config.Status) bool { return strings.Contains(s.LastError, "named pipe (FIFO)") }); err != nil {
		t.Errorf("the FIFO was not refused by a reload poll: %v; status %+v", err, h.watcher.Status())
	}
	h.mint("PEO").expect(t, "mint with the running token", 200, "")
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second): // generous: a stop takes well under a second
		t.Fatal("the sidecar did not stop")
	}
}

// TestSpecialFilesAndSIGTERM runs the real binary with a FIFO at
// snapshot.path: it listens (the snapshot ignored as foreign) instead of
// waiting for a writer before it listens. Then its token file is swapped
// for a FIFO: a reload poll refuses it, and SIGTERM still stops the
// process cleanly. Before, both FIFOs hung it for good (SIGKILL needed).
func TestSpecialFilesAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := buildSidecar(t, dir)
	snap, tok := filepath.Join(dir, "data", "snapshot.bin"), filepath.Join(dir, "token")
	if err := os.Mkdir(filepath.Dir(snap), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, fifo := range []string{snap} {
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("no FIFOs here: %v", err)
		}
	}
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nupstream: {url: http://127.0.0.1:1/v1, tokenFile: %q}\nsnapshot: {path: %q}\nreload: {interval: 100ms}\nlog: {access: false}\n", tok, snap)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // if an open waits for a writer, let it go
		for _, fifo := range []string{snap, tok} {
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				_ = f.Close()
			}
		}
	})
	p := startProc(t, bin, cfgFile) // waits for "sidecar listening"
	if l := p.waitLog(1, "snapshot ignored: the cache starts empty"); l["outcome"] != "foreign" {
		t.Errorf("the FIFO at snapshot.path: %v, want outcome foreign", l)
	}
	if err := os.Remove(tok); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	if l := p.waitLog(1, "config rejected; the running config is kept"); !strings.Contains(fmt.Sprint(l["error"]), "named pipe (FIFO)") {
		t.Errorf("the FIFO token file: %v, want it refused as a FIFO", l)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second): // generous: a stop takes well under a second
		t.Fatal("the process did not exit on SIGTERM")
	}
}

// TestConfigWarningsAreLogged: a token file every user may read is used,
// and the sidecar says what mode to give it, at start and on reload.
func TestConfigWarningsAreLogged(t *testing.T) {
	t.Parallel()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tok, 0o644); err != nil {
		t.Fatal(err)
	}
	h := startFile(t, sim.Config{}, "upstream:\n  tokenFile: "+tok+"\n")
	h.logs.waitForLine(t, func(l map[string]any) bool {
		w, _ := l["warning"].(string)
		return l["msg"] == "config warning" && strings.Contains(w, "every user may read it (mode 0644): make it 0600")
	})
	h.mint("PEO").expect(t, "mint with the token of a 0644 file", 200, "")
}
