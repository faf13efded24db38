// Package file reads the files the sidecar trusts (its config file, the
// upstream token, the Redis password, the TLS files, the cache snapshot)
// the one way it may: Open and Read open without blocking, so a FIFO
// cannot hang the caller, and accept a regular file only, judged on the
// opened descriptor, not by name (a device such as /dev/zero would be
// read forever); Read stops at a size limit fit for what the file holds.
// Check refuses a file that someone other than this process's user or
// root could have written: whoever can write the file (or replace it in
// its directory) decides what it says. A symbolic link is judged by its
// target, as a Kubernetes Secret or ConfigMap volume presents its files
// through links into a private directory. It imports nothing of this
// module, so the leaves that read files (cache, upstream, cache/fleet)
// can use it.
package file

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

var (
	// ErrNotRegular means the path names a FIFO, a device, a directory or
	// a socket rather than a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge means the file holds more bytes than its reader accepts.
	ErrTooLarge = errors.New("file too large")
	// ErrInsecure means the file, or the directory that holds it, could
	// have been written by a user other than this process's or root.
	// Check's errors match it with errors.Is; their text says what to fix.
	ErrInsecure = errors.New("file others could write")
)

// MaxPEMBytes bounds a TLS file (a CA bundle, a certificate, a private
// key): a whole public CA bundle is a few hundred KiB.
const MaxPEMBytes = 1 << 20

// insecureError is Check's error: its own text, matching ErrInsecure.
type insecureError struct{ msg string }

func (e *insecureError) Error() string        { return e.msg }
func (e *insecureError) Is(target error) bool { return target == ErrInsecure }

// Open opens the file at path for reading, following symbolic links. It
// does not block on a FIFO (the open is non-blocking) and it checks on the
// descriptor that what it opened is a regular file; otherwise the error
// wraps ErrNotRegular. It returns the file and its FileInfo (fstat);
// the caller closes the file.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%w: %q is a %s", ErrNotRegular, path, kind(fi.Mode()))
	}
	return f, fi, nil
}

// Read returns the content of the regular file at path (see Open) and its
// FileInfo. A file of more than limit bytes is refused with an error that
// wraps ErrTooLarge and names the limit; no more than limit+1 bytes are
// read, whatever the file's size.
func Read(path string, limit int64) ([]byte, fs.FileInfo, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, nil, tooLarge(path, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading %q: %w", path, err)
	}
	if int64(len(b)) > limit { // it grew since fstat
		return nil, nil, tooLarge(path, limit)
	}
	return b, fi, nil
}

func tooLarge(path string, limit int64) error {
	return fmt.Errorf("%w: %q holds more than %s, the most read from it", ErrTooLarge, path, Size(limit))
}

// Size writes n bytes the way the limits are given: "8 KiB", "1 MiB",
// "100 bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// Check refuses the file at path, whose FileInfo fi was taken from its
// descriptor or by os.Stat (which follows links), when someone other than
// this process's user or root could have written it: the file or the
// directory that holds its target (path with every link followed) is
// writable by group or others, sticky or not, or belongs to another user.
// The error wraps ErrInsecure and says what to change. Where the platform
// has no Unix owners and modes, Check accepts every file.
func Check(path string, fi fs.FileInfo) error {
	if !unixModes {
		return nil
	}
	if err := checkOne(strconv.Quote(path), fi); err != nil {
		return err
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolving %q: %w", path, err)
	}
	dir := filepath.Dir(target)
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	return checkOne("its directory "+strconv.Quote(dir), st)
}

// checkOne judges one file or directory, named by what.
func checkOne(what string, fi fs.FileInfo) error {
	if m := fi.Mode(); m.Perm()&0o022 != 0 {
		return &insecureError{fmt.Sprintf("%s is writable by group or others (mode %04o); make it writable by its owner only (chmod go-w)", what, modeBits(m))}
	}
	if uid, ok := ownerOf(fi); ok && uid != 0 && uid != os.Geteuid() {
		return &insecureError{fmt.Sprintf("%s belongs to user %d, not to this process's user %d or root; chown it", what, uid, os.Geteuid())}
	}
	return nil
}

// modeBits is the permission bits with setuid, setgid and sticky, as chmod
// writes them.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// OthersCanRead reports whether users outside the file's owner and group
// may read it: worth a warning for a file that holds a secret.
func OthersCanRead(fi fs.FileInfo) bool {
	return unixModes && fi.Mode().Perm()&0o004 != 0
}

// kind names what a non-regular file is.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file (" + m.Type().String() + ")"
}
