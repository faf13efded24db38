package cache

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/file"
)

// The snapshot file format, version 1. All integers are little endian.
//
//	offset  size  field
//	0       16    magic "CHITTYIDSNAPSHOT"
//	16      4     format version, uint32 (1)
//	20      4     reserved, uint32, 0
//	24      8     written at, int64 Unix nanoseconds
//	32      8     entry count, uint64
//	40      ...   entries, count times:
//	                2  ID length, uint16, 1..MaxIDLen
//	                2  value length, uint16, 0..MaxValueLen
//	                8  fetched at, int64 Unix nanoseconds
//	                1  flags, bit 0 = valid, other bits 0
//	                   the ID, then the value
//	size-32 32    SHA-256 of every byte before it
//
// The checksum covers the whole file but itself, so `head -c -32 FILE |
// sha256sum` and `tail -c 32 FILE | xxd -p` agree on a good file. The count
// sits in the header, so the writer, which streams entries without knowing
// their number, fills it in once they are written and only then hashes the
// file (reading it back from the page cache; see writeSnapshotFile).
const (
	snapshotMagic   = "CHITTYIDSNAPSHOT"
	snapshotVersion = 1
	snapHeaderLen   = 40
	snapCountOffset = 32
	snapEntryFixed  = 13 // the fixed part of an entry: lengths, fetched at, flags
	snapTrailerLen  = sha256.Size
)

// Errors of RestoreSnapshot and VerifySnapshot, wrapped with the path and
// the detail; check them with errors.Is. A missing file is fs.ErrNotExist.
var (
	// ErrSnapshotEmpty means the file has no bytes.
	ErrSnapshotEmpty = errors.New("cache: snapshot file is empty")
	// ErrSnapshotForeign means the file does not start with the snapshot
	// magic: it is something else.
	ErrSnapshotForeign = errors.New("cache: not a snapshot file")
	// ErrSnapshotVersion means a snapshot of a format version this build
	// does not read.
	ErrSnapshotVersion = errors.New("cache: unsupported snapshot format version")
	// ErrSnapshotTruncated means the file ends before its last entry or its
	// checksum.
	ErrSnapshotTruncated = errors.New("cache: snapshot file is truncated")
	// ErrSnapshotCorrupt means the checksum does not match, or an entry or
	// the file's length is impossible.
	ErrSnapshotCorrupt = errors.New("cache: snapshot file is corrupt")
	// ErrSnapshotInsecure means the file or its directory is writable by
	// group or others, or belongs to another user: whoever could have
	// written it could have forged it, checksum included.
	ErrSnapshotInsecure = errors.New("cache: snapshot file could have been written by another user")
)

// SnapshotInfo describes a snapshot file.
type SnapshotInfo struct {
	// Version is the format version (1).
	Version uint32
	// WrittenAt is the time the writer was given (Cache.WriteSnapshot's now).
	WrittenAt time.Time
	// Entries is the number of entries in the file.
	Entries int
	// Bytes is the size of the file.
	Bytes int64
	// Checksum is the SHA-256 of the file without its last 32 bytes, which
	// hold it.
	Checksum [sha256.Size]byte
}

// snapEntry is one decoded entry; id and value alias the reader's buffer.
type snapEntry struct {
	id, value []byte
	fetchedAt int64
	flags     byte
}

func appendSnapHeader(b []byte, writtenAt time.Time, count uint64) []byte {
	b = append(b, snapshotMagic...)
	b = binary.LittleEndian.AppendUint32(b, snapshotVersion)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(writtenAt.UnixNano()))
	return binary.LittleEndian.AppendUint64(b, count)
}

// appendSnapEntry appends one entry; stored is the value as the cache holds
// it (see encode): fetched at, flags, then Entry.Value.
func appendSnapEntry(b []byte, id string, stored []byte) []byte {
	value := stored[headerLen:]
	b = binary.LittleEndian.AppendUint16(b, uint16(len(id)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	b = append(b, stored[:8]...) // fetched at, already little endian
	b = append(b, stored[8]&flagValid)
	b = append(b, id...)
	return append(b, value...)
}

// snapReader reads a snapshot's header and entries from r, which yields the
// file without its trailer.
type snapReader struct{ r *bufio.Reader }

func newSnapReader(body io.Reader) *snapReader {
	return &snapReader{r: bufio.NewReaderSize(body, 256<<10)}
}

// header reads and checks the header: magic, version, then the rest.
func (sr *snapReader) header() (SnapshotInfo, uint64, error) {
	var h [snapHeaderLen]byte
	n, err := io.ReadFull(sr.r, h[:])
	if m := min(n, len(snapshotMagic)); !bytes.Equal(h[:m], []byte(snapshotMagic)[:m]) {
		return SnapshotInfo{}, 0, fmt.Errorf("%w: starts with %q, not %q", ErrSnapshotForeign, printableBytes(h[:m]), snapshotMagic)
	}
	if n >= 20 {
		if v := binary.LittleEndian.Uint32(h[16:]); v != snapshotVersion {
			return SnapshotInfo{}, 0, fmt.Errorf("%w: version %d, this build reads version %d", ErrSnapshotVersion, v, snapshotVersion)
		}
	}
	if err != nil {
		return SnapshotInfo{}, 0, fmt.Errorf("%w: %d header bytes of %d", ErrSnapshotTruncated, n, snapHeaderLen)
	}
	if r := binary.LittleEndian.Uint32(h[20:]); r != 0 {
		return SnapshotInfo{}, 0, fmt.Errorf("%w: reserved header field is %#x", ErrSnapshotCorrupt, r)
	}
	info := SnapshotInfo{Version: snapshotVersion, WrittenAt: time.Unix(0, int64(binary.LittleEndian.Uint64(h[24:])))}
	return info, binary.LittleEndian.Uint64(h[snapCountOffset:]), nil
}

// entry reads entry i of count. The returned slices alias the reader's
// buffer and are valid until the next call.
func (sr *snapReader) entry(i, count uint64) (snapEntry, error) {
	f, err := sr.r.Peek(snapEntryFixed)
	if err != nil {
		return snapEntry{}, sr.short(i, count, err)
	}
	idLen, valueLen := int(binary.LittleEndian.Uint16(f[0:])), int(binary.LittleEndian.Uint16(f[2:]))
	e := snapEntry{fetchedAt: int64(binary.LittleEndian.Uint64(f[4:])), flags: f[12]}
	switch {
	case idLen < 1 || idLen > MaxIDLen:
		return snapEntry{}, fmt.Errorf("%w: entry %d: ID length %d", ErrSnapshotCorrupt, i+1, idLen)
	case valueLen > MaxValueLen:
		return snapEntry{}, fmt.Errorf("%w: entry %d: value length %d", ErrSnapshotCorrupt, i+1, valueLen)
	case e.flags&^flagValid != 0:
		return snapEntry{}, fmt.Errorf("%w: entry %d: flags %#x", ErrSnapshotCorrupt, i+1, e.flags)
	}
	_, _ = sr.r.Discard(snapEntryFixed) // peeked: cannot fail
	// The buffer (256 KiB) always holds a whole entry (at most 1,280 bytes).
	b, err := sr.r.Peek(idLen + valueLen)
	if err != nil {
		return snapEntry{}, sr.short(i, count, err)
	}
	_, _ = sr.r.Discard(len(b))
	e.id, e.value = b[:idLen], b[idLen:]
	return e, nil
}

func (sr *snapReader) short(i, count uint64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the file ends in entry %d of %d", ErrSnapshotTruncated, i+1, count)
	}
	return fmt.Errorf("reading entry %d: %w", i+1, err)
}

// end checks that nothing follows the last entry.
func (sr *snapReader) end(count uint64) error {
	if _, err := sr.r.ReadByte(); err == nil {
		return fmt.Errorf("%w: bytes after the last of %d entries", ErrSnapshotCorrupt, count)
	}
	return nil
}

// openVerified opens the snapshot at path and checks it whole: a regular
// file (judged on the descriptor, opened without blocking, so a FIFO at
// path cannot hang the start), written by no one else (file.Check: the
// file and its directory writable by this process's user alone, owned by
// it or root), not empty, and verifySnapshot's checks. The caller closes
// the file.
func openVerified(path string) (_ *os.File, _ SnapshotInfo, err error) {
	f, st, err := file.Open(path)
	if err != nil {
		if errors.Is(err, file.ErrNotRegular) {
			err = fmt.Errorf("%w: %w", ErrSnapshotForeign, err)
		}
		return nil, SnapshotInfo{}, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	if err := file.Check(path, st); err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("%w: %w", ErrSnapshotInsecure, err)
	}
	if st.Size() == 0 {
		return nil, SnapshotInfo{}, ErrSnapshotEmpty
	}
	info, err := verifySnapshot(f, st.Size())
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	return f, info, nil
}

// verifySnapshot is the first pass over an open snapshot of size bytes: it
// checks the header, every entry and the checksum, and stores nothing.
//
// Truncation and corruption are told apart by the structure: a file that
// ends before its count of entries is truncated; a checksum mismatch with a
// whole structure is corruption.
func verifySnapshot(f *os.File, size int64) (SnapshotInfo, error) {
	if size < snapHeaderLen+snapTrailerLen {
		// Too short for a header and a trailer: read it all as header to say why.
		if _, _, err := newSnapReader(io.NewSectionReader(f, 0, size)).header(); err != nil {
			return SnapshotInfo{}, err
		}
		return SnapshotInfo{}, fmt.Errorf("%w: %d bytes, less than a header and a checksum", ErrSnapshotTruncated, size)
	}
	h := sha256.New()
	sr := newSnapReader(io.TeeReader(io.NewSectionReader(f, 0, size-snapTrailerLen), h))
	info, count, err := sr.header()
	if err != nil {
		return SnapshotInfo{}, err
	}
	// The header's count is bounded by the size before any entry is read;
	// the reads themselves never go past the size fstat gave at open.
	if most := uint64(size-snapHeaderLen-snapTrailerLen) / (snapEntryFixed + 1); count > most {
		return SnapshotInfo{}, fmt.Errorf("%w: the header declares %d entries, %d bytes hold at most %d", ErrSnapshotTruncated, count, size, most)
	}
	for i := range count {
		if _, err := sr.entry(i, count); err != nil {
			return SnapshotInfo{}, err
		}
	}
	if err := sr.end(count); err != nil {
		return SnapshotInfo{}, err
	}
	var want [snapTrailerLen]byte
	if _, err := f.ReadAt(want[:], size-snapTrailerLen); err != nil {
		return SnapshotInfo{}, fmt.Errorf("reading the checksum: %w", err)
	}
	h.Sum(info.Checksum[:0])
	if info.Checksum != want {
		return SnapshotInfo{}, fmt.Errorf("%w: SHA-256 of the contents is %x…, the file says %x…", ErrSnapshotCorrupt, info.Checksum[:8], want[:8])
	}
	info.Entries, info.Bytes = int(count), size
	return info, nil
}

// VerifySnapshot checks the snapshot file at path (ownership, header, every
// entry, checksum) without loading it. Errors wrap fs.ErrNotExist or one of
// the ErrSnapshot errors.
func VerifySnapshot(path string) (SnapshotInfo, error) {
	f, info, err := openVerified(path)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("verifying snapshot %q: %w", path, err)
	}
	_ = f.Close()
	return info, nil
}

// printableBytes shows b with non-printable bytes as '.'.
func printableBytes(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = c
		if c < 0x20 || c > 0x7e {
			out[i] = '.'
		}
	}
	return string(out)
}
