// Package testout keeps a failing test's output short (docs/testing.md,
// On a busy machine: a failing test prints a few KB at most): a long text
// it would show (a /metrics page, a log, a body, a tool's output) is cut
// to the lines that matter, and written in full to a file whose path it
// prints. For tests only.
package testout

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	maxLines     = 40  // lines of a long text a failure shows
	maxLineBytes = 300 // bytes of each
)

// Cut returns the lines of text that keep selects (all, if keep is nil),
// the first 40 of them, each cut to 300 bytes, followed by the path of a
// file holding text in full. The file outlives the test: it is in
// t.ArtifactDir() under go test -artifacts, else in a new directory under
// os.TempDir(). Call it on the failure path only.
func Cut(t testing.TB, name, text string, keep func(line string) bool) string {
	t.Helper()
	return cut(t, name, text, keep, false)
}

// Last is Cut showing the last 40 lines that keep selects: for a log,
// whose latest lines say where it stopped.
func Last(t testing.TB, name, text string, keep func(line string) bool) string {
	t.Helper()
	return cut(t, name, text, keep, true)
}

func cut(t testing.TB, name, text string, keep func(line string) bool, last bool) string {
	t.Helper()
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if keep == nil || keep(line) {
			lines = append(lines, line)
		}
	}
	left := max(len(lines)-maxLines, 0)
	var b strings.Builder
	if last && left > 0 {
		fmt.Fprintf(&b, "… %d lines before\n", left)
		lines = lines[left:]
	}
	for _, line := range lines[:min(len(lines), maxLines)] {
		if len(line) > maxLineBytes {
			line = fmt.Sprintf("%s… (%d bytes)", line[:maxLineBytes], len(line))
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if !last && left > 0 {
		fmt.Fprintf(&b, "… %d more lines\n", left)
	}
	if path, err := Keep(t, name, text); err != nil {
		fmt.Fprintf(&b, "(the full text, %d bytes, could not be kept: %v)", len(text), err)
	} else {
		fmt.Fprintf(&b, "(the full text, %d bytes: %s)", len(text), path)
	}
	return b.String()
}

// Keep writes text to a file called name in a directory of the test's
// that outlives it (see Cut) and returns its path.
func Keep(t testing.TB, name, text string) (string, error) {
	t.Helper()
	var dir string
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		dir = t.ArtifactDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "chittyid-"+strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"); err != nil {
			return "", err
		}
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(text), 0o600)
}
