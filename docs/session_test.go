package docs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How long the runner waits. Bounds, not measurements: a command that
// takes longer has hung, and a loaded CI machine gets generous room.
const (
	stepTimeout   = 2 * time.Minute  // a command to finish
	serverPatient = time.Minute      // a server, or a background job, to print what the text says
	afterExit     = 3 * time.Second  // lines still coming from a command's background children
	stopTimeout   = 30 * time.Second // a server to stop after SIGTERM
)

var built struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// sidecarBinary builds cmd/chittyid-sidecar once for every test that
// needs it.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "docs-examples-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "chittyid-sidecar")
		out, err := exec.Command("go", "build", "-o", built.path, "../cmd/chittyid-sidecar").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("building the sidecar: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// pageRun is one page's examples being run: its shell, the servers it
// started, the ports it gave out and the values its commands printed.
type pageRun struct {
	bin, dir string
	env      []string
	ports    map[string]string // the text's port → the free one used
	vars     map[string]string // $NAMEs with their values
	log      strings.Builder   // the transcript, for a failure
	lastOut  string            // what the last command printed
	sh       *shell
	servers  []*server
	n        int
	logDir   string // where a failure's transcript goes
}

// runSteps runs one page's steps in order and stops at the first that
// does not do what the text says; the transcript of a failure goes to a
// file in logDir.
func runSteps(t *testing.T, bin string, steps []step, logDir string) (err error) {
	r := &pageRun{bin: bin, dir: t.TempDir(), ports: map[string]string{}, vars: map[string]string{}, logDir: logDir}
	r.env = sessionEnv(filepath.Dir(bin))
	if r.sh, err = startShell(r.dir, r.env); err != nil {
		return err
	}
	defer r.close()
	if len(steps) > 0 && !isSidecar(r.binary(steps[0].cmd), "dev") {
		implicit := step{page: steps[0].page, line: 0, cmd: "go run ./cmd/chittyid-sidecar dev", want: []string{
			"sidecar: http://127.0.0.1:8787 (apps: …",
			"upstream simulator: $SIM (…",
			"upstream token: $TOKEN (…",
			"simulator control: $CONTROL (…",
			"minted $ID; try:",
		}}
		if err := r.step(implicit); err != nil {
			return r.failed(implicit, err)
		}
	}
	for _, s := range steps {
		if err := r.step(s); err != nil {
			return r.failed(s, err)
		}
	}
	return nil
}

// sessionEnv is the environment of a page's commands: this process's,
// without what would change how curl or the sidecar behave (proxies, the
// sidecar's own overrides), with the built binary first on PATH.
func sessionEnv(binDir string) []string {
	drop := map[string]bool{"CHITTY_ID_TOKEN": true, "CHITTYID_SERVICE_URL": true, "CHITTYID_SIDECAR_LISTEN": true}
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case drop[k], strings.HasSuffix(strings.ToLower(k), "_proxy"):
		case k == "PATH":
			env = append(env, "PATH="+binDir+string(os.PathListSeparator)+v)
		default:
			env = append(env, kv)
		}
	}
	return env
}

var (
	goRun   = regexp.MustCompile(`\bgo run \./cmd/chittyid-sidecar\b`)
	goBuild = regexp.MustCompile(`\bgo build -o (\S+) \./cmd/chittyid-sidecar\b`)
	addrRe  = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
)

// rewrite makes a command as written run here: the built binary for go
// run and go build, a free port for each port the text chose.
func (r *pageRun) rewrite(cmd string) string { return r.mapPorts(r.binary(cmd)) }

// binary is cmd with the built binary for go run and go build.
func (r *pageRun) binary(cmd string) string {
	cmd = goRun.ReplaceAllLiteralString(cmd, shq(r.bin))
	return goBuild.ReplaceAllString(cmd, "cp "+shq(r.bin)+" $1")
}

func (r *pageRun) mapPorts(s string) string {
	return addrRe.ReplaceAllStringFunc(s, func(a string) string {
		port := a[len("127.0.0.1:"):]
		if port == "0" {
			return a
		}
		if _, ok := r.ports[port]; !ok {
			r.ports[port] = freePort()
		}
		return "127.0.0.1:" + r.ports[port]
	})
}

// freePort is a port nothing listens on now, for an address that a
// command binds later (a config file's listen, say), or that nothing
// should answer on; "0" if there is none, which makes the command fail
// visibly. Where the kernel says which ports it hands out itself (Linux:
// ip_local_port_range), the port is one below that range, never given out
// twice by this process: what binds port 0 or connects out, anywhere on
// the machine and at any moment, gets a port from that range, and so
// cannot take this one before the command binds it. Elsewhere it is one
// the kernel picks.
func freePort() string {
	if p, ok := portBelowEphemeral(); ok {
		return strconv.Itoa(p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "0"
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// givenOut are the ports portBelowEphemeral has handed out.
var givenOut struct {
	sync.Mutex
	ports map[int]bool
}

// portBelowEphemeral is a port between 10000 and the kernel's ephemeral
// range that this process has not handed out and nothing listens on.
func portBelowEphemeral() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	low, err := strconv.Atoi(strings.Fields(string(b) + " 0")[0])
	if err != nil || low <= 10000 {
		return 0, false
	}
	givenOut.Lock()
	defer givenOut.Unlock()
	if givenOut.ports == nil {
		givenOut.ports = map[int]bool{}
	}
	for range 100 {
		p := 10000 + rand.IntN(low-10000)
		if givenOut.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = ln.Close()
		givenOut.ports[p] = true
		return p, true
	}
	return 0, false
}

// isSidecar says whether cmd runs the sidecar binary's sub command in
// the foreground.
func isSidecar(cmd, sub string) bool {
	f := strings.Fields(cmd)
	return runsBinary(cmd) && len(f) >= 2 && f[1] == sub && !strings.HasSuffix(strings.TrimSpace(cmd), "&")
}

// runsBinary says whether cmd runs the sidecar binary.
func runsBinary(cmd string) bool {
	f := strings.Fields(cmd)
	return len(f) >= 1 && filepath.Base(strings.Trim(f[0], `'"`)) == "chittyid-sidecar"
}

// step runs one command and checks what it printed.
func (r *pageRun) step(s step) error {
	if problem := handWritten(s, r.vars); problem != "" {
		return errors.New(problem)
	}
	text, bin := s.cmd, r.binary(s.cmd)
	server := isSidecar(bin, "dev") || isSidecar(bin, "serve") || isSidecar(bin, "upstream-sim")
	if isSidecar(bin, "dev") && !strings.Contains(text, "--listen") {
		text += " --listen 127.0.0.1:8787" // dev's default, which the text's addresses name
	}
	want := slices.Clone(s.want)
	var learn map[string]string
	if server || runsBinary(bin) && strings.HasSuffix(strings.TrimSpace(bin), "&") {
		text, learn = r.learnPorts(text, want)
	}
	cmd := r.rewrite(text)
	for i, w := range want {
		want[i] = r.mapPorts(w)
	}
	r.n++
	out := filepath.Join(r.dir, fmt.Sprintf(".out-%d", r.n))
	fmt.Fprintf(&r.log, "\n$ %s\n", cmd)
	var got map[string]string
	var err error
	if server {
		got, err = r.server(cmd, out, want)
	} else {
		got, err = r.command(cmd, out, want, s.exit)
	}
	if err == nil {
		err = r.keep(got, learn)
	}
	b, _ := os.ReadFile(out)
	r.lastOut = string(b)
	r.log.Write(b)
	return err
}

// learnPorts lets a command that starts a listener bind port 0 for each
// port the text chose that it names first, when the lines it prints name
// that port too: the command gets 127.0.0.1:0, the expected lines a
// $NAME in its place, and keep records the port it printed. A free port
// picked here and bound later by the command could be taken in between by
// anything else on the machine binding or connecting; port 0 cannot be.
// It returns the command and the names it put in want, by port.
func (r *pageRun) learnPorts(cmd string, want []string) (string, map[string]string) {
	learn := map[string]string{}
	for _, m := range addrRe.FindAllStringSubmatch(cmd, -1) {
		port := m[1]
		if _, known := r.ports[port]; known || port == "0" || learn[port] != "" {
			continue
		}
		name := "LEARNED_PORT_" + port
		for i, w := range want {
			if w2 := replacePort(w, port, "$"+name); w2 != w {
				want[i], learn[port] = w2, name
			}
		}
		if learn[port] != "" {
			cmd = replacePort(cmd, port, "0")
		}
	}
	return cmd, learn
}

// replacePort puts with in place of port in s's 127.0.0.1:PORT addresses.
func replacePort(s, port, with string) string {
	return addrRe.ReplaceAllStringFunc(s, func(a string) string {
		if a[len("127.0.0.1:"):] != port {
			return a
		}
		return "127.0.0.1:" + with
	})
}

// keep gives the names a command's output matched their values: a
// learned port (learnPorts) joins the page's ports, anything else is a
// $NAME for the commands after it.
func (r *pageRun) keep(got, learn map[string]string) error {
	for port, name := range learn {
		p, err := strconv.Atoi(got[name])
		if err != nil || p <= 0 {
			return fmt.Errorf("port %s: it printed %q where its address goes", port, got[name])
		}
		r.ports[port] = got[name]
		delete(got, name)
	}
	for k, v := range got {
		r.vars[k] = v
		r.sh.export(k, v)
	}
	return nil
}

// command runs cmd in the page's shell and returns the values of the
// $NAMEs its output gave values.
func (r *pageRun) command(cmd, out string, want []string, exit int) (map[string]string, error) {
	status, err := r.sh.run(cmd, out, stepTimeout)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&r.log, "[exit status %d]\n", status)
	if status != exit {
		return nil, fmt.Errorf("exit status %d, want %d", status, exit)
	}
	patience := afterExit
	if strings.HasSuffix(strings.TrimSpace(cmd), "&") {
		patience = serverPatient
	}
	return r.await(out, want, patience, nil)
}

// server starts cmd as in another terminal, waits for what the text
// says it prints and returns the values of the $NAMEs it gave values.
func (r *pageRun) server(cmd, out string, want []string) (map[string]string, error) {
	sv, err := startServer(cmd, out, r.dir, r.envWithVars())
	if err != nil {
		return nil, err
	}
	r.servers = append(r.servers, sv)
	return r.await(out, want, serverPatient, sv.done)
}

// await polls out until want's lines are there, patience passes, or
// exited (a server's end) is closed; it returns the values of the $NAMEs
// the lines gave values.
func (r *pageRun) await(out string, want []string, patience time.Duration, exited <-chan struct{}) (map[string]string, error) {
	m := matcher{vars: r.vars}
	deadline := time.Now().Add(patience)
	for {
		b, _ := os.ReadFile(out)
		got, err := m.match(string(b), want)
		if err == nil {
			return got, nil
		}
		select {
		case <-exited:
			b, _ = os.ReadFile(out)
			if _, err2 := m.match(string(b), want); err2 == nil {
				continue
			}
			return nil, fmt.Errorf("it exited: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *pageRun) envWithVars() []string {
	env := append([]string(nil), r.env...)
	for k, v := range r.vars {
		env = append(env, k+"="+v)
	}
	return env
}

// failed writes the whole transcript to a file and returns an error with
// the step, what went wrong and a short excerpt.
func (r *pageRun) failed(s step, err error) error {
	for i, sv := range r.servers {
		b, _ := os.ReadFile(sv.out)
		fmt.Fprintf(&r.log, "\n== server %d: %s\n%s", i+1, sv.cmd, b)
	}
	where := "(could not write the transcript)"
	if f, ferr := os.CreateTemp(r.logDir, "docs-examples-*.txt"); ferr == nil {
		_, _ = f.WriteString(r.log.String())
		_ = f.Close()
		where = f.Name()
	}
	return fmt.Errorf("%s\n  %v\n  it printed:\n%s\n  the page's whole transcript, servers' output included: %s", s, err, tail(r.lastOut, 1500), where)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func (r *pageRun) close() {
	for _, sv := range r.servers {
		sv.stop()
	}
	r.sh.close()
}

// shell is one bash that runs a page's commands in turn, so that
// variables, files and jobs carry over. It reports each command's exit
// status on file descriptor 3.
type shell struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	status chan string
	read   chan struct{} // closed when the status reader has ended
	dir    string
	n      int
}

func startShell(dir string, env []string) (*shell, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c := exec.Command("bash", "--noprofile", "--norc")
	c.Dir, c.Env, c.ExtraFiles = dir, env, []*os.File{pw}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("starting bash: %w", err)
	}
	_ = pw.Close()
	s := &shell{cmd: c, in: in, status: make(chan string, 1), read: make(chan struct{}), dir: dir}
	go s.readStatus(pr)
	return s, nil
}

// readStatus forwards the exit statuses bash writes until it exits.
func (s *shell) readStatus(pr *os.File) {
	defer close(s.read)
	defer close(s.status)
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		s.status <- sc.Text()
	}
}

// run runs cmd with its output in out and returns its exit status.
func (s *shell) run(cmd, out string, timeout time.Duration) (int, error) {
	s.n++
	script := filepath.Join(s.dir, fmt.Sprintf(".step-%d.sh", s.n))
	if err := os.WriteFile(script, []byte(cmd+"\n"), 0o600); err != nil {
		return 0, err
	}
	if _, err := fmt.Fprintf(s.in, "{ . %s ; } >%s 2>&1 </dev/null 3>&- ; echo $? >&3\n", shq(script), shq(out)); err != nil {
		return 0, fmt.Errorf("the shell is gone: %w", err)
	}
	select {
	case line, ok := <-s.status:
		if !ok {
			return 0, errors.New("the shell exited (did the command run exit?)")
		}
		return strconv.Atoi(line)
	case <-time.After(timeout):
		return 0, fmt.Errorf("did not finish within %v", timeout)
	}
}

func (s *shell) export(name, value string) {
	_, _ = fmt.Fprintf(s.in, "export %s=%s\n", name, shq(value))
}

// close stops the page's background jobs, then bash, and kills whatever
// is left of its process group.
func (s *shell) close() {
	_, _ = io.WriteString(s.in, "kill $(jobs -p) 2>/dev/null; wait\n")
	_ = s.in.Close()
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	for range s.status { // the reader ends when the pipe closes
	}
	<-s.read
}

// server is a command the text runs in another terminal.
type server struct {
	cmd, out string
	proc     *exec.Cmd
	done     chan struct{}
}

func startServer(cmd, out, dir string, env []string) (*server, error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := exec.Command("bash", "-c", "exec "+cmd)
	c.Dir, c.Env, c.Stdout, c.Stderr = dir, env, f, f
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd, err)
	}
	sv := &server{cmd: cmd, out: out, proc: c, done: make(chan struct{})}
	go func() { _ = c.Wait(); close(sv.done) }()
	return sv, nil
}

// stop sends SIGTERM, as Ctrl-C or a kill would, and SIGKILL if the
// server does not stop.
func (sv *server) stop() {
	_ = syscall.Kill(-sv.proc.Process.Pid, syscall.SIGTERM)
	select {
	case <-sv.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-sv.proc.Process.Pid, syscall.SIGKILL)
		<-sv.done
	}
}

// shq quotes s for the shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
