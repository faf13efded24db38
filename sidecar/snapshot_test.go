package sidecar_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/fsm"
	"github.com/chittyos/chittyid-sidecar/sidecar/testout"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// snapshotConfig is a config fragment with the snapshot at path, written
// every interval.
func snapshotConfig(path, interval string) string {
	return fmt.Sprintf("snapshot: {path: %q, interval: %s}\n", path, interval)
}

// cacheDoc returns the /health resilience.cache section.
func cacheDoc(h *harness) map[string]any {
	h.t.Helper()
	return h.do("GET", "/health", "").body["resilience"].(map[string]any)["cache"].(map[string]any)
}

// waitForLine blocks until a logged line satisfies ok (10s at most); unlike
// waitFor it looks at lines of every type, plain slog lines included.
func (b *logBuffer) waitForLine(t *testing.T, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		text, ch := b.next()
		for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && ok(m) {
				return m
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no matching log line within 10s; the last lines but access lines:\n%s",
				testout.Last(t, "log.jsonl", b.String(), func(l string) bool { return !strings.Contains(l, `"type":"access"`) }))
		}
	}
}

// snapshotDoc returns the /health snapshot section.
func (h *harness) snapshotDoc() map[string]any {
	h.t.Helper()
	return h.do("GET", "/health", "").body["snapshot"].(map[string]any)
}

// readinessDoc returns the /health readiness section.
func (h *harness) readinessDoc() map[string]any {
	h.t.Helper()
	return h.do("GET", "/health", "").body["readiness"].(map[string]any)
}

// waitSnapshotWrites waits (event-driven, 10s at most) for n finished writes.
func (h *harness) waitSnapshotWrites(n int64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sc.WaitSnapshotWrites(ctx, n); err != nil {
		h.t.Fatalf("%d snapshot writes not done: %v; /health snapshot: %v", n, err, h.snapshotDoc())
	}
}

func refuseFirst(t *testing.T) func(*sim.Sim) {
	return func(s *sim.Sim) {
		if err := s.SetFault(sim.Fault{Mode: sim.ModeRefuse}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestartDuringUpstreamOutageAnswersFromSnapshot is docs/snapshot.md's promise:
// IDs validated before a restart are answered after it, with upstream down
// all along, HIT while fresh and STALE after their ttl, and never with an
// upstream call; under readiness.policy degraded the restarted sidecar is
// ready, and /health says why.
func TestRestartDuringUpstreamOutageAnswersFromSnapshot(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	extra := fastHealth + "validate: {ttl: 1m, negativeTtl: 1m, staleIfError: 1h}\n" + snapshotConfig(path, "1h")

	before := start(t, sim.Config{}, extra)
	before.waitState(fsm.Connected)
	want := map[string]map[string]any{}
	for _, entity := range []string{"PEO", "EVNT", "INFO"} {
		id := before.mustMint(entity)
		want[id] = before.validate(id).body
	}
	const unknown = "ID-B-CHI-5678-P-24-B-X" // well-formed; upstream says not valid
	want[unknown] = before.validate(unknown).body
	if want[unknown]["valid"] != false || want[unknown]["reason"] != "upstream" {
		t.Fatalf("validate of an unknown ID: %v", want[unknown])
	}
	if err := before.stop(); err != nil {
		t.Fatalf("stopping the first sidecar: %v", err)
	}
	before.logs.waitForLine(t, func(l map[string]any) bool {
		return l["msg"] == "snapshot written" && l["reason"] == "shutdown" && l["entries"] == float64(4)
	})
	if info, err := cache.VerifySnapshot(path); err != nil || info.Entries != 4 {
		t.Fatalf("snapshot after shutdown: %+v, %v", info, err)
	}

	// The restart, with upstream refusing connections.
	after := startWith(t, sim.Config{}, extra, refuseFirst(t))
	after.waitDown()
	if got := after.ready(); got != 200 {
		t.Errorf("restored a snapshot, upstream down: /readyz %d, want 200 under degraded", got)
	}
	rd := after.readinessDoc()
	if rd["ready"] != true || !strings.Contains(fmt.Sprint(rd["reason"]), "never reached since start, but 4 entries restored from the snapshot") {
		t.Errorf("/health readiness = %v", rd)
	}
	sd := after.snapshotDoc()
	if sd["loadOutcome"] != "loaded" || sd["loaded"] != float64(4) || sd["skipped"] != float64(0) || sd["path"] != path || sd["loadedAt"] == nil {
		t.Errorf("/health snapshot = %v", sd)
	}
	for id, w := range want {
		v := after.validate(id)
		if v.status != 200 || v.header.Get("X-Cache") != "HIT" || v.body["valid"] != w["valid"] || v.body["entity"] != w["entity"] || v.body["reason"] != w["reason"] {
			t.Errorf("fresh after the restart, %s: %d %s X-Cache=%s; before: %v", id, v.status, v.raw, v.header.Get("X-Cache"), w)
		}
	}

	after.waitState(fsm.Failed)
	if got := after.ready(); got != 200 {
		t.Errorf("restored a snapshot, FAILED: /readyz %d, want 200 under degraded", got)
	}
	after.clock.advance(5 * time.Minute) // past ttl, within staleIfError
	for id, w := range want {
		v := after.validate(id)
		age, _ := strconv.Atoi(v.header.Get("Age"))
		if v.status != 200 || v.header.Get("X-Cache") != "STALE" || v.body["stale"] != true || v.body["valid"] != w["valid"] || age < 300 {
			t.Errorf("stale after the restart, %s: %d %s X-Cache=%s Age=%s", id, v.status, v.raw, v.header.Get("X-Cache"), v.header.Get("Age"))
		}
	}
	after.validate("CT-A-CHI-4321-P-24-A-0").expect(t, "an ID the snapshot lacks", 503, "UPSTREAM_UNAVAILABLE")
	fams := after.scrape()
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"chittyid_sidecar_upstream_attempts_total", []string{"op=validate"}, -1}, // no series: never tried
		{"chittyid_sidecar_validate_answers_total", []string{"cache=HIT"}, 4},
		{"chittyid_sidecar_validate_answers_total", []string{"cache=STALE"}, 4},
		{"chittyid_sidecar_snapshot_loads_total", []string{"outcome=loaded"}, 1},
		{"chittyid_sidecar_snapshot_entries", []string{"kind=loaded"}, 4},
		{"chittyid_sidecar_snapshot_entries", []string{"kind=skipped"}, 0},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Once every restored entry is past staleIfError there is nothing left
	// to serve: not ready.
	after.clock.advance(2 * time.Hour)
	if got := after.ready(); got != 503 {
		t.Errorf("restored entries all expired: /readyz %d, want 503", got)
	}
	if rd := after.readinessDoc(); !strings.Contains(fmt.Sprint(rd["reason"]), "older than validate.staleIfError") {
		t.Errorf("/health readiness = %v", rd)
	}
}

// TestReadinessPoliciesWithARestoredSnapshot: only degraded counts a
// restored snapshot; connected and always are unchanged.
func TestReadinessPoliciesWithARestoredSnapshot(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	writeSnapshotFile(t, path, 2)
	for _, tc := range []struct {
		policy string
		want   int
		reason string
	}{
		{"degraded", 200, "2 entries restored from the snapshot"},
		{"connected", 503, "policy connected needs CONNECTED"},
		{"always", 200, "policy always"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			h := startWith(t, sim.Config{}, fastHealth+"readiness: {policy: "+tc.policy+"}\n"+snapshotConfig(path, "1h"), refuseFirst(t))
			h.waitState(fsm.Failed)
			r := h.do("GET", "/readyz", "")
			if r.status != tc.want || !strings.Contains(fmt.Sprint(r.body["reason"]), tc.reason) {
				t.Errorf("/readyz %d %s, want %d and a reason with %q", r.status, r.raw, tc.want, tc.reason)
			}
		})
	}
	t.Run("degraded without a snapshot", func(t *testing.T) {
		t.Parallel()
		h := startWith(t, sim.Config{}, fastHealth, refuseFirst(t))
		h.waitState(fsm.Failed)
		if rd := h.readinessDoc(); rd["ready"] != false || !strings.Contains(fmt.Sprint(rd["reason"]), "no snapshot entries restored") {
			t.Errorf("/health readiness = %v", rd)
		}
	})
}

// writeSnapshotFile writes a snapshot of n valid entries fetched now, as a
// sidecar that had seen them would.
func writeSnapshotFile(t *testing.T, path string, n int) []byte {
	t.Helper()
	p := config.Defaults().Validation.Policy()
	c, err := cache.New(cache.Config{MaxSizeMB: 2, Shards: 4}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now()
	for i := range n {
		if err := c.Store(fmt.Sprintf("CT-A-CHI-%04d-P-24-A-0", i), cache.Entry{Valid: true, FetchedAt: now, Value: []byte("PEO")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WriteSnapshot(context.Background(), path, p, now); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadSnapshotFilesAreIgnored: each kind of bad file is reported with a
// log line and a metric, and the sidecar starts with an empty cache, serves,
// and replaces the file with a good one.
func TestBadSnapshotFilesAreIgnored(t *testing.T) {
	t.Parallel()
	good := writeSnapshotFile(t, filepath.Join(t.TempDir(), "good.bin"), 3)
	flip := func(off int) []byte { b := bytes.Clone(good); b[off] ^= 0xff; return b }
	version := bytes.Clone(good)
	binary.LittleEndian.PutUint32(version[16:], 9)
	for _, tc := range []struct {
		outcome string
		data    []byte
		detail  string
		mode    os.FileMode
	}{
		{"empty", []byte{}, "empty", 0o600},
		{"truncated", good[:len(good)-40], "truncated", 0o600},
		{"corrupt", flip(50), "SHA-256", 0o600},
		{"version", version, "version 9", 0o600},
		{"foreign", []byte("listen: 127.0.0.1:8787\nupstream: {}\n" + strings.Repeat("#", 80)), "not a snapshot file", 0o600},
		{"insecure", good, "writable by group or others (mode 0660)", 0o660},
	} {
		t.Run(tc.outcome, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "snapshot.bin")
			if err := os.WriteFile(path, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			h := start(t, sim.Config{}, snapshotConfig(path, "1h"))
			line := h.logs.waitForLine(t, func(l map[string]any) bool { return l["msg"] == "snapshot ignored: the cache starts empty" })
			if line["level"] != "WARN" || line["outcome"] != tc.outcome || line["path"] != path || !strings.Contains(fmt.Sprint(line["error"]), tc.detail) {
				t.Errorf("log line %v, want WARN, outcome %s, the path and %q", line, tc.outcome, tc.detail)
			}
			sd := h.snapshotDoc()
			if sd["loadOutcome"] != tc.outcome || sd["loaded"] != float64(0) || !strings.Contains(fmt.Sprint(sd["loadError"]), tc.detail) {
				t.Errorf("/health snapshot = %v", sd)
			}
			if size := cacheDoc(h)["size"]; size != float64(0) {
				t.Errorf("cache size %v after a bad snapshot, want 0", size)
			}
			fams := h.scrape()
			for _, o := range []string{"loaded", "missing", "empty", "truncated", "corrupt", "version", "foreign", "insecure", "error"} {
				want := -1.0 // only the outcome that happened is served
				if o == tc.outcome {
					want = 1
				}
				if got := value(fams, "chittyid_sidecar_snapshot_loads_total", "outcome="+o); got != want {
					t.Errorf("snapshot_loads_total{outcome=%s} = %v, want %v", o, got, want)
				}
			}
			h.waitState(fsm.Connected)
			id := h.mustMint("PEO")
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			if info, err := cache.VerifySnapshot(path); err != nil || info.Entries != 1 {
				t.Errorf("the file after the shutdown write: %+v, %v; want a good snapshot holding %s", info, err, id)
			}
		})
	}
}

func TestMissingSnapshotIsAFirstStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	h := start(t, sim.Config{}, snapshotConfig(path, "1h"))
	line := h.logs.waitForLine(t, func(l map[string]any) bool { return l["msg"] == "no snapshot to restore: the cache starts empty" })
	if line["level"] != "INFO" {
		t.Errorf("log line %v, want INFO", line)
	}
	if v := value(h.scrape(), "chittyid_sidecar_snapshot_loads_total", "outcome=missing"); v != 1 {
		t.Errorf("snapshot_loads_total{outcome=missing} = %v, want 1", v)
	}
}

// TestSnapshotPeriodicWrites waits for writes by event, not by sleeping.
func TestSnapshotPeriodicWrites(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	h := start(t, sim.Config{}, snapshotConfig(path, "100ms"))
	h.waitState(fsm.Connected)
	ids := []string{h.mustMint("PEO"), h.mustMint("PLACE")}
	// Writes that began before the second mint may hold one ID: wait for one
	// that began after it.
	h.waitSnapshotWrites(1)
	first := h.snapshotDoc()["writesOk"].(float64)
	h.waitSnapshotWrites(int64(first) + 2)
	sd := h.snapshotDoc()
	lw := sd["lastWrite"].(map[string]any)
	if lw["reason"] != "periodic" || lw["entries"] != float64(len(ids)) || lw["error"] != "" || lw["bytes"].(float64) <= 0 {
		t.Errorf("/health snapshot.lastWrite = %v", lw)
	}
	if info, err := cache.VerifySnapshot(path); err != nil || info.Entries != len(ids) {
		t.Errorf("the file: %+v, %v", info, err)
	}
	fams := h.scrape()
	if v := value(fams, "chittyid_sidecar_snapshot_writes_total", "outcome=ok"); v < 3 {
		t.Errorf("snapshot_writes_total{ok} = %v, want >= 3", v)
	}
	if v := value(fams, "chittyid_sidecar_snapshot_last_write_entries"); v != 2 {
		t.Errorf("snapshot_last_write_entries = %v, want 2", v)
	}
	if v := value(fams, "chittyid_sidecar_snapshot_last_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("snapshot_last_success_timestamp_seconds = %v", v)
	}
}

func TestSnapshotWriteFailureIsReported(t *testing.T) {
	t.Parallel()
	// The snapshot's directory would be a regular file: the sidecar cannot
	// create it, and every write fails.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(notDir, "snapshot.bin")
	h := start(t, sim.Config{}, snapshotConfig(path, "100ms"))
	h.waitSnapshotWrites(1)
	sd := h.snapshotDoc()
	lw := sd["lastWrite"].(map[string]any)
	if !strings.Contains(fmt.Sprint(lw["error"]), "not a directory") || sd["writesFailed"].(float64) < 1 {
		t.Errorf("/health snapshot = %v", sd)
	}
	h.logs.waitForLine(t, func(l map[string]any) bool { return l["msg"] == "snapshot write failed" && l["level"] == "ERROR" })
	if v := value(h.scrape(), "chittyid_sidecar_snapshot_writes_total", "outcome=failed"); v < 1 {
		t.Errorf("snapshot_writes_total{failed} = %v, want >= 1", v)
	}
}

func TestSnapshotDisabledHealth(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "")
	if sd := h.snapshotDoc(); sd["enabled"] != false || sd["path"] != "" || sd["lastWrite"] != nil {
		t.Errorf("/health snapshot = %v", sd)
	}
	fams := h.scrape() // a feature that is off has no series
	for name := range fams {
		if strings.HasPrefix(name, "chittyid_sidecar_snapshot_") {
			t.Errorf("/metrics serves %s without snapshot.path", name)
		}
	}
}

// TestReloadSnapshotPathNeedsRestartIntervalDoesNot: a new path is kept
// out and listed in restartRequired; a new interval applies at once, even
// to a wait already under way.
func TestReloadSnapshotPathNeedsRestartIntervalDoesNot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.bin")
	h := startFile(t, sim.Config{}, snapshotConfig(path, "24h"))
	h.reloadTo(configFor(h.sim, sim.Config{}, snapshotConfig(filepath.Join(dir, "other.bin"), "100ms")), 2)
	got, _ := h.configDoc()["restartRequired"].([]any)
	if len(got) != 1 || got[0] != "snapshot.path" {
		t.Errorf("restartRequired = %v, want snapshot.path", got)
	}
	h.waitSnapshotWrites(1) // the 24h wait was re-armed with 100ms
	if sd := h.snapshotDoc(); sd["path"] != path || sd["interval"] != "100ms" {
		t.Errorf("/health snapshot = %v", sd)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.bin")); !os.IsNotExist(err) {
		t.Errorf("a snapshot was written to the reloaded path: %v", err)
	}
	if _, err := cache.VerifySnapshot(path); err != nil {
		t.Error(err)
	}
}

// TestSnapshotChecksumIsPlainSHA256 pins the format's promise to operators:
// the last 32 bytes are the SHA-256 of the rest.
func TestSnapshotChecksumIsPlainSHA256(t *testing.T) {
	t.Parallel()
	b := writeSnapshotFile(t, filepath.Join(t.TempDir(), "snapshot.bin"), 5)
	if sum := sha256.Sum256(b[:len(b)-32]); !bytes.Equal(sum[:], b[len(b)-32:]) {
		t.Errorf("trailer %x, SHA-256 of the rest %x", b[len(b)-32:], sum)
	}
	if !bytes.HasPrefix(b, []byte("CHITTYIDSNAPSHOT\x01\x00\x00\x00")) {
		t.Errorf("file starts %q", b[:20])
	}
}

// forgeSnapshot writes a snapshot file by the format docs/snapshot.md documents,
// checksum included, as anyone who can write the file could: entries of
// (id, valid, fetched-at, value).
func forgeSnapshot(t *testing.T, path string, written time.Time, entries []forged) {
	t.Helper()
	b := []byte("CHITTYIDSNAPSHOT")
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(written.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.id)))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.value)))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.fetched.UnixNano()))
		var flags byte
		if e.valid {
			flags = 1
		}
		b = append(append(append(b, flags), e.id...), e.value...)
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(path, append(b, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

type forged struct {
	id      string
	valid   bool
	fetched time.Time
	value   string
}

// TestForgedSnapshotEntriesAreNotServed: a snapshot with a right checksum
// but entries no sidecar writes (an ID in another format, an entity value
// that would inject fields into answers, a verdict fetched after the file
// was written) serves none of them, and says so; its honest entries are
// served. Upstream is down throughout, so only the snapshot can answer.
func TestForgedSnapshotEntriesAreNotServed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	written := time.Now().Add(-time.Minute)
	const good, injected, future = "CT-A-CHI-0001-P-24-A-0", "CT-A-CHI-0002-P-24-A-0", "CT-A-CHI-0003-P-24-A-0"
	forgeSnapshot(t, path, written, []forged{
		{good, true, written.Add(-time.Second), "PEO"},
		{"03-1-USA-0001-P-2601-3-92", true, written.Add(-time.Second), "PEO"}, // numeric, not the configured official
		{injected, true, written.Add(-time.Second), `PEO","admin":true,"x":"`},
		{future, true, written.Add(time.Hour), "PEO"},
		{"CT-A-CHI-0004-P-24-A-0", false, written.Add(-time.Second), `upstream","valid":true,"x":"`},
	})
	h := startWith(t, sim.Config{}, fastHealth+snapshotConfig(path, "1h"), refuseFirst(t))
	line := h.logs.waitForLine(t, func(l map[string]any) bool { return l["msg"] == "snapshot restored" })
	if line["loaded"] != float64(1) {
		t.Errorf("restore log line %v, want 1 loaded", line)
	}
	warn := h.logs.waitForLine(t, func(l map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(l["msg"]), "snapshot entries refused")
	})
	if warn["rejected"] != float64(4) || !strings.Contains(fmt.Sprint(warn["first"]), "not a official ID") {
		t.Errorf("warning %v, want 4 rejected, the first for its format", warn)
	}
	if sd := h.snapshotDoc(); sd["loaded"] != float64(1) || sd["rejected"] != float64(4) {
		t.Errorf("/health snapshot = %v", sd)
	}
	if v := value(h.scrape(), "chittyid_sidecar_snapshot_entries", "kind=rejected"); v != 4 {
		t.Errorf("snapshot_entries{rejected} = %v, want 4", v)
	}
	h.validate(good).expect(t, "the honest entry", 200, "")
	for _, id := range []string{injected, future, "CT-A-CHI-0004-P-24-A-0"} {
		r := h.validate(id)
		if r.status == 200 || strings.Contains(r.raw, "admin") {
			t.Errorf("forged entry %s served: HTTP %d %s", id, r.status, r.raw)
		}
	}
	if n := h.sim.Stats().Validate; n != 0 {
		t.Errorf("upstream saw %d validates; it was down", n)
	}
}
