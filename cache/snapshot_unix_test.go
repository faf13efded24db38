//go:build unix

package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSnapshotRefusesSpecialFiles: a FIFO at the snapshot's path (with
// no writer: opening it for reading would wait forever, before the
// sidecar listens) and a link to an endless device are refused at once as
// not snapshots.
func TestSnapshotRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo, zero := filepath.Join(dir, "fifo.bin"), filepath.Join(dir, "zero.bin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, zero} {
		done := make(chan error, 1)
		go func() {
			c := newTestCache(t, smallConfig, snapPolicy)
			_, err := c.RestoreSnapshot(path, snapPolicy, time.Now(), nil)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrSnapshotForeign) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("RestoreSnapshot(%s) = %v, want ErrSnapshotForeign: not a regular file", path, err)
			}
		case <-time.After(20 * time.Second): // generous: nothing should wait at all
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				_ = f.Close() // release the blocked open
			}
			t.Fatalf("RestoreSnapshot(%s) blocked", path)
		}
	}
}
