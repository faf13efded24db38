package sidecar

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of the restore at start, the values of
// snapshot_loads_total{outcome} and /health snapshot.loadOutcome.
const (
	snapLoaded    = "loaded"    // the file was good; its servable entries are in the cache
	snapMissing   = "missing"   // no file: a first start
	snapEmpty     = "empty"     // a file of 0 bytes
	snapTruncated = "truncated" // ends early
	snapCorrupt   = "corrupt"   // checksum mismatch or impossible contents
	snapVersion   = "version"   // a format version this build does not read
	snapForeign   = "foreign"   // not a snapshot at all
	snapInsecure  = "insecure"  // writable by group or others, or another user's: refused
	snapError     = "error"     // could not be read (permissions, I/O)
)

// Why a snapshot is written, in logs and /health.
const (
	writePeriodic = "periodic"
	writeShutdown = "shutdown"
)

// loadOutcome classifies a RestoreSnapshot error.
func loadOutcome(err error) string {
	for _, c := range []struct {
		target  error
		outcome string
	}{
		{nil, snapLoaded},
		{fs.ErrNotExist, snapMissing},
		{cache.ErrSnapshotEmpty, snapEmpty},
		{cache.ErrSnapshotTruncated, snapTruncated},
		{cache.ErrSnapshotCorrupt, snapCorrupt},
		{cache.ErrSnapshotVersion, snapVersion},
		{cache.ErrSnapshotForeign, snapForeign},
		{cache.ErrSnapshotInsecure, snapInsecure},
	} {
		if errors.Is(err, c.target) {
			return c.outcome
		}
	}
	return snapError
}

// snapshots is the sidecar's side of snapshot.path: what the restore at
// start found and what the writes did, for /health, the metrics and
// readiness. The file itself is the cache's business.
type snapshots struct {
	path string        // snapshot.path at start ("" = off); restart-only
	kick chan struct{} // a reload changed snapshot.interval: re-arm the wait
	// loads counts the restore at start by outcome: one series, at 1.
	loads *prometheus.CounterVec

	// mu guards the fields below. Writers are Run's snapshot goroutine and,
	// after it has stopped, Run itself; readers are /health, /readyz and
	// scrapes.
	mu       sync.Mutex
	load     snapLoad
	last     snapWrite // the last write that finished, failed or not
	lastOK   snapWrite // the last write that succeeded
	ok, fail int64
	changed  chan struct{} // closed and replaced when a write finishes
}

type snapLoad struct {
	outcome string
	err     string
	at      time.Time
	took    time.Duration
	r       cache.Restored
}

type snapWrite struct {
	at     time.Time
	reason string
	took   time.Duration
	info   cache.SnapshotInfo
	err    string
}

func newSnapshots(path string) *snapshots {
	return &snapshots{path: path, kick: make(chan struct{}, 1), changed: make(chan struct{}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "snapshot_loads_total",
			Help: "Snapshot restores at start by outcome (loaded, missing, empty, truncated, corrupt, version, foreign, insecure, error): one, at 1."},
			[]string{"outcome"})}
}

func (sn *snapshots) enabled() bool { return sn.path != "" }

// reconfigured wakes the writer to re-arm its wait with a new interval.
func (sn *snapshots) reconfigured() {
	select {
	case sn.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

func (sn *snapshots) setLoad(l snapLoad) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.load = l
	sn.loads.WithLabelValues(l.outcome).Inc()
}

func (sn *snapshots) record(w snapWrite) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.last = w
	if w.err == "" {
		sn.lastOK = w
		sn.ok++
	} else {
		sn.fail++
	}
	close(sn.changed)
	sn.changed = make(chan struct{})
}

// restored returns how many entries the restore loaded and the newest
// fetched-at among them.
func (sn *snapshots) restored() (int, time.Time) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return sn.load.r.Loaded, sn.load.r.Newest
}

// restoreSnapshot loads snapshot.path into the cache, serving only the
// entries resolve.Admit lets in. Temporary files of a write that a crash
// interrupted are removed first. A missing, unreadable or bad file is
// logged and counted, and the cache starts empty. It runs in New, before
// the listener serves and so before readiness.
func (s *Sidecar) restoreSnapshot(cfg *config.Config) {
	path := s.snaps.path
	// The directory is made private if the sidecar makes it: a directory
	// others may write is refused on restore (see cache.RestoreSnapshot).
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		s.log.Warn("snapshot: cannot create its directory", "path", path, "error", err.Error())
	}
	if removed, err := cache.RemoveSnapshotTemps(path); err != nil {
		s.log.Warn("snapshot: cannot clean its directory", "path", path, "error", err.Error())
	} else if len(removed) > 0 {
		s.log.Info("snapshot: removed the temporary files of interrupted writes", "path", path, "files", removed)
	}
	began := time.Now()
	r, err := s.cache.RestoreSnapshot(path, cfg.Validation.Policy(), s.now(), func(id string, e cache.Entry) error {
		return resolve.Admit(cfg.Format, id, e) // only what a write of this sidecar could have produced
	})
	l := snapLoad{outcome: loadOutcome(err), at: s.now(), took: time.Since(began), r: r}
	if err != nil {
		l.err = err.Error()
	}
	s.snaps.setLoad(l)
	switch l.outcome {
	case snapLoaded:
		s.log.Info("snapshot restored", "path", path, "loaded", r.Loaded, "skipped", r.Skipped,
			"expired", r.Expired, "superseded", r.Superseded, "entries", r.Entries,
			"writtenAt", r.WrittenAt, "durationMs", millis(l.took))
		if r.Rejected > 0 {
			s.log.Warn("snapshot entries refused: no write of this sidecar makes such entries, so the file was forged or written by something else",
				"path", path, "rejected", r.Rejected, "first", r.FirstRejection)
		}
	case snapMissing:
		s.log.Info("no snapshot to restore: the cache starts empty", "path", path)
	default:
		s.log.Warn("snapshot ignored: the cache starts empty", "path", path, "outcome", l.outcome, "error", l.err)
	}
}

// runSnapshots writes the snapshot every snapshot.interval until ctx ends;
// Run writes the last one itself, after the drain. The interval is read
// from the running config before each wait, and a reload that changes it
// re-arms the wait at once.
func (s *Sidecar) runSnapshots(ctx context.Context) {
	for {
		t := time.NewTimer(s.cfg.Load().Snapshot.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.snaps.kick:
			t.Stop()
			continue
		case <-t.C:
		}
		s.writeSnapshot(ctx, writePeriodic)
	}
}

// writeSnapshot writes the cache to snapshot.path once, and logs and
// records the result. A periodic write that ctx cuts short (shutdown) is
// neither: the write after the drain replaces it.
func (s *Sidecar) writeSnapshot(ctx context.Context, reason string) {
	s.log.Debug("writing snapshot", "path", s.snaps.path, "reason", reason)
	began := time.Now()
	info, err := s.cache.WriteSnapshot(ctx, s.snaps.path, s.cfg.Load().Validation.Policy(), s.now())
	w := snapWrite{at: s.now(), reason: reason, took: time.Since(began), info: info}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) {
		s.log.Debug("snapshot write abandoned for the one after the drain", "path", s.snaps.path)
		return
	}
	if err != nil {
		w.err = err.Error()
		s.log.Error("snapshot write failed", "path", s.snaps.path, "reason", reason, "error", w.err)
	} else {
		level := slog.LevelDebug // one line a minute by default: only the one at shutdown is worth info
		if reason == writeShutdown {
			level = slog.LevelInfo
		}
		s.log.Log(context.Background(), level, "snapshot written", "path", s.snaps.path, "reason", reason,
			"entries", info.Entries, "bytes", info.Bytes, "durationMs", millis(w.took))
	}
	s.snaps.record(w)
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Sidecar) snapshotHealth(cfg *config.Config) healthSnapshot {
	sn := s.snaps
	h := healthSnapshot{Enabled: sn.enabled(), Path: sn.path, Interval: cfg.Snapshot.Interval.String()}
	if !h.Enabled {
		return h
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	l := sn.load
	h.LoadOutcome, h.LoadError, h.Loaded, h.Skipped, h.LoadMs = l.outcome, l.err, l.r.Loaded, l.r.Skipped, millis(l.took)
	h.Rejected = l.r.Rejected
	h.LoadedAt = &l.at
	if l.outcome == snapLoaded {
		h.FileWrittenAt = &l.r.WrittenAt
	}
	if w := sn.last; !w.at.IsZero() {
		h.LastWrite = &healthSnapWrite{Time: w.at, Reason: w.reason, DurationMs: millis(w.took), Entries: w.info.Entries, Bytes: w.info.Bytes, Error: w.err}
	}
	h.WritesOK, h.WritesFailed = sn.ok, sn.fail
	return h
}

// snapshotCollectors are the snapshot metrics, read at scrape time but
// for the restore's outcome, registered with snapshot.path set.
func (s *Sidecar) snapshotCollectors() []prometheus.Collector {
	sn := s.snaps
	read := func(f func() float64) func() float64 {
		return func() float64 {
			sn.mu.Lock()
			defer sn.mu.Unlock()
			return f()
		}
	}
	cols := []prometheus.Collector{sn.loads}
	entries := func(kind string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "snapshot_entries",
			Help: "Entries of the snapshot restored at start: loaded into the cache, skipped (expired, superseded or rejected), or rejected by the re-check (forged).", ConstLabels: prometheus.Labels{"kind": kind}},
			read(func() float64 { return float64(f()) }))
	}
	writes := func(outcome string, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "snapshot_writes_total",
			Help: "Snapshot writes by outcome (ok, failed).", ConstLabels: prometheus.Labels{"outcome": outcome}},
			read(func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, read(f))
	}
	return append(cols,
		entries("loaded", func() int { return sn.load.r.Loaded }),
		entries("skipped", func() int { return sn.load.r.Skipped }),
		entries("rejected", func() int { return sn.load.r.Rejected }),
		writes("ok", func() int64 { return sn.ok }),
		writes("failed", func() int64 { return sn.fail }),
		gauge("snapshot_last_write_duration_seconds", "Duration of the last successful snapshot write.", func() float64 { return sn.lastOK.took.Seconds() }),
		gauge("snapshot_last_write_bytes", "Size of the last successfully written snapshot.", func() float64 { return float64(sn.lastOK.info.Bytes) }),
		gauge("snapshot_last_write_entries", "Entries in the last successfully written snapshot.", func() float64 { return float64(sn.lastOK.info.Entries) }),
		gauge("snapshot_last_success_timestamp_seconds", "Unix time of the last successful snapshot write; 0 before the first.", func() float64 {
			if sn.lastOK.at.IsZero() {
				return 0
			}
			return float64(sn.lastOK.at.UnixNano()) / 1e9
		}),
	)
}
