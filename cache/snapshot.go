package cache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/allegro/bigcache/v3"
)

// snapTempInfix joins a snapshot's file name and the random suffix of the
// temporary file it is written to: "snapshot.bin.tmp-123456".
const snapTempInfix = ".tmp-"

// Restored is what RestoreSnapshot did.
type Restored struct {
	// SnapshotInfo describes the file.
	SnapshotInfo
	// Loaded counts the entries stored in the cache.
	Loaded int
	// Skipped counts the entries not stored: Expired, Superseded, Rejected,
	// and any the cache refused.
	Skipped int
	// Expired counts entries too old to be served at all (older than
	// max(TTL or NegativeTTL, StaleIfError)).
	Expired int
	// Superseded counts entries for an ID the cache already held with a
	// verdict at least as recent.
	Superseded int
	// Rejected counts entries the re-check refused (see RestoreSnapshot):
	// entries no write of the sidecar could have made, so the file was
	// forged or written by something else. FirstRejection says why the
	// first one was refused.
	Rejected       int
	FirstRejection string
	// Newest is the newest FetchedAt among the loaded entries; zero if none.
	Newest time.Time
}

// servable says whether e can still be answered at now, fresh or stale.
func (p Policy) servable(e Entry, now time.Time) bool {
	ttl := p.NegativeTTL
	if e.Valid {
		ttl = p.TTL
	}
	return now.Sub(e.FetchedAt) < max(ttl, p.StaleIfError)
}

// WriteSnapshot writes every entry still servable at now under p (see
// Lookup) to the file at path, replacing it atomically: the entries go to a
// temporary file in the same directory ("path.tmp-…"), which is synced,
// renamed over path, and the directory synced. A crash at any point leaves
// either the previous file or the new one, whole; at worst a temporary file
// stays behind (RemoveSnapshotTemps). Each entry keeps its FetchedAt.
//
// It never holds a lock of its own. Entries are read with bigcache's
// iterator, which copies one shard's keys, then one entry at a time, under
// that shard's read lock; all file I/O happens between those copies, so
// Lookups and Stores go on meanwhile. An entry stored during the write may or
// may not be in the file. It returns early, removing the temporary file,
// when ctx ends. One writer per path at a time.
func (c *Cache) WriteSnapshot(ctx context.Context, path string, p Policy, now time.Time) (SnapshotInfo, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+snapTempInfix+"*")
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("writing snapshot %q: %w", path, err)
	}
	info, err := c.writeSnapshotFile(ctx, f, p, now)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return SnapshotInfo{}, fmt.Errorf("writing snapshot %q: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The new file is in place; a power loss might still undo the rename.
		return info, fmt.Errorf("writing snapshot %q: syncing directory %q: %w", path, dir, err)
	}
	return info, nil
}

// writeSnapshotFile writes the whole snapshot to f, an empty file opened
// for reading and writing. The entry count goes into the header once the
// entries are written, and only then is the file hashed: it is read back,
// from the page cache, which costs less than buffering every entry to know
// their number first.
func (c *Cache) writeSnapshotFile(ctx context.Context, f *os.File, p Policy, now time.Time) (SnapshotInfo, error) {
	w := bufio.NewWriterSize(f, 256<<10)
	count, err := c.encodeSnapshot(ctx, w, p, now)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if err := w.Flush(); err != nil {
		return SnapshotInfo{}, err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], count)
	if _, err := f.WriteAt(n[:], snapCountOffset); err != nil {
		return SnapshotInfo{}, err
	}
	size, err := f.Seek(0, io.SeekCurrent) // WriteAt leaves the offset at the end
	if err != nil {
		return SnapshotInfo{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return SnapshotInfo{}, fmt.Errorf("reading back to hash: %w", err)
	}
	info := SnapshotInfo{Version: snapshotVersion, WrittenAt: time.Unix(0, now.UnixNano()), Entries: int(count), Bytes: size + snapTrailerLen}
	h.Sum(info.Checksum[:0])
	if _, err := f.Write(info.Checksum[:]); err != nil {
		return SnapshotInfo{}, err
	}
	return info, nil
}

// encodeSnapshot writes the header, with a count of 0, and every entry
// servable at now to w, one Write per entry, and returns the count. It holds
// no lock while it calls w (see WriteSnapshot).
func (c *Cache) encodeSnapshot(ctx context.Context, w io.Writer, p Policy, now time.Time) (uint64, error) {
	if ctx.Err() != nil {
		return 0, context.Cause(ctx)
	}
	buf := appendSnapHeader(make([]byte, 0, snapEntryFixed+MaxIDLen+MaxValueLen), now, 0)
	if _, err := w.Write(buf); err != nil {
		return 0, err
	}
	var count uint64
	for _, part := range [...]*bigcache.BigCache{c.valid, c.invalid} {
		it := part.Iterator()
		for it.SetNext() {
			ei, err := it.Value()
			if err != nil {
				continue // the entry went between the key copy and the read
			}
			id, stored := ei.Key(), ei.Value()
			e, ok := decode(stored)
			if !ok || !validID(id) || len(e.Value) > MaxValueLen || !p.servable(e, now) {
				continue
			}
			if e.FetchedAt.After(now) {
				// The clock went back since the entry was stored: no entry
				// may say it was fetched after the file was written, or
				// the restore refuses it as forged.
				e.FetchedAt = now
				stored = encode(e)
			}
			buf = appendSnapEntry(buf[:0], id, stored)
			if _, err := w.Write(buf); err != nil {
				return 0, err
			}
			if count++; count%1024 == 0 && ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
		}
	}
	return count, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RestoreSnapshot loads the snapshot file at path into the cache. The file
// and its directory must not be writable by group or others, and must
// belong to this process's user (or root), or the file is refused with
// ErrSnapshotInsecure. The whole file is checked next (header, every
// entry, checksum): a file that fails loads nothing and the error wraps
// ErrSnapshotEmpty, ErrSnapshotForeign, ErrSnapshotVersion,
// ErrSnapshotTruncated or ErrSnapshotCorrupt (a missing file:
// fs.ErrNotExist). Then each entry is re-checked: one fetched after the
// file says it was written is refused, and so is one that check (if not
// nil) refuses; both are counted in Rejected. The others are stored with
// their original FetchedAt (one in the future of now is brought back to
// now), so TTL and staleness go on from where they were; entries p could
// no longer serve at now are skipped, and so is an entry whose ID the cache
// already holds with a verdict at least as recent.
//
// The checksum guards against a damaged file, not a forged one: anyone who
// can write the file can compute it. That is why the permissions and the
// entries are checked.
//
// It is meant for a cache that is not serving yet; Lookups meanwhile are
// safe and see either verdict. The file must not change while it is read
// (WriteSnapshot never changes a file in place; it replaces it).
func (c *Cache) RestoreSnapshot(path string, p Policy, now time.Time, check func(id string, e Entry) error) (Restored, error) {
	f, info, err := openVerified(path)
	if err != nil {
		return Restored{}, fmt.Errorf("restoring snapshot %q: %w", path, err)
	}
	defer f.Close()
	r := Restored{SnapshotInfo: info}
	if err := c.restoreEntries(f, &r, p, now, check); err != nil {
		return r, fmt.Errorf("restoring snapshot %q: %w", path, err)
	}
	return r, nil
}

// restoreEntries is the second pass over a verified file: it stores the
// entries and counts them in r.
func (c *Cache) restoreEntries(f *os.File, r *Restored, p Policy, now time.Time, check func(string, Entry) error) error {
	sr := newSnapReader(io.NewSectionReader(f, 0, r.Bytes-snapTrailerLen))
	if _, _, err := sr.header(); err != nil {
		return fmt.Errorf("the file changed after it was checked: %w", err)
	}
	count := uint64(r.Entries)
	buf := make([]byte, 0, headerLen+MaxValueLen)
	fresh := c.valid.Len()+c.invalid.Len() == 0
	written := r.WrittenAt.UnixNano()
	for i := range count {
		se, err := sr.entry(i, count)
		if err != nil {
			return fmt.Errorf("the file changed after it was checked: %w", err)
		}
		e := Entry{Valid: se.flags&flagValid != 0, FetchedAt: time.Unix(0, se.fetchedAt), Value: se.value}
		if err := recheck(se, e, written, check); err != nil {
			r.reject(i, err)
			continue
		}
		if e.FetchedAt.After(now) {
			e.FetchedAt = time.Unix(0, now.UnixNano()) // no monotonic reading, like a decoded entry
		}
		if !p.servable(e, now) {
			r.Expired++
			r.Skipped++
			continue
		}
		stored, superseded := c.restoreEntry(string(se.id), e, fresh, &buf)
		switch {
		case stored:
			r.Loaded++
			if e.FetchedAt.After(r.Newest) {
				r.Newest = e.FetchedAt
			}
		case superseded:
			r.Superseded++
			r.Skipped++
		default:
			r.Skipped++
		}
	}
	return nil
}

// recheck refuses an entry that no write of this cache could have made:
// fetched after the file was written, or refused by the caller's check.
func recheck(se snapEntry, e Entry, written int64, check func(string, Entry) error) error {
	if se.fetchedAt > written {
		return fmt.Errorf("fetched at %s, after the file was written (%s)",
			time.Unix(0, se.fetchedAt).UTC().Format(time.RFC3339Nano), time.Unix(0, written).UTC().Format(time.RFC3339Nano))
	}
	if check == nil {
		return nil
	}
	return check(string(se.id), e)
}

// reject counts entry i as refused by the re-check, keeping the first reason.
func (r *Restored) reject(i uint64, err error) {
	r.Rejected++
	r.Skipped++
	if r.FirstRejection == "" {
		r.FirstRejection = fmt.Sprintf("entry %d: %v", i, err)
	}
}

// restoreEntry stores e under id unless the cache holds a verdict for id at
// least as recent. Unlike Store it keeps e.FetchedAt as it is, and it leaves
// the hot table alone but for emptying id's slot, so that a Lookup that read
// the previous verdict cannot install it afterwards (see hot).
//
// fresh says the cache held nothing when the restore began. Then the only
// earlier verdict for id can be one from the same file in the other part
// (a Store moved id from one part to the other while the file was written;
// within a part IDs are unique), so only the other part is searched: the
// search is a third of a restore's time on a large file.
func (c *Cache) restoreEntry(id string, e Entry, fresh bool, buf *[]byte) (stored, superseded bool) {
	dst, other := c.valid, c.invalid
	if !e.Valid {
		dst, other = c.invalid, c.valid
	}
	old, found := get(other, id)
	if !found && !fresh {
		old, found = get(dst, id)
	}
	if found && !e.FetchedAt.After(old.FetchedAt) {
		return false, true
	}
	*buf = appendEncoded((*buf)[:0], e)
	if err := dst.Set(id, *buf); err != nil {
		return false, false // larger than a shard: Store would have refused it too
	}
	c.hot.forget(id)
	if found && old.Valid != e.Valid {
		_ = other.Delete(id) // may drop an entry merely sharing the hash, as in store
	}
	return true, false
}

// RemoveSnapshotTemps removes the temporary files WriteSnapshot leaves next
// to path when the process dies mid-write ("path.tmp-…"), and returns their
// names. Only one process may write snapshots to path: another's write in
// progress would lose its temporary file.
func RemoveSnapshotTemps(path string) ([]string, error) {
	dir, prefix := filepath.Dir(path), filepath.Base(path)+snapTempInfix
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("removing temporary snapshot files in %q: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, de := range entries {
		if !de.Type().IsRegular() || !strings.HasPrefix(de.Name(), prefix) {
			continue
		}
		name := filepath.Join(dir, de.Name())
		if err := os.Remove(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("removing temporary snapshot files: %w", err)
	}
	return removed, nil
}
