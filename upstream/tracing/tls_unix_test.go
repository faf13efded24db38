//go:build unix

package tracing

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/file"
)

// TestTLSFilesRefuseSpecialFiles: a FIFO (with no writer: opening it for
// reading would wait forever, and with it the export loop) or a link to an
// endless device named as the collector's CA, client certificate or key
// is refused at once as not a regular file, as every TLS file is.
func TestTLSFilesRefuseSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo, zero := filepath.Join(dir, "fifo.pem"), filepath.Join(dir, "zero.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, zero} {
		for _, f := range []TLSFiles{{CA: path}, {Cert: path, Key: path}} {
			done := make(chan error, 1)
			go func() {
				_, err := f.config()
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, file.ErrNotRegular) {
					t.Errorf("%+v: %v, want a file.ErrNotRegular", f, err)
				}
			case <-time.After(20 * time.Second): // generous: nothing should wait at all
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					_ = w.Close() // release the blocked open
				}
				t.Fatalf("%+v: reading blocked", f)
			}
		}
	}
}
