package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigJudgesFiles: check-config refuses a config others could
// write and a token file that is a device (it used to read /dev/zero until
// memory ran out), and prints a warning for a token file every user may
// read.
func TestCheckConfigJudgesFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := write("token", "s3cret-token\n", 0o644)
	for i, tc := range []struct {
		name, config string
		mode         os.FileMode
		wantCode     int
		wantOut      string
	}{
		{"config others could write", "{}\n", 0o666, 2, "is writable by group or others (mode 0666)"},
		{"token file /dev/zero", "upstream: {tokenFile: /dev/zero}\n", 0o600, 2, `not a regular file: "/dev/zero" is a character device`},
		{"token file every user may read", fmt.Sprintf("upstream: {tokenFile: %q}\n", tok), 0o600, 0,
			"warning: upstream.tokenFile \"" + tok + "\" holds a secret and every user may read it (mode 0644)"},
	} {
		path := write(fmt.Sprintf("config%d.yaml", i), tc.config, tc.mode)
		code, all := exitCode(t, "check-config", path)
		if code != tc.wantCode || !strings.Contains(all, tc.wantOut) {
			t.Errorf("%s: exit %d, output:\n%s\nwant exit %d and %q", tc.name, code, all, tc.wantCode, tc.wantOut)
		}
		if strings.Contains(all, "s3cret-token") {
			t.Errorf("%s: the token leaked: %s", tc.name, all)
		}
	}
}
