package docs

// The shell examples of the README and docs/*.md are run, in order, page by
// page, against a real dev (the simulator and a sidecar) on free ports, and
// what they print is checked against what the text says they print.
//
// How an example is written:
//
//   - A fenced block marked sh (or bash, shell) is an example. Each line is
//     a command, as a reader would type it; a line ending in '\' continues
//     on the next, and a here-document runs to its terminator.
//   - A line "# → TEXT" under a command is a line the command prints (its
//     standard output and error together), in order, other lines between
//     allowed. "…" stands for anything; runs of spaces compare as one.
//     "# → (exit status N)" says the command exits N; otherwise it must
//     exit 0. Other "#" lines are comments.
//   - "$NAME" (capitals) in a "# →" line stands for a value the program
//     chooses: the first time, it takes what was printed there, and the
//     commands after it use it as the shell variable it is ("$ID" the ID a
//     mint printed, "$CONTROL" the simulator's control URL dev printed).
//     Once it has a value, the text there must be that value.
//   - A command never writes out a value the program chose: not a
//     ChittyID (unless the example shows it is not valid), not the value
//     of a $NAME such as the dev token. It names it ($ID, $TOKEN).
//   - 127.0.0.1:PORT in a command or an expected line is an address the
//     text chose (8787 is dev's and serve's default): the test gives each
//     such port of a page a free one, the same every time it appears. A
//     command that starts the sidecar binary (in the foreground or with
//     '&') and prints an address it is the first to name binds port 0
//     there instead, and the port it prints is the page's from then on: a
//     port picked free in advance can be taken before the command binds it.
//   - "go run ./cmd/chittyid-sidecar" and "chittyid-sidecar" run a binary
//     the test built; "go build -o FILE ./cmd/chittyid-sidecar" copies it.
//     A command running dev, serve or upstream-sim in the foreground runs
//     as in a second terminal: the test starts it, waits for the lines the
//     text says it prints, and stops it at the end of the page. A page
//     whose first command is not such a dev gets one started first, as if
//     it had run `go run ./cmd/chittyid-sidecar dev` above its examples.
//   - The commands of one page run in one shell, in a scratch directory:
//     variables, files and background jobs (`&`, stopped with `kill %1`)
//     carry over from one block to the next. Process run in the background
//     and stopped later use a built binary (go build), not go run, whose
//     kill would leave the program running.
//   - A block that must not run (it is CI itself, takes minutes, or needs
//     a cluster) has "<!-- not run: REASON -->" on the line before it.

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// step is one command of an example and what the text says it prints.
type step struct {
	page string
	line int    // 1-based line of the command in its page
	cmd  string // as written, lines of a continuation joined by "\n"
	want []string
	exit int
}

func (s step) String() string { return fmt.Sprintf("%s:%d: %s", s.page, s.line, firstLine(s.cmd)) }

func firstLine(s string) string {
	l, _, more := strings.Cut(s, "\n")
	if more {
		return l + " …"
	}
	return l
}

var (
	expectRe  = regexp.MustCompile(`^\s*#\s*→\s?(.*)$`)
	exitRe    = regexp.MustCompile(`^\(exit status (\d+)\)$`)
	heredocRe = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_]+)['"]?`)
)

// isShell says whether a fence's language is a shell.
func isShell(lang string) bool { return lang == "sh" || lang == "bash" || lang == "shell" }

// steps parses a shell fence into its commands and what they print.
func steps(pagePath string, f fence) ([]step, error) {
	var out []step
	for i := 0; i < len(f.body); i++ {
		line := f.body[i]
		n := f.line + 1 + i
		if m := expectRe.FindStringSubmatch(line); m != nil {
			if len(out) == 0 {
				return nil, fmt.Errorf("%s:%d: an expected line before any command", pagePath, n)
			}
			last := &out[len(out)-1]
			if e := exitRe.FindStringSubmatch(strings.TrimSpace(m[1])); e != nil {
				last.exit, _ = strconv.Atoi(e[1])
			} else {
				last.want = append(last.want, m[1])
			}
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		cmd := line
		for strings.HasSuffix(cmd, `\`) && i+1 < len(f.body) {
			i++
			cmd += "\n" + f.body[i]
		}
		if h := heredocRe.FindStringSubmatch(cmd); h != nil {
			for i+1 < len(f.body) {
				i++
				cmd += "\n" + f.body[i]
				if strings.TrimSpace(f.body[i]) == h[1] {
					break
				}
			}
		}
		out = append(out, step{page: pagePath, line: n, cmd: cmd})
	}
	return out, nil
}

// pageSteps are the commands of a page's examples, in order, and the
// fences that are marked not to run.
func pageSteps(p page) (run []step, notRun []fence, err error) {
	for _, f := range p.fences() {
		if !isShell(f.lang) {
			continue
		}
		if f.marked {
			if f.notRun == "" {
				return nil, nil, fmt.Errorf("%s:%d: \"not run\" without a reason", p.path, f.line)
			}
			notRun = append(notRun, f)
			continue
		}
		s, err := steps(p.path, f)
		if err != nil {
			return nil, nil, err
		}
		run = append(run, s...)
	}
	return run, notRun, nil
}

// TestExamples runs every page's examples against dev.
func TestExamples(t *testing.T) {
	t.Parallel()
	if !haveCurl(t) {
		return
	}
	bin := sidecarBinary(t)
	for _, p := range docPages(t) {
		run, _, err := pageSteps(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(run) == 0 {
			continue
		}
		t.Run(p.path, func(t *testing.T) {
			t.Parallel()
			if err := runSteps(t, bin, run, os.TempDir()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestExamplesAreRunOrSayWhyNot: every shell block is run, or says why not;
// and enough of them run for the test above to mean something.
func TestExamplesAreRunOrSayWhyNot(t *testing.T) {
	t.Parallel()
	ran, skipped := 0, 0
	for _, p := range docPages(t) {
		run, notRun, err := pageSteps(p)
		if err != nil {
			t.Error(err)
			continue
		}
		ran += len(run)
		skipped += len(notRun)
		for _, f := range p.fences() {
			if f.lang == "console" || f.lang == "" && len(f.body) > 0 && strings.HasPrefix(f.body[0], "$ ") {
				t.Errorf("%s:%d: a shell example not marked sh is neither run nor checked", p.path, f.line)
			}
		}
	}
	if ran < 20 {
		t.Errorf("only %d commands run from the docs (%d blocks not run)", ran, skipped)
	}
	t.Logf("%d commands run, %d blocks not run", ran, skipped)
}

// The examples as the README had them before they were tested: the mint
// printed one ID, the validate asked about another written out by hand,
// and the fault went to a port dev never used. The runner must refuse
// both.
func TestExamplesCatchWhatTheOldReadmeDid(t *testing.T) {
	t.Parallel()
	if !haveCurl(t) {
		return
	}
	bin := sidecarBinary(t)
	for _, c := range []struct{ name, want string }{
		{"testdata/hardcoded-id.md", "CT-A-AAA-0100-P-26-A-0"},
		{"testdata/fixed-port.md", "exit status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := readPage("docs/" + c.name)
			if err != nil {
				t.Fatal(err)
			}
			run, _, err := pageSteps(p)
			if err != nil {
				t.Fatal(err)
			}
			err = runSteps(t, bin, run, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the runner accepted the old example (error %v), want an error naming %q", err, c.want)
			}
		})
	}
}

var idLike = regexp.MustCompile(`\b[0-9A-Z]{2}-[0-9A-Z]-[A-Z]{3}-\d{4}-[A-Z]-\d{2,4}-[0-9A-Z]-[0-9A-Z]{1,2}\b`)

// handWritten says what a command writes out that the program chooses
// ("" if nothing): a well-formed ChittyID, unless the step shows that it
// is not valid, or the value of a $NAME (the dev token, say).
func handWritten(s step, vars map[string]string) string {
	notValid := false
	for _, want := range s.want {
		notValid = notValid || strings.Contains(want, `"valid":false`)
	}
	for _, id := range idLike.FindAllString(s.cmd, -1) {
		known := chittyid.FormatOfficial.Check(id) == nil || chittyid.FormatNumeric.Check(id) == nil
		if known && !notValid {
			return "writes out the ID " + id + ": name the ID an earlier command printed ($ID in its \"# →\" line) instead"
		}
	}
	for name, v := range vars {
		if len(v) >= 6 && strings.Contains(s.cmd, v) {
			return "writes out " + v + ", which the program chose and printed: write $" + name + " instead"
		}
	}
	return ""
}

// matcher compares a command's output with the lines the text expects,
// giving $NAMEs their values.
type matcher struct {
	vars map[string]string
}

var tokenRe = regexp.MustCompile(`…|\$[A-Z][A-Z0-9_]*`)

// match looks for want's lines, in order, among out's; it returns the
// values it gave new names, or an error naming the first line not found.
func (m matcher) match(out string, want []string) (map[string]string, error) {
	lines := strings.Split(strings.ReplaceAll(out, "\r", ""), "\n")
	for i := range lines {
		lines[i] = squash(lines[i])
	}
	bound := map[string]string{}
	at := 0
	for _, w := range want {
		re, names := m.pattern(squash(w), bound)
		found := false
		for ; at < len(lines) && !found; at++ {
			sub := re.FindStringSubmatch(lines[at])
			if sub == nil {
				continue
			}
			got, ok := agree(names, sub[1:])
			if !ok {
				continue
			}
			for k, v := range got {
				bound[k] = v
			}
			found = true
		}
		if !found {
			return nil, fmt.Errorf("no line like %q%s", w, m.values(bound))
		}
	}
	return bound, nil
}

// pattern compiles one expected line: "…" is anything, a $NAME with a
// value is that value, one without a capture.
func (m matcher) pattern(w string, bound map[string]string) (*regexp.Regexp, []string) {
	var b strings.Builder
	var names []string
	b.WriteString("^")
	last := 0
	for _, loc := range tokenRe.FindAllStringIndex(w, -1) {
		b.WriteString(regexp.QuoteMeta(w[last:loc[0]]))
		tok := w[loc[0]:loc[1]]
		last = loc[1]
		if tok == "…" {
			b.WriteString(".*?")
			continue
		}
		if v, ok := m.value(tok[1:], bound); ok {
			b.WriteString(regexp.QuoteMeta(v))
			continue
		}
		b.WriteString(`([^\s"',;)]+)`)
		names = append(names, tok[1:])
	}
	b.WriteString(regexp.QuoteMeta(w[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String()), names
}

func (m matcher) value(name string, bound map[string]string) (string, bool) {
	if v, ok := bound[name]; ok {
		return v, true
	}
	v, ok := m.vars[name]
	return v, ok
}

func (m matcher) values(bound map[string]string) string {
	var parts []string
	for k, v := range m.vars {
		parts = append(parts, "$"+k+"="+v)
	}
	for k, v := range bound {
		parts = append(parts, "$"+k+"="+v)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (with " + strings.Join(parts, ", ") + ")"
}

// agree pairs capture names with what they caught; a name caught twice in
// one line must catch the same text.
func agree(names, caught []string) (map[string]string, bool) {
	got := map[string]string{}
	for i, n := range names {
		if v, ok := got[n]; ok && v != caught[i] {
			return nil, false
		}
		got[n] = caught[i]
	}
	return got, true
}

var spaces = regexp.MustCompile(`\s+`)

func squash(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }

func TestMatcher(t *testing.T) {
	t.Parallel()
	m := matcher{vars: map[string]string{"SIM": "http://127.0.0.1:1"}}
	out := "HTTP/1.1 200 OK\r\nX-Cache: HIT\r\n\r\n{\"chittyId\":\"CT-1\",\"chitty_id\":\"CT-1\"}\n  upstream:   http://127.0.0.1:1  (x)\n"
	got, err := m.match(out, []string{`X-Cache: HIT`, `{"chittyId":"$ID","chitty_id":"$ID"…`, `upstream: $SIM (…`})
	if err != nil || got["ID"] != "CT-1" {
		t.Fatalf("match: %v, %v", got, err)
	}
	for _, want := range [][]string{
		{`X-Cache: MISS`},
		{`{"chittyId":"$ID","chitty_id":"$ID"}`, `X-Cache: HIT`}, // out of order
		{`upstream: $OTHER (y)`},
	} {
		if _, err := m.match(out, want); err == nil {
			t.Errorf("%q matched", want)
		}
	}
	if _, err := m.match(`{"chittyId":"CT-1","chitty_id":"CT-2"}`, []string{`{"chittyId":"$ID","chitty_id":"$ID"}`}); err == nil {
		t.Error("one name matched two values")
	}
}

// TestLearnPorts: a command that starts a listener and prints its address
// binds port 0 for a port the page names first, and the port it prints is
// the page's; a port the page already gave out is kept.
func TestLearnPorts(t *testing.T) {
	t.Parallel()
	r := &pageRun{ports: map[string]string{"8787": "41000"}, vars: map[string]string{}}
	want := []string{"API http://127.0.0.1:8791/v1, control http://127.0.0.1:8792 (sidecar 127.0.0.1:8787)"}
	cmd, learn := r.learnPorts("upstream-sim --listen 127.0.0.1:8791 --control 127.0.0.1:8792 --peer 127.0.0.1:8787 &", want)
	if cmd != "upstream-sim --listen 127.0.0.1:0 --control 127.0.0.1:0 --peer 127.0.0.1:8787 &" || len(learn) != 2 {
		t.Fatalf("command %q, learning %v", cmd, learn)
	}
	got, err := matcher{vars: r.vars}.match("API http://127.0.0.1:40323/v1, control http://127.0.0.1:46675 (sidecar 127.0.0.1:41000)\n", []string{r.mapPorts(want[0])})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.keep(got, learn); err != nil || r.ports["8791"] != "40323" || r.ports["8792"] != "46675" || r.ports["8787"] != "41000" || len(r.vars) != 0 {
		t.Fatalf("ports %v, vars %v, %v", r.ports, r.vars, err)
	}
}

func TestStepsParse(t *testing.T) {
	t.Parallel()
	f := fence{lang: "sh", line: 10, body: []string{
		"# a comment",
		"curl -s x \\",
		"  -d y",
		"# → one",
		"# →   two  ",
		"cat <<'EOF' > f",
		"a: 1",
		"EOF",
		"false",
		"# → (exit status 1)",
	}}
	s, err := steps("p.md", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 3 || s[0].line != 12 || s[0].cmd != "curl -s x \\\n  -d y" || len(s[0].want) != 2 ||
		s[1].cmd != "cat <<'EOF' > f\na: 1\nEOF" || s[2].exit != 1 {
		t.Fatalf("steps: %+v", s)
	}
	if _, err := steps("p.md", fence{body: []string{"# → orphan"}}); err == nil {
		t.Error("an expected line before any command was accepted")
	}
}

func TestHandWritten(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"TOKEN": "dev-token-not-secret", "ID": "CT-A-AAA-0000-P-26-A-0"}
	for _, c := range []struct {
		cmd  string
		want []string
		bad  bool
	}{
		{"curl -s http://127.0.0.1:8787/v1/validate/CT-A-AAA-0100-P-26-A-0", nil, true},
		{"curl -s http://127.0.0.1:8787/v1/validate/CT-A-AAA-0000-P-26-A-0", nil, true},
		{"curl -s http://127.0.0.1:8787/v1/validate/$ID", nil, false},
		{"curl -s http://127.0.0.1:8787/v1/validate/CT-A-CHI-1234-I-24-A-0", []string{`{"valid":false,…`}, false},
		{"curl -s http://127.0.0.1:8787/v1/validate/CD-A-CHI-1234-I-24-A-0", nil, false}, // malformed: not an ID
		{`curl -H "Authorization: Bearer dev-token-not-secret" $SIM/mint`, nil, true},
		{`curl -H "Authorization: Bearer $TOKEN" $SIM/mint`, nil, false},
	} {
		if got := handWritten(step{cmd: c.cmd, want: c.want}, vars); (got != "") != c.bad {
			t.Errorf("%s: %q", c.cmd, got)
		}
	}
}

// haveCurl says whether curl is installed; the examples need it. Where
// the test servers are required (CI), its absence fails the test.
func haveCurl(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CHITTYID_TEST_REQUIRE_SERVERS") != "" {
			t.Fatal("curl is not installed; the documentation's examples need it")
		}
		t.Skip("curl is not installed; the documentation's examples need it")
		return false
	}
	return true
}
