package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// snapPolicy keeps entries servable for an hour.
var snapPolicy = Policy{TTL: 10 * time.Minute, NegativeTTL: time.Minute, StaleIfError: time.Hour}

func writeTestSnapshot(t *testing.T, c *Cache, path string, now time.Time) SnapshotInfo {
	t.Helper()
	info, err := c.WriteSnapshot(context.Background(), path, snapPolicy, now)
	if err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return info
}

// checkFileChecksum checks, without the package's reader, that the last 32
// bytes of the file are the SHA-256 of the rest and equal sum.
func checkFileChecksum(t *testing.T, path string, sum [sha256.Size]byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32 {
		t.Fatalf("%s: %d bytes", path, len(b))
	}
	body, trailer := b[:len(b)-32], b[len(b)-32:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], trailer) || got != sum {
		t.Errorf("SHA-256 of the contents %x, trailer %x, reported %x", got, trailer, sum)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now()
	src := newTestCache(t, smallConfig, snapPolicy)
	long := strings.Repeat("X", MaxIDLen)
	want := map[string]Entry{
		"CT-A-CHI-1234-P-24-A-0": {Valid: true, FetchedAt: now.Add(-time.Second), Value: []byte("PEO")},
		"CT-A-CHI-1235-E-24-A-0": {Valid: true, FetchedAt: now.Add(-20 * time.Minute), Value: []byte("EVNT")},
		"CT-A-CHI-9999-P-24-A-0": {Valid: false, FetchedAt: now.Add(-30 * time.Second), Value: []byte("upstream")},
		"no-value":               {Valid: true, FetchedAt: now.Add(-time.Nanosecond)},
		long:                     {Valid: false, FetchedAt: now.Add(-59 * time.Minute), Value: bytes.Repeat([]byte("v"), MaxValueLen)},
	}
	for id, e := range want {
		mustStore(t, src, id, e)
	}
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	info := writeTestSnapshot(t, src, path, now)
	if info.Entries != len(want) || info.Version != 1 || !info.WrittenAt.Equal(now) {
		t.Errorf("WriteSnapshot = %+v, want %d entries, version 1, written at %v", info, len(want), now)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != info.Bytes || st.Mode().Perm() != 0o600 {
		t.Errorf("file: %v, %v; want %d bytes, mode 0600", st, err, info.Bytes)
	}
	checkFileChecksum(t, path, info.Checksum)
	if v, err := VerifySnapshot(path); err != nil || v != info {
		t.Errorf("VerifySnapshot = %+v, %v; want %+v", v, err, info)
	}

	dst := newTestCache(t, smallConfig, snapPolicy)
	r, err := dst.RestoreSnapshot(path, snapPolicy, now, nil)
	if err != nil {
		t.Fatalf("RestoreSnapshot: %v", err)
	}
	if r.Loaded != len(want) || r.Skipped != 0 || r.SnapshotInfo != info || !r.Newest.Equal(now.Add(-time.Nanosecond)) {
		t.Errorf("RestoreSnapshot = %+v, want all %d loaded, newest %v", r, len(want), now.Add(-time.Nanosecond))
	}
	for id, w := range want {
		got, st := dst.Lookup(id, snapPolicy, now)
		wantSt := StatusHit
		if ttl := map[bool]time.Duration{true: snapPolicy.TTL, false: snapPolicy.NegativeTTL}[w.Valid]; now.Sub(w.FetchedAt) >= ttl {
			wantSt = StatusStale
		}
		if st != wantSt || got.Valid != w.Valid || !got.FetchedAt.Equal(w.FetchedAt) || !bytes.Equal(got.Value, w.Value) {
			t.Errorf("Lookup(%.30q) after restore = %v %+v, want %v %+v", id, st, got, wantSt, w)
		}
	}
}

func TestSnapshotSkipsWhatCannotBeServed(t *testing.T) {
	t.Parallel()
	now := time.Now()
	src := newTestCache(t, smallConfig, Policy{TTL: time.Hour, NegativeTTL: time.Hour, StaleIfError: 48 * time.Hour})
	mustStore(t, src, "fresh", Entry{Valid: true, FetchedAt: now.Add(-time.Minute)})
	mustStore(t, src, "stale", Entry{Valid: true, FetchedAt: now.Add(-30 * time.Minute)})
	mustStore(t, src, "old at restore", Entry{Valid: false, FetchedAt: now.Add(-50 * time.Minute)})
	mustStore(t, src, "old at write", Entry{Valid: true, FetchedAt: now.Add(-2 * time.Hour)})
	mustStore(t, src, "future", Entry{Valid: true, FetchedAt: now.Add(time.Hour)})
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	if info := writeTestSnapshot(t, src, path, now); info.Entries != 4 {
		t.Errorf("wrote %d entries, want 4: an entry older than staleIfError is never written", info.Entries)
	}

	// Restored ten minutes later with a shorter staleIfError: "old at
	// restore" is then an hour old.
	later := now.Add(10 * time.Minute)
	p := Policy{TTL: 30 * time.Minute, NegativeTTL: time.Minute, StaleIfError: 55 * time.Minute}
	dst := newTestCache(t, smallConfig, p)
	r, err := dst.RestoreSnapshot(path, p, later, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Loaded != 3 || r.Skipped != 1 || r.Expired != 1 || !r.Newest.Equal(now) {
		t.Errorf("RestoreSnapshot = %+v, want 3 loaded, 1 expired, newest %v", r, now)
	}
	for _, tc := range []struct {
		id   string
		want Status
		at   time.Time
	}{
		{"fresh", StatusHit, now.Add(-time.Minute)},
		{"stale", StatusStale, now.Add(-30 * time.Minute)},
		{"old at restore", StatusMiss, time.Time{}},
		{"old at write", StatusMiss, time.Time{}},
		{"future", StatusHit, now}, // written as fetched when the file was written
	} {
		if e, st := dst.Lookup(tc.id, p, later); st != tc.want || !e.FetchedAt.Equal(tc.at) {
			t.Errorf("Lookup(%q) = %v fetched at %v, want %v fetched at %v", tc.id, st, e.FetchedAt, tc.want, tc.at)
		}
	}
}

func TestSnapshotRestoreKeepsTheNewerVerdict(t *testing.T) {
	t.Parallel()
	now := time.Now()
	src := newTestCache(t, smallConfig, snapPolicy)
	mustStore(t, src, "older in file", Entry{Valid: true, FetchedAt: now.Add(-5 * time.Minute), Value: []byte("file")})
	mustStore(t, src, "newer in file", Entry{Valid: false, FetchedAt: now.Add(-time.Second), Value: []byte("file")})
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	writeTestSnapshot(t, src, path, now)

	dst := newTestCache(t, smallConfig, snapPolicy)
	mustStore(t, dst, "older in file", Entry{Valid: false, FetchedAt: now.Add(-time.Minute), Value: []byte("cache")})
	mustStore(t, dst, "newer in file", Entry{Valid: true, FetchedAt: now.Add(-time.Minute), Value: []byte("cache")})
	// Both are in the hot table now: a restore must not leave them there.
	dst.Lookup("older in file", snapPolicy, now)
	dst.Lookup("newer in file", snapPolicy, now)
	r, err := dst.RestoreSnapshot(path, snapPolicy, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Loaded != 1 || r.Superseded != 1 || r.Skipped != 1 {
		t.Errorf("RestoreSnapshot = %+v, want 1 loaded, 1 superseded", r)
	}
	for id, want := range map[string]Entry{
		"older in file": {Valid: false, Value: []byte("cache")},
		"newer in file": {Valid: false, Value: []byte("file")},
	} {
		if e, _ := dst.Lookup(id, snapPolicy, now); e.Valid != want.Valid || string(e.Value) != string(want.Value) {
			t.Errorf("Lookup(%q) = %+v, want %+v", id, e, want)
		}
	}
	if n := dst.Stats().Entries; n != 2 {
		t.Errorf("%d entries, want 2: the replaced verdict left its part", n)
	}
}

// snapshotBytes returns the file of a small good snapshot, written at now.
func snapshotBytes(t *testing.T, now time.Time) []byte {
	t.Helper()
	c := newTestCache(t, smallConfig, snapPolicy)
	for i := range 3 {
		mustStore(t, c, fmt.Sprintf("CT-A-CHI-%04d-P-24-A-0", i), Entry{Valid: i != 1, FetchedAt: now, Value: []byte("PEO")})
	}
	path := filepath.Join(t.TempDir(), "good.bin")
	writeTestSnapshot(t, c, path, now)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resum returns b with its trailer recomputed, as a writer would have.
func resum(b []byte) []byte {
	b = bytes.Clone(b)
	sum := sha256.Sum256(b[:len(b)-32])
	copy(b[len(b)-32:], sum[:])
	return b
}

func patched(b []byte, off int, v ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], v)
	return b
}

func TestSnapshotBadFilesAreRejectedWhole(t *testing.T) {
	t.Parallel()
	now := time.Now()
	good := snapshotBytes(t, now)
	entry0 := snapHeaderLen // the first entry
	version := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	for _, tc := range []struct {
		name   string
		data   []byte // nil: a directory
		want   error
		detail string
	}{
		{"empty", []byte{}, ErrSnapshotEmpty, ""},
		{"foreign: JSON", []byte(`{"entries":[]}` + strings.Repeat(" ", 100)), ErrSnapshotForeign, `starts with "{\"entries\":[]}  "`},
		{"foreign: PNG", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 200)...), ErrSnapshotForeign, `".PNG....`},
		{"foreign: one byte", []byte("x"), ErrSnapshotForeign, ""},
		{"foreign: a directory", nil, ErrSnapshotForeign, "not a regular file"},
		{"wrong version 2", patched(good, 16, version(2)...), ErrSnapshotVersion, "version 2, this build reads version 1"},
		{"wrong version 0, checksum redone", resum(patched(good, 16, version(0)...)), ErrSnapshotVersion, "version 0"},
		{"truncated in the magic", good[:7], ErrSnapshotTruncated, ""},
		{"truncated in the header", good[:30], ErrSnapshotTruncated, ""},
		{"truncated after the header", good[:snapHeaderLen], ErrSnapshotTruncated, ""},
		{"truncated in an entry", good[:len(good)-32-10], ErrSnapshotTruncated, "the file ends in entry"},
		{"truncated in the checksum", good[:len(good)-5], ErrSnapshotTruncated, ""},
		{"checksum missing", good[:len(good)-32], ErrSnapshotTruncated, ""},
		{"corrupt: a byte of an ID", patched(good, entry0+snapEntryFixed+3, 'Z'), ErrSnapshotCorrupt, "SHA-256"},
		{"corrupt: a byte of the checksum", patched(good, len(good)-1, good[len(good)-1]^1), ErrSnapshotCorrupt, "SHA-256"},
		{"corrupt: written at", patched(good, 24, 0xff), ErrSnapshotCorrupt, "SHA-256"},
		{"corrupt: count lower", patched(good, snapCountOffset, 2), ErrSnapshotCorrupt, "bytes after the last of 2 entries"},
		{"corrupt: bytes appended", append(bytes.Clone(good), 0), ErrSnapshotCorrupt, ""},
		{"corrupt: reserved field", resum(patched(good, 20, 1)), ErrSnapshotCorrupt, "reserved"},
		{"corrupt: unknown flag, checksum redone", resum(patched(good, entry0+12, 0x81)), ErrSnapshotCorrupt, "flags 0x81"},
		{"corrupt: ID length 0, checksum redone", resum(patched(good, entry0, 0, 0)), ErrSnapshotCorrupt, "ID length 0"},
		{"corrupt: ID too long, checksum redone", resum(patched(good, entry0, 1, 1)), ErrSnapshotCorrupt, "ID length 257"},
		{"corrupt: value too long, checksum redone", resum(patched(good, entry0+2, 1, 4)), ErrSnapshotCorrupt, "value length 1025"},
		{"count the size cannot hold, checksum redone", resum(patched(good, snapCountOffset+4, 1)), ErrSnapshotTruncated, "the header declares 4294967"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "snapshot.bin")
			var err error
			if tc.data == nil {
				err = os.Mkdir(path, 0o700)
			} else {
				err = os.WriteFile(path, tc.data, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			c := newTestCache(t, smallConfig, snapPolicy)
			r, err := c.RestoreSnapshot(path, snapPolicy, now, nil)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.detail) || !strings.Contains(fmt.Sprint(err), path) {
				t.Errorf("RestoreSnapshot error %v, want %v naming the path and saying %q", err, tc.want, tc.detail)
			}
			if r.Loaded != 0 || c.Stats().Entries != 0 {
				t.Errorf("a rejected file loaded %d entries; the cache holds %d", r.Loaded, c.Stats().Entries)
			}
			if _, err := VerifySnapshot(path); !errors.Is(err, tc.want) {
				t.Errorf("VerifySnapshot error %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		c := newTestCache(t, smallConfig, snapPolicy)
		if _, err := c.RestoreSnapshot(filepath.Join(t.TempDir(), "none"), snapPolicy, now, nil); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("RestoreSnapshot of a missing file: %v, want fs.ErrNotExist", err)
		}
	})
}

func TestWriteSnapshotFailureKeepsThePreviousFile(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newTestCache(t, smallConfig, snapPolicy)
	for i := range 3000 { // more than the 1024 entries between checks of ctx
		mustStore(t, c, fmt.Sprintf("CT-A-CHI-%04d-P-24-A-0", i), Entry{Valid: true, FetchedAt: now})
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.bin")
	prev := snapshotBytes(t, now)
	if err := os.WriteFile(path, prev, 0o600); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.WriteSnapshot(cancelled, path, snapPolicy, now); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteSnapshot with a cancelled ctx: %v, want context.Canceled", err)
	}
	if _, err := c.WriteSnapshot(context.Background(), filepath.Join(dir, "missing", "snapshot.bin"), snapPolicy, now); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteSnapshot into a missing directory: %v, want fs.ErrNotExist", err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, prev) {
		t.Errorf("the previous snapshot changed (%v)", err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only the snapshot", names)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestRemoveSnapshotTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"snap.bin", "snap.bin.tmp-1", "snap.bin.tmp-2", "snap.bin.tmp", "other.tmp-1", "snap.bin.old"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveSnapshotTemps(filepath.Join(dir, "snap.bin"))
	if err != nil || len(removed) != 2 {
		t.Errorf("RemoveSnapshotTemps = %v, %v; want the two .tmp- files", removed, err)
	}
	if got := strings.Join(dirNames(t, dir), " "); got != "other.tmp-1 snap.bin snap.bin.old snap.bin.tmp" {
		t.Errorf("left %s", got)
	}
}

// blockingWriter blocks its nth Write until release is closed.
type blockingWriter struct {
	n       int
	writes  int
	blocked chan struct{}
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.writes++; w.writes == w.n {
		close(w.blocked)
		<-w.release
	}
	return len(p), nil
}

// TestSnapshotWriteHoldsNoLockDuringIO stops a snapshot's output in the
// middle of a part and checks that Lookups and Stores of every shard go on:
// the writer must hold no lock while it writes (docs/snapshot.md: writing must not
// stall request handling).
func TestSnapshotWriteHoldsNoLockDuringIO(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newTestCache(t, smallConfig, snapPolicy)
	ids := make([]string, 400)
	for i := range ids {
		ids[i] = fmt.Sprintf("CT-A-CHI-%04d-P-24-A-0", i)
		mustStore(t, c, ids[i], Entry{Valid: i%2 == 0, FetchedAt: now})
	}
	w := &blockingWriter{n: 100, blocked: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := c.encodeSnapshot(context.Background(), w, snapPolicy, now)
		done <- err
	}()
	<-w.blocked
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		for _, id := range ids { // 400 IDs over 4 shards of both parts: every shard
			c.Lookup(id, snapPolicy, now)
			_ = c.Store(id, Entry{Valid: true, FetchedAt: now})
			_ = c.Store(id+"-new", Entry{Valid: false, FetchedAt: now})
		}
	}()
	select {
	case <-worked:
	case <-time.After(10 * time.Second):
		t.Fatal("Lookups and Stores blocked while the snapshot writer was blocked in Write")
	}
	close(w.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotWriteUnderConcurrentStores writes snapshots while other
// goroutines store and look up; every file must restore whole. Run with -race.
func TestSnapshotWriteUnderConcurrentStores(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newTestCache(t, smallConfig, snapPolicy)
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("CT-A-CHI-%04d-P-24-A-%d", i%2000, g)
				_ = c.Store(id, Entry{Valid: i%3 != 0, FetchedAt: now.Add(time.Duration(i)), Value: []byte("PEO")})
				c.Lookup(id, snapPolicy, now)
			}
		}()
	}
	for range 5 {
		writeTestSnapshot(t, c, path, now)
		dst := newTestCache(t, smallConfig, snapPolicy)
		r, err := dst.RestoreSnapshot(path, snapPolicy, now, nil)
		if err != nil || r.Loaded+r.Skipped != r.Entries {
			t.Errorf("RestoreSnapshot = %+v, %v", r, err)
		}
	}
	stop()
	wg.Wait()
}

// TestSnapshotDuplicateIDsInOneFile builds a file holding the same IDs in
// both parts, as a Store moving an ID between parts during a write can
// leave, and restores it into an empty cache: the newer verdict wins.
func TestSnapshotDuplicateIDsInOneFile(t *testing.T) {
	t.Parallel()
	now := time.Now()
	stored := func(valid bool, age time.Duration, v string) []byte {
		return encode(Entry{Valid: valid, FetchedAt: now.Add(-age), Value: []byte(v)})
	}
	b := appendSnapHeader(nil, now, 4)
	b = appendSnapEntry(b, "valid newer", stored(true, time.Second, "a"))
	b = appendSnapEntry(b, "invalid newer", stored(true, time.Minute, "b"))
	b = appendSnapEntry(b, "valid newer", stored(false, time.Minute, "c"))
	b = appendSnapEntry(b, "invalid newer", stored(false, time.Second, "d"))
	sum := sha256.Sum256(b)
	b = append(b, sum[:]...)
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newTestCache(t, smallConfig, snapPolicy)
	r, err := c.RestoreSnapshot(path, snapPolicy, now, nil)
	if err != nil || r.Loaded != 3 || r.Superseded != 1 {
		t.Fatalf("RestoreSnapshot = %+v, %v; want 3 loaded (one replaced), 1 superseded", r, err)
	}
	for id, want := range map[string]string{"valid newer": "a", "invalid newer": "d"} {
		if e, st := c.Lookup(id, snapPolicy, now); string(e.Value) != want || st != StatusHit {
			t.Errorf("Lookup(%q) = %v %+v, want value %q", id, st, e, want)
		}
	}
	if n := c.Stats().Entries; n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
}

// forgeSnapshot writes a well-formed snapshot (right structure and
// checksum) with exactly the given entries and write time, as someone who
// can write the file could.
func forgeSnapshot(t *testing.T, path string, written time.Time, ids []string, entries []Entry) {
	t.Helper()
	b := appendSnapHeader(nil, written, uint64(len(ids)))
	for i, id := range ids {
		b = appendSnapEntry(b, id, encode(entries[i]))
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(path, append(b, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRestoreRechecksEntries(t *testing.T) {
	t.Parallel()
	now := time.Now()
	written := now.Add(-time.Minute)
	path := filepath.Join(t.TempDir(), "snapshot.bin")
	ids := []string{"good", "from the future", "refused by check", "also good"}
	forgeSnapshot(t, path, written, ids, []Entry{
		{Valid: true, FetchedAt: written.Add(-time.Second), Value: []byte("PEO")},
		{Valid: true, FetchedAt: written.Add(time.Second), Value: []byte("PEO")},
		{Valid: true, FetchedAt: written.Add(-time.Second), Value: []byte(`PEO","admin":true`)},
		{Valid: false, FetchedAt: written.Add(-time.Second), Value: []byte("upstream")},
	})
	c := newTestCache(t, smallConfig, snapPolicy)
	check := func(id string, e Entry) error {
		if strings.ContainsRune(string(e.Value), '"') {
			return errors.New("value is not a known code")
		}
		return nil
	}
	r, err := c.RestoreSnapshot(path, snapPolicy, now, check)
	if err != nil {
		t.Fatal(err)
	}
	if r.Loaded != 2 || r.Rejected != 2 || r.Skipped != 2 || !strings.Contains(r.FirstRejection, "entry 1: fetched at") {
		t.Errorf("RestoreSnapshot = %+v; want 2 loaded, 2 rejected (the first: entry 1, fetched after the write)", r)
	}
	for i, id := range ids {
		_, st := c.Lookup(id, snapPolicy, now)
		if want := i == 0 || i == 3; (st != StatusMiss) != want {
			t.Errorf("Lookup(%q) = %v after restore; served: %v, want %v", id, st, st != StatusMiss, want)
		}
	}
}

func TestSnapshotRefusesFilesOthersCouldWrite(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name              string
		fileMode, dirMode os.FileMode
		want              error
	}{
		{"private", 0o600, 0o700, nil},
		{"read-only for others", 0o644, 0o755, nil},
		{"group-writable file", 0o660, 0o700, ErrSnapshotInsecure},
		{"world-writable file", 0o606, 0o700, ErrSnapshotInsecure},
		{"group-writable directory", 0o600, 0o770, ErrSnapshotInsecure},
		{"world-writable directory (sticky, like /tmp)", 0o600, 0o777 | os.ModeSticky, ErrSnapshotInsecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "snap")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "snapshot.bin")
			forgeSnapshot(t, path, now, []string{"id"}, []Entry{{Valid: true, FetchedAt: now}})
			if err := os.Chmod(path, tc.fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			c := newTestCache(t, smallConfig, snapPolicy)
			r, err := c.RestoreSnapshot(path, snapPolicy, now, nil)
			if !errors.Is(err, tc.want) || tc.want != nil && (r.Loaded != 0 || !strings.Contains(err.Error(), "writable by group or others")) {
				t.Fatalf("RestoreSnapshot = %+v, %v; want %v", r, err, tc.want)
			}
			if _, err := VerifySnapshot(path); !errors.Is(err, tc.want) {
				t.Errorf("VerifySnapshot: %v, want %v", err, tc.want)
			}
		})
	}
}
