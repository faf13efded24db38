//go:build unix

package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/file"
)

// writeMode writes a file and sets its mode with chmod (the umask does
// not interfere).
func writeMode(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeCA writes a CA bundle (tlsFiles') at path with mode.
func writeCA(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	pem, _, _ := tlsFiles(t)
	b, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	return writeMode(t, path, string(b), mode)
}

// TestLoadRefusesFilesOthersCouldWrite: a config, token, password or TLS
// file (the trace collector's, named by the environment, included) that
// group or others may write is refused, naming the file and the fix:
// whoever can write the config can send the token to a server of theirs,
// and whoever can write the token file decides what the token is. With
// the opt-out the file is used, with a warning.
func TestLoadRefusesFilesOthersCouldWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup writes the files into dir and returns the config's path.
		setup func(t *testing.T, dir string) string
		want  string            // part of the error, after the file's name
		vars  map[string]string // the environment; "{dir}" stands for dir
	}{
		{"config file 0666", func(t *testing.T, dir string) string {
			return writeMode(t, filepath.Join(dir, "config.yaml"), "upstream: {url: http://127.0.0.1:1/v1}\n", 0o666)
		}, "config.yaml\" is writable by group or others (mode 0666); make it writable by its owner only (chmod go-w)", nil},
		{"config file in a group-writable directory", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "shared")
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			path := writeMode(t, filepath.Join(sub, "config.yaml"), "{}\n", 0o600)
			if err := os.Chmod(sub, 0o770); err != nil {
				t.Fatal(err)
			}
			return path
		}, "shared\" is writable by group or others (mode 0770)", nil},
		{"token file 0666", func(t *testing.T, dir string) string {
			tok := writeMode(t, filepath.Join(dir, "token"), "tok-123\n", 0o666)
			return writeMode(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf("upstream:\n  tokenFile: %q\n", tok), 0o600)
		}, "line 2: upstream.tokenFile: \"" + "{dir}/token\" is writable by group or others (mode 0666)", nil},
		{"password file 0620", func(t *testing.T, dir string) string {
			pw := writeMode(t, filepath.Join(dir, "redis-password"), "pw\n", 0o620)
			return writeMode(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf("fleet:\n  redis:\n    addrs: [redis:6379]\n    passwordFile: %q\n", pw), 0o600)
		}, "fleet.redis.passwordFile: \"{dir}/redis-password\" is writable by group or others (mode 0620)", nil},
		{"CA file 0666", func(t *testing.T, dir string) string {
			ca := writeCA(t, filepath.Join(dir, "ca.pem"), 0o666)
			return writeMode(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf("upstream:\n  url: https://id.example/v1\n  tls: {caFile: %q}\n", ca), 0o600)
		}, "line 3: upstream.tls.caFile \"{dir}/ca.pem\" is writable by group or others (mode 0666)", nil},
		{"collector's CA file 0666", func(t *testing.T, dir string) string {
			writeCA(t, filepath.Join(dir, "collector-ca.pem"), 0o666)
			return writeMode(t, filepath.Join(dir, "config.yaml"), "tracing: {endpoint: https://collector.example:4318}\n", 0o600)
		}, "tracing.endpoint env OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE: \"{dir}/collector-ca.pem\" is writable by group or others (mode 0666)",
			map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "{dir}/collector-ca.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tc.setup(t, dir)
			want := strings.ReplaceAll(tc.want, "{dir}", dir)
			vars := map[string]string{}
			for k, v := range tc.vars {
				vars[k] = strings.ReplaceAll(v, "{dir}", dir)
			}
			c, err := Load(path, env(vars))
			if c != nil || err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load = %v, %v; want an error saying %q", c, err, want)
			}
			vars[EnvInsecureTrustWritableFiles] = "true"
			c, err = Load(path, env(vars))
			if err != nil {
				t.Fatalf("with %s: %v", EnvInsecureTrustWritableFiles, err)
			}
			if !strings.Contains(strings.Join(c.Warnings, "\n"), "used anyway because "+EnvInsecureTrustWritableFiles+" is set") {
				t.Errorf("with the opt-out: warnings %q, want one saying the file is used anyway", c.Warnings)
			}
		})
	}
}

// TestLoadRefusesFilesOfAnotherUser: a config or token file that belongs
// to another user is refused (only root can give a file away, so this
// runs as root only).
func TestLoadRefusesFilesOfAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	tok := writeMode(t, filepath.Join(dir, "token"), "tok-123\n", 0o600)
	path := writeMode(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf("upstream: {tokenFile: %q}\n", tok), 0o600)
	for _, owned := range []string{tok, path} {
		if err := os.Chown(owned, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, noEnv); !errors.Is(err, file.ErrInsecure) || !strings.Contains(err.Error(), "belongs to user 4242") {
			t.Errorf("%s owned by user 4242: Load = %v, want ErrInsecure", owned, err)
		}
	}
}

// TestLoadWarnsAboutSecretsOthersCanRead: a token, password or private
// key file every user may read is used, with a warning that says what
// mode to give it; so is a config file that holds the token itself. A
// file readable by its group only, or a config without the token, is not
// worth a warning.
func TestLoadWarnsAboutSecretsOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok644 := writeMode(t, filepath.Join(dir, "token644"), "tok-123\n", 0o644)
	tok440 := writeMode(t, filepath.Join(dir, "token440"), "tok-123\n", 0o440)
	_, cert, key644 := tlsFiles(t)
	if err := os.Chmod(key644, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config string
		mode         os.FileMode
		want         string // "" no warning
	}{
		{"token file 0644", fmt.Sprintf("upstream: {tokenFile: %q}\n", tok644), 0o600, "upstream.tokenFile \"" + tok644 + "\" holds a secret and every user may read it (mode 0644): make it 0600, or 0440"},
		{"token file 0440", fmt.Sprintf("upstream: {tokenFile: %q}\n", tok440), 0o644, ""},
		{"token in a config file 0644", "upstream: {token: tok-123}\n", 0o644, "holds upstream.token and every user may read it (mode 0644)"},
		{"token in a config file 0600", "upstream: {token: tok-123}\n", 0o600, ""},
		{"config file 0644 without the token", "listen: 127.0.0.1:8787\n", 0o644, ""},
		{"client key 0644", fmt.Sprintf("upstream:\n  url: https://id.example/v1\n  tls: {certFile: %q, keyFile: %q}\n", cert, key644), 0o600, "upstream.tls.keyFile \"" + key644 + "\" holds a secret and every user may read it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeMode(t, filepath.Join(t.TempDir(), "config.yaml"), tc.config, tc.mode)
			c, err := Load(path, noEnv)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(c.Warnings, "\n")
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "tok-123") {
				t.Errorf("a warning quotes the token: %q", got)
			}
		})
	}
}

// TestLoadJudgesLinksByTarget: a ConfigMap or Secret volume, whose files
// are links in a directory the kubelet leaves writable by all into a
// private timestamped one, is accepted: the target is judged.
func TestLoadJudgesLinksByTarget(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "volume")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path, update := configMapLayout(t, dir)
	update("listen: 127.0.0.1:8787\n")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, noEnv); err != nil {
		t.Fatalf("a ConfigMap volume's config: %v", err)
	}
}

// TestLoadRefusesSpecialAndHugeFiles: a token file that is a device, a
// FIFO without a writer, or larger than 8 KiB, and a config file larger
// than 1 MiB, are refused at once, naming what is wrong, without reading
// them (/dev/zero was read until memory ran out; a FIFO blocked forever).
func TestLoadRefusesSpecialAndHugeFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	big := writeMode(t, filepath.Join(dir, "big-token"), strings.Repeat("x", 8<<10+1), 0o600)
	hugeConfig := writeMode(t, filepath.Join(dir, "huge.yaml"), "listen: 127.0.0.1:8787\n"+strings.Repeat("#\n", 1<<19), 0o600)
	tokenConfig := func(tok string) string {
		return writeMode(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf("upstream: {tokenFile: %q}\n", tok), 0o600)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"token file /dev/zero", tokenConfig("/dev/zero"), `upstream.tokenFile: not a regular file: "/dev/zero" is a character device`},
		{"token file a FIFO", tokenConfig(fifo), "upstream.tokenFile: not a regular file: \"" + fifo + "\" is a named pipe (FIFO)"},
		{"token file over 8 KiB", tokenConfig(big), "upstream.tokenFile: file too large: \"" + big + "\" holds more than 8 KiB"},
		{"config file over 1 MiB", hugeConfig, "holds more than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			go func() {
				_, err := Load(tc.path, noEnv)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Load = %v, want an error saying %q", err, tc.want)
				}
			case <-time.After(20 * time.Second): // generous: nothing is read at all
				if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					_ = f.Close() // release a blocked open
				}
				t.Fatal("Load did not return")
			}
		})
	}
}

func TestTrustOptOutValue(t *testing.T) {
	t.Parallel()
	path := writeMode(t, filepath.Join(t.TempDir(), "config.yaml"), "{}\n", 0o600)
	_, err := Load(path, env(map[string]string{EnvInsecureTrustWritableFiles: "yes please"}))
	if err == nil || !strings.Contains(err.Error(), EnvInsecureTrustWritableFiles+" must be true or false") {
		t.Fatalf("Load = %v, want the variable's bad value named", err)
	}
}

// TestWatcherRefusesFilesOthersCouldWrite: at reload, a config file made
// writable by others, or a token file swapped for a FIFO, is rejected:
// the running config stays, Status says why, and the check returns at once
// rather than waiting for a writer to open the FIFO. A token file whose
// mode alone changes is checked again too.
func TestWatcherRefusesFilesOthersCouldWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := writeMode(t, filepath.Join(dir, "token"), "tok-123\n", 0o600)
	path := writeMode(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf("upstream: {tokenFile: %q}\n%s", tok, batchFile(10)), 0o600)
	w := newLoaded(t, path)
	var r recorder
	check := func(what, inError string) {
		t.Helper()
		done := make(chan bool, 1)
		go func() { done <- w.Check(r.apply, false) }()
		select {
		case applied := <-done:
			if applied || r.last() != nil {
				t.Fatalf("%s: applied", what)
			}
		case <-time.After(20 * time.Second): // generous: the check must not wait at all
			t.Fatalf("%s: Check did not return", what)
		}
		if s := w.Status(); s.Generation != 1 || !strings.Contains(s.LastError, inError) {
			t.Fatalf("%s: status %+v, want generation 1 and an error with %q", what, s, inError)
		}
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	check("config made 0666", "is writable by group or others (mode 0666)")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tok, 0o606); err != nil {
		t.Fatal(err)
	}
	check("token file made 0606, content the same", "upstream.tokenFile: \""+tok+"\" is writable by group or others (mode 0606)")
	if err := os.Remove(tok); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	check("token file swapped for a FIFO", "is a named pipe (FIFO)")
	writeMode(t, tok+".new", "tok-456\n", 0o600)
	if err := os.Rename(tok+".new", tok); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !w.Check(r.apply, false) || r.last().Upstream.Token.Reveal() != "tok-456" {
		t.Fatalf("the fixed token file was not applied: %+v", w.Status())
	}
	if err := w.Wait(ctx, func(s Status) bool { return s.Generation == 2 && s.LastError == "" }); err != nil {
		t.Fatal(err)
	}
}
