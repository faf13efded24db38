package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/file"
)

// ApplyFunc installs a new config in the running sidecar. It returns the
// keys whose new values need a restart to take effect (they are kept at
// their running values), or an error, in which case the running config
// stays as it was.
type ApplyFunc func(next *Config) (restartRequired []string, err error)

// Status is the reload state, for /health's config section.
type Status struct {
	// Path is the config file; empty when the config did not come from a file.
	Path string `json:"path,omitempty"`
	// Generation counts applied configs: 1 for the one loaded at start.
	Generation int64 `json:"generation"`
	// Hash is the SHA-256 of the applied file's bytes, in hex.
	Hash string `json:"hash"`
	// LoadedAt is when the applied config was loaded.
	LoadedAt time.Time `json:"loadedAt"`
	// LastError is why the newest file was rejected; empty once a good one
	// is applied.
	LastError string `json:"lastError"`
	// LastErrorAt is when LastError was set.
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
	// RestartRequired lists keys changed in the file that apply only after
	// a restart.
	RestartRequired []string `json:"restartRequired"`
	// Applied counts reloads applied since start (not the initial load);
	// Rejected counts distinct files (or read errors) rejected.
	Applied  int64 `json:"applied"`
	Rejected int64 `json:"rejected"`
}

// Watcher loads the config file and reloads it when its content changes:
// Run polls every reload.interval (±10 % jitter) and reloads at once on a
// trigger (SIGHUP). Change detection hashes the file's bytes and those of
// upstream.tokenFile, the upstream.tls files and fleet.redis.passwordFile,
// so an edit in place, an atomic rename and a Kubernetes ConfigMap's ..data
// symlink swap are all seen, as is a rotated token, CA bundle, client
// certificate or Redis password. A
// file that fails to load or apply leaves the running config in place; its
// problem is logged once and kept in Status until a good file replaces it.
type Watcher struct {
	path      string
	lookupEnv func(string) (string, bool)
	log       *slog.Logger
	now       func() time.Time

	// Owned by the goroutine that calls Load, then Run (or Check).
	current *Config
	seen    [sha256.Size]byte // fingerprint of the last file tried, good or bad

	// mu guards status and changed.
	mu      sync.Mutex
	status  Status
	changed chan struct{} // closed and replaced after every reload attempt
}

// WatcherOptions are a Watcher's optional collaborators.
type WatcherOptions struct {
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now
}

// NewWatcher returns a watcher for the file at path; lookupEnv is as for Parse.
func NewWatcher(path string, lookupEnv func(string) (string, bool), opts WatcherOptions) *Watcher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{path: path, lookupEnv: lookupEnv, log: opts.Logger, now: opts.Now,
		status: Status{Path: path}, changed: make(chan struct{})}
}

// SetLogger replaces the logger, e.g. once Load has told which log format the
// config wants. Call it before Run.
func (w *Watcher) SetLogger(l *slog.Logger) { w.log = l }

// Load reads and parses the file for the first time (generation 1), as
// the package's Load does.
func (w *Watcher) Load() (*Config, error) {
	f, err := readConfig(w.path, w.lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("loading config %q: %w", w.path, err)
	}
	c, err := f.parse(w.path, w.lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("loading config %q: %w", w.path, err)
	}
	w.current, w.seen = c, w.fingerprint(f, c)
	w.mu.Lock()
	w.status.Generation, w.status.Hash, w.status.LoadedAt = 1, hashHex(f.data), w.now()
	w.mu.Unlock()
	return c, nil
}

// Run checks the file every reload.interval of the running config, and at
// once whenever trigger delivers, until ctx ends. Load must have succeeded.
func (w *Watcher) Run(ctx context.Context, apply ApplyFunc, trigger <-chan os.Signal) error {
	t := time.NewTimer(w.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
			w.log.Info("reloading config on signal", "path", w.path)
			w.Check(apply, true)
		case <-t.C:
			w.Check(apply, false)
		}
		t.Reset(w.interval())
	}
}

func (w *Watcher) interval() time.Duration {
	d := w.current.Reload.Interval
	return d - d/10 + rand.N(d/5+1) // ±10 %
}

// Check reads the file once and, if it changed since the last attempt (or
// force is set), loads and applies it. It reports whether a new config was
// applied. Check must not run concurrently with Run or itself.
func (w *Watcher) Check(apply ApplyFunc, force bool) bool {
	f, err := readConfig(w.path, w.lookupEnv)
	if err != nil {
		w.reject(fmt.Errorf("reading config %q: %w", w.path, err), [sha256.Size]byte{}, force)
		return false
	}
	fp := w.fingerprint(f, w.current)
	if fp == w.seen && !force {
		return false
	}
	next, err := f.parse(w.path, w.lookupEnv)
	if err != nil {
		w.reject(fmt.Errorf("loading config %q: %w", w.path, err), fp, force)
		return false
	}
	restart, err := apply(next)
	if err != nil {
		w.reject(fmt.Errorf("applying config %q: %w", w.path, err), fp, force)
		return false
	}
	w.current, w.seen = next, w.fingerprint(f, next)
	w.mu.Lock()
	w.status.Generation++
	w.status.Applied++
	w.status.Hash, w.status.LoadedAt = hashHex(f.data), w.now()
	w.status.LastError, w.status.LastErrorAt = "", nil
	w.status.RestartRequired = restart
	gen := w.status.Generation
	w.notifyLocked()
	w.mu.Unlock()
	w.log.Info("config reloaded", "path", w.path, "generation", gen)
	if len(restart) > 0 {
		w.log.Warn("config changes need a restart to take effect; the running values are kept", "keys", restart)
	}
	return true
}

// reject records a file that could not be used. It logs once per distinct
// file content (every time when forced), so a bad file does not flood the
// log at every poll.
func (w *Watcher) reject(err error, fp [sha256.Size]byte, force bool) {
	repeated := fp == w.seen && fp != [sha256.Size]byte{}
	w.seen = fp
	now := w.now()
	w.mu.Lock()
	same := w.status.LastError == err.Error()
	fresh := force || !(repeated || same)
	w.status.LastError, w.status.LastErrorAt = err.Error(), &now
	if fresh {
		w.status.Rejected++
	}
	w.notifyLocked()
	w.mu.Unlock()
	if fresh {
		w.log.Error("config rejected; the running config is kept", "error", err.Error())
	}
}

func (w *Watcher) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// Status returns the reload state.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.RestartRequired = append([]string{}, s.RestartRequired...)
	return s
}

// Wait blocks until cond holds for the reload state or ctx ends; it wakes on
// every reload attempt. Meant for tests and tools.
func (w *Watcher) Wait(ctx context.Context, cond func(Status) bool) error {
	for {
		w.mu.Lock()
		s, ch := w.status, w.changed
		w.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for a config reload: %w", ctx.Err())
		}
	}
}

// fingerprint covers the file (its bytes and mode) and the files c names
// (upstream.tokenFile, the upstream.tls files, fleet.redis.passwordFile),
// so rotating a token, a CA bundle, a client certificate or a password
// alone triggers a reload, and so does a change of who may write or read
// one of them.
func (w *Watcher) fingerprint(f configFile, c *Config) [sha256.Size]byte {
	h := sha256.New()
	h.Write(f.data)
	fmt.Fprintf(h, "\x00%o", uint32(f.mode))
	if c != nil {
		t := c.Upstream.TLS
		for _, path := range []string{c.Upstream.TokenFile, t.CAFile, t.CertFile, t.KeyFile, c.Fleet.Redis.PasswordFile} {
			hashFile(h, path)
		}
	}
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// hashFile adds a separator and the trimmed content of the file at path,
// its mode and what file.Check says of it (or its read error) to h;
// nothing but the separator when path is empty. It reads as the loader
// does: a regular file only, never blocking, at most maxConfigBytes.
func hashFile(h hash.Hash, path string) {
	h.Write([]byte{0})
	if path == "" {
		return
	}
	b, fi, err := file.Read(path, maxConfigBytes)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		h.Write([]byte(err.Error()))
	default:
		h.Write(bytes.TrimSpace(b))
		fmt.Fprintf(h, "\x00%o", uint32(fi.Mode()))
		if err := file.Check(path, fi); err != nil {
			h.Write([]byte(err.Error()))
		}
	}
}

func hashHex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
