package testout

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestCut(t *testing.T) {
	var text strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&text, "line %d %s\n", i, strings.Repeat("x", i))
	}
	got := Cut(t, "long.txt", text.String(), func(l string) bool { return strings.HasPrefix(l, "line 9") })
	if len(got) > 16<<10 {
		t.Errorf("Cut returned %d bytes, want a few KB", len(got))
	}
	lines := strings.Split(got, "\n")
	if lines[0] != "line 9 xxxxxxxxx" || !strings.HasPrefix(lines[1], "line 90 ") || !strings.HasSuffix(lines[39], "bytes)") {
		t.Errorf("Cut kept the wrong lines: %q", lines[:3])
	}
	if !strings.Contains(got, "… 71 more lines") {
		t.Errorf("Cut does not say how many lines it left out:\n%s", got)
	}
	_, path, ok := strings.Cut(lines[len(lines)-1], "bytes: ")
	if !ok {
		t.Fatalf("no path in %q", lines[len(lines)-1])
	}
	path = strings.TrimSuffix(path, ")")
	b, err := os.ReadFile(path)
	if err != nil || string(b) != text.String() {
		t.Errorf("the kept file %s holds %d bytes (%v), want the %d of the text", path, len(b), err, text.Len())
	}
	_ = os.RemoveAll(strings.TrimSuffix(path, "/long.txt"))

	got = Last(t, "long.txt", text.String(), nil)
	lines = strings.Split(got, "\n")
	if lines[0] != "… 960 lines before" || !strings.HasPrefix(lines[1], "line 960 ") || !strings.HasPrefix(lines[40], "line 999 ") {
		t.Errorf("Last kept the wrong lines: %q … %q", lines[:2], lines[40])
	}
	_, path, _ = strings.Cut(lines[len(lines)-1], "bytes: ")
	_ = os.RemoveAll(strings.TrimSuffix(strings.TrimSuffix(path, ")"), "/long.txt"))
}
