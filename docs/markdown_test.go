package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

// page is one Markdown file: its path from the repository root and its lines.
type page struct {
	path  string
	lines []string
}

// fence is a fenced code block of a page.
type fence struct {
	lang string
	line int      // 1-based line of the opening fence
	body []string // its lines, the fence's indentation removed
	// notRun is the reason of a "<!-- not run: … -->" comment on the line
	// before the fence; marked says there was one.
	notRun string
	marked bool
}

// docPages are the pages the tests check: the README and docs/*.md.
func docPages(t *testing.T) []page {
	t.Helper()
	paths := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		rel, _ := filepath.Rel(repoRoot, m)
		paths = append(paths, filepath.ToSlash(rel))
	}
	pages := make([]page, 0, len(paths))
	for _, p := range paths {
		pg, err := readPage(p)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, pg)
	}
	return pages
}

func readPage(path string) (page, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	if err != nil {
		return page{}, err
	}
	return page{path: path, lines: strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")}, nil
}

var (
	fenceOpen = regexp.MustCompile("^(\\s*)(```+|~~~+)\\s*([^\\s`]*)")
	notRunRe  = regexp.MustCompile(`^\s*<!--\s*not run:\s*(.*?)\s*-->\s*$`)
	headingRe = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
)

// scan walks a page once: fences to onFence, every line outside them to
// onText (with its 1-based number).
func (p page) scan(onFence func(fence), onText func(n int, line string)) {
	for i := 0; i < len(p.lines); i++ {
		m := fenceOpen.FindStringSubmatch(p.lines[i])
		if m == nil {
			if onText != nil {
				onText(i+1, p.lines[i])
			}
			continue
		}
		f := fence{lang: m[3], line: i + 1}
		if i > 0 {
			if c := notRunRe.FindStringSubmatch(p.lines[i-1]); c != nil {
				f.marked, f.notRun = true, c[1]
			}
		}
		indent, marker := m[1], m[2]
		for i++; i < len(p.lines); i++ {
			if strings.TrimSpace(p.lines[i]) == marker {
				break
			}
			f.body = append(f.body, strings.TrimPrefix(p.lines[i], indent))
		}
		if onFence != nil {
			onFence(f)
		}
	}
}

func (p page) fences() []fence {
	var fs []fence
	p.scan(func(f fence) { fs = append(fs, f) }, nil)
	return fs
}

// text is the page outside its fences, with inline code removed, so that
// what looks like a link inside either is not taken for one.
func (p page) text() string {
	var b strings.Builder
	p.scan(func(f fence) {
		for range len(f.body) + 2 {
			b.WriteString("\n")
		}
	}, func(_ int, line string) {
		b.WriteString(line)
		b.WriteString("\n")
	})
	return inlineCode.ReplaceAllString(b.String(), "")
}

var (
	inlineCode = regexp.MustCompile("`[^`]+`")
	mdLink     = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	emphasis   = regexp.MustCompile(`[*_]{1,3}([^*_]+)[*_]{1,3}`)
)

// anchors are the GitHub anchors of a page's headings.
func (p page) anchors() map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	p.scan(nil, func(_ int, line string) {
		m := headingRe.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := slug(m[2])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	})
	return out
}

// slug is GitHub's anchor for a heading: the rendered text (code spans
// and emphasis unwrapped, links reduced to their text) lower-cased, every
// character but letters, digits, '_', '-' and spaces dropped, spaces made
// hyphens.
func slug(heading string) string {
	h := mdLink.ReplaceAllString(heading, "$1")
	h = strings.ReplaceAll(h, "`", "")
	h = emphasis.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for heading, want := range map[string]string{
		"The `/health` document":                   "the-health-document",
		"Fleet: a cache shared by many sidecars":   "fleet-a-cache-shared-by-many-sidecars",
		"`X-Cache: STALE` for a long time":         "x-cache-stale-for-a-long-time",
		"Requests refused with `403` or `415`":     "requests-refused-with-403-or-415",
		"Which client, which base URL":             "which-client-which-base-url",
		"Lifecycle, probes and `/health`":          "lifecycle-probes-and-health",
		"**Bold** and [a link](x.md) in a heading": "bold-and-a-link-in-a-heading",
		"ChittyIDSidecarBreakerOpen":               "chittyidsidecarbreakeropen",
		"Upstream: production TLS, proxies":        "upstream-production-tls-proxies",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestAnchorsNumberRepeatedHeadings(t *testing.T) {
	t.Parallel()
	p := page{path: "x.md", lines: []string{"# A", "## Logs", "```", "## Logs", "```", "## Logs"}}
	got := p.anchors()
	for _, want := range []string{"a", "logs", "logs-1"} {
		if !got[want] {
			t.Errorf("anchors %v lack %q", got, want)
		}
	}
	if got["logs-2"] {
		t.Errorf("a heading inside a fence counted: %v", got)
	}
}
