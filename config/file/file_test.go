//go:build unix

package file

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadRefusesSpecialFiles: a FIFO, a device and a directory are
// refused by what the opened descriptor is, and a FIFO without a writer
// does not block the open (it would wait for a writer forever).
func TestReadRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	for _, tc := range []struct{ name, path, kind string }{
		{"FIFO without a writer", fifo, "named pipe"},
		{"endless device", "/dev/zero", "character device"},
		{"directory", dir, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			go func() {
				_, _, err := Read(tc.path, 8<<10)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), tc.kind) {
					t.Errorf("Read(%q) = %v, want ErrNotRegular naming a %s", tc.path, err, tc.kind)
				}
			case <-time.After(20 * time.Second): // generous: the open must not wait at all
				if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					_ = f.Close() // let the blocked open return
				}
				t.Fatalf("Read(%q) blocked", tc.path)
			}
		})
	}
}

// TestReadLimit: a file over the limit is refused with an error that
// names the limit; one at the limit is read whole.
func TestReadLimit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, make([]byte, 8<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _, err := Read(path, 8<<10); err != nil || len(b) != 8<<10 {
		t.Fatalf("at the limit: %d bytes, %v", len(b), err)
	}
	_, _, err := Read(path, 8<<10-1)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "8191 bytes") {
		t.Fatalf("over the limit: %v, want ErrTooLarge naming 8191 bytes", err)
	}
	if s := Size(1 << 20); s != "1 MiB" {
		t.Errorf("Size(1<<20) = %q", s)
	}
}

// TestCheck: the file and its directory must be writable by the owner
// alone, and owned by this process's user or root; a link is judged by
// its target and the target's directory.
func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		fileMode, dirMode os.FileMode
		want              string // "" accepted, else part of the error
	}{
		{"private", 0o600, 0o700, ""},
		{"readable by all", 0o644, 0o755, ""},
		{"group-writable file", 0o660, 0o700, "(mode 0660)"},
		{"world-writable file", 0o666, 0o700, "(mode 0666)"},
		{"group-writable directory", 0o600, 0o770, "its directory"},
		{"world-writable sticky directory", 0o600, 0o777 | os.ModeSticky, "(mode 1777)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "d")
			path := writeIn(t, dir, tc.fileMode, tc.dirMode)
			err := check(t, path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chmod go-w") {
				t.Fatalf("Check = %v, want ErrInsecure with %q and the fix", err, tc.want)
			}
		})
	}
}

// TestCheckFollowsLinks: as in a Kubernetes Secret volume, a link in a
// directory anyone may write points into a private one: the target is
// judged, not the link's directory; a link to a file others may write is
// refused.
func TestCheckFollowsLinks(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mount := filepath.Join(root, "mount")
	if err := os.Mkdir(mount, 0o700); err != nil {
		t.Fatal(err)
	}
	good := writeIn(t, filepath.Join(mount, "..2026_01_01"), 0o644, 0o755)
	bad := writeIn(t, filepath.Join(root, "other"), 0o666, 0o755)
	for name, target := range map[string]string{"good": good, "bad": bad} {
		if err := os.Symlink(target, filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(mount, 0o777); err != nil { // as the kubelet leaves it
		t.Fatal(err)
	}
	if err := check(t, filepath.Join(mount, "good")); err != nil {
		t.Errorf("link to a private target: %v", err)
	}
	if err := check(t, filepath.Join(mount, "bad")); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "(mode 0666)") {
		t.Errorf("link to a world-writable target: %v, want ErrInsecure", err)
	}
}

// TestCheckOwner: a file or directory of another user is refused. Only
// root can give a file away, so this runs as root only.
func TestCheckOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	for _, which := range []string{"file", "directory"} {
		dir := filepath.Join(t.TempDir(), "d")
		path := writeIn(t, dir, 0o600, 0o755)
		target := path
		if which == "directory" {
			target = dir
		}
		if err := os.Chown(target, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if err := check(t, path); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "belongs to user 4242") {
			t.Errorf("%s of user 4242: %v, want ErrInsecure", which, err)
		}
	}
}

func TestOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "d")
	for mode, want := range map[os.FileMode]bool{0o600: false, 0o640: false, 0o440: false, 0o644: true, 0o604: true} {
		path := writeIn(t, dir, mode, 0o700)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := OthersCanRead(fi); got != want {
			t.Errorf("OthersCanRead(%04o) = %v, want %v", mode, got, want)
		}
	}
}

// writeIn writes a file named "f" in dir, created if needed, and sets
// both modes (chmod, so the umask does not interfere).
func writeIn(t *testing.T, dir string, fileMode, dirMode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]os.FileMode{path: fileMode, dir: dirMode} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// check opens path as the sidecar does and checks the opened file.
func check(t *testing.T, path string) error {
	t.Helper()
	f, fi, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return Check(path, fi)
}
