package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var hasScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// TestLinks: every relative link of the README and docs/*.md names a file
// or directory of the repository, and every #anchor a heading of the page
// it points to (GitHub's anchors).
func TestLinks(t *testing.T) {
	t.Parallel()
	anchors := map[string]map[string]bool{} // by page path
	anchorsOf := func(path string) (map[string]bool, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		p, err := readPage(path)
		if err != nil {
			return nil, err
		}
		anchors[path] = p.anchors()
		return anchors[path], nil
	}
	checked := 0
	for _, p := range docPages(t) {
		for _, m := range mdLink.FindAllStringSubmatch(p.text(), -1) {
			target := m[2]
			if hasScheme.MatchString(target) || strings.HasPrefix(target, "//") {
				continue
			}
			checked++
			if err := checkLink(p.path, target, anchorsOf); err != "" {
				t.Errorf("%s: link %s: %s", p.path, target, err)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d relative links found: is the parser still finding them?", checked)
	}
}

// checkLink says what is wrong with a relative link from the page at from
// ("" when nothing is).
func checkLink(from, target string, anchorsOf func(string) (map[string]bool, error)) string {
	path, anchor, _ := strings.Cut(target, "#")
	resolved := from
	if path != "" {
		resolved = filepath.ToSlash(filepath.Join(filepath.Dir(from), path))
		if resolved == ".." || strings.HasPrefix(resolved, "../") {
			return "points outside the repository"
		}
		if _, err := os.Stat(filepath.Join(repoRoot, resolved)); err != nil {
			return "no such file or directory " + resolved
		}
	}
	if anchor == "" {
		return ""
	}
	if !strings.HasSuffix(resolved, ".md") {
		return "an anchor into " + resolved + ", which is not a Markdown page"
	}
	a, err := anchorsOf(resolved)
	if err != nil {
		return err.Error()
	}
	if !a[anchor] {
		return resolved + " has no heading with the anchor #" + anchor
	}
	return ""
}

func TestCheckLinkFindsBrokenOnes(t *testing.T) {
	t.Parallel()
	anchorsOf := func(path string) (map[string]bool, error) {
		p, err := readPage(path)
		if err != nil {
			return nil, err
		}
		return p.anchors(), nil
	}
	for _, c := range []struct{ from, target string }{
		{"README.md", "docs/nope.md"},
		{"README.md", "docs/api.md#no-such-heading"},
		{"docs/faq.md", "#no-such-heading"},
		{"docs/faq.md", "../../outside.md"},
		{"docs/faq.md", "../go.mod#x"},
	} {
		if checkLink(c.from, c.target, anchorsOf) == "" {
			t.Errorf("%s: link %s passed", c.from, c.target)
		}
	}
	if err := checkLink("docs/faq.md", "api.md#errors", anchorsOf); err != "" {
		t.Errorf("a good link refused: %s", err)
	}
}

// TestReadmePromises: the README stays short and names the two commands
// it promises.
func TestReadmePromises(t *testing.T) {
	t.Parallel()
	p, err := readPage("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.lines) - 1; n > 250 {
		t.Errorf("README.md has %d lines; it promises at most 250: move the detail to a page of docs/", n)
	}
	text := strings.Join(p.lines, "\n")
	for _, cmd := range []string{"go run ./cmd/chittyid-sidecar dev", "bash .ci/run"} {
		if !strings.Contains(text, cmd) {
			t.Errorf("README.md no longer shows %q", cmd)
		}
	}
}
