// Command chittyid-sidecar runs the ChittyID sidecar, its development mode
// with an embedded upstream simulator, the simulator alone, and a config
// checker. See docs/simulator.md for the commands; exit codes: 0 clean stop,
// 1 runtime failure, 2 usage or config error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/sidecar"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: chittyid-sidecar <command> [flags]

commands:
  serve --config FILE   run the sidecar (without --config: defaults and environment)
  dev                   run an upstream simulator and a sidecar pointed at it
                        (--fleet N: N sidecars sharing a redis-server from PATH)
  upstream-sim          run the upstream simulator alone
  check-config FILE     check a config file: a one-line summary, or every problem
  version               print version, commit and Go version
`

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, a ...any) error {
	return &exitError{2, fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "chittyid-sidecar:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{2, errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "dev":
		return dev(ctx, rest, stdout, stderr)
	case "upstream-sim":
		return upstreamSim(ctx, rest, stdout, stderr)
	case "check-config":
		return checkConfig(rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "chittyid-sidecar %s (commit %s, %s)\n", version, commit(), runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageErr("unknown command %q", cmd)
}

func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() > 0 {
		return usageErr("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// newLogger builds the process logger; the level var lets reloads change
// log.level.
func newLogger(w io.Writer, l config.Log) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(l.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), level
	}
	return slog.New(slog.NewJSONHandler(w, opts)), level
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	stderr = sidecar.SyncWriter(stderr)
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config file (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		cfg, err := config.Parse([]byte("{}"), os.LookupEnv)
		if err != nil {
			return &exitError{2, err}
		}
		log, level := newLogger(stderr, cfg.Log)
		return runSidecar(ctx, cfg, sidecar.Options{Logger: log, LogLevel: level, LogOutput: stderr})
	}
	w := config.NewWatcher(*path, os.LookupEnv, config.WatcherOptions{})
	cfg, err := w.Load()
	if err != nil {
		return &exitError{2, err}
	}
	log, level := newLogger(stderr, cfg.Log)
	w.SetLogger(log)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runSidecar(ctx, cfg, sidecar.Options{Logger: log, LogLevel: level, LogOutput: stderr, Watcher: w, Reload: hup})
}

// gcPercent is the garbage collector's target the sidecar runs with unless
// GOGC is set. Its heap is mostly the cache: bigcache's byte rings and
// pointer-free index maps, which the collector does not scan, and a cached
// validate allocates nothing; so collecting at 25 % growth instead of 100 %
// costs little CPU and keeps RSS near the live size (bench/RESULTS.md (e)).
const gcPercent = 25

// defaultGC sets gcPercent unless the environment sets GOGC.
func defaultGC(lookupEnv func(string) (string, bool)) {
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

func runSidecar(ctx context.Context, cfg *config.Config, opts sidecar.Options) error {
	opts.Version = version
	defaultGC(os.LookupEnv)
	s, err := sidecar.New(cfg, opts)
	if err != nil {
		return err
	}
	if err := s.Run(ctx, nil); err != nil {
		return err
	}
	opts.Logger.Info("stopped cleanly")
	return nil
}

// checkConfig is check-config: exit 0 and a one-line summary, with a
// warning line on stderr for a config that works but forwards callers'
// credentials; or exit 2 and every problem.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return usageErr("check-config takes one file, got %d arguments", len(args))
	}
	cfg, err := config.Load(args[0], os.LookupEnv)
	if err != nil {
		return &exitError{2, err}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintln(stdout, "ok:", cfg.Summary())
	if w := cfg.TokenWarning(); w != "" {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return nil
}

// simFlags are the flags dev and upstream-sim share.
type simFlags struct {
	dialect, format string
	latency         time.Duration
}

func (f *simFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dialect, "dialect", string(upstream.DialectClientV1), "upstream dialect: client-v1 or worker")
	fs.StringVar(&f.format, "format", "official", "ID format: official or numeric")
	fs.DurationVar(&f.latency, "latency", 0, "simulated upstream latency per request")
}

func (f *simFlags) config(token string) (sim.Config, error) {
	format, err := chittyid.ParseFormat(f.format)
	if err != nil {
		return sim.Config{}, usageErr("--format: %v", err)
	}
	d := upstream.Dialect(f.dialect)
	if d != upstream.DialectClientV1 && d != upstream.DialectWorker {
		return sim.Config{}, usageErr("--dialect must be client-v1 or worker, got %q", f.dialect)
	}
	return sim.Config{Dialect: d, Format: format, Token: token, Latency: f.latency}, nil
}

func upstreamSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("upstream-sim", stderr)
	var sf simFlags
	sf.register(fs)
	listen := fs.String("listen", "127.0.0.1:8788", "API address")
	control := fs.String("control", "127.0.0.1:8789", "control API address")
	token := fs.String("token", "", "bearer token the API requires (empty: none)")
	tlsCert := fs.String("tls-cert", "", "serve the API over HTTPS with this PEM certificate (chain)")
	tlsKey := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "require client certificates issued by these PEM CAs (needs --tls-cert)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := sf.config(*token)
	if err != nil {
		return err
	}
	switch {
	case (*tlsCert == "") != (*tlsKey == ""):
		return usageErr("--tls-cert and --tls-key go together")
	case *tlsClientCA != "" && *tlsCert == "":
		return usageErr("--tls-client-ca needs --tls-cert and --tls-key")
	case *tlsCert != "":
		if cfg.TLS, err = sim.ServerTLS(*tlsCert, *tlsKey, *tlsClientCA); err != nil {
			return usageErr("%v", err)
		}
	}
	s, err := sim.Start(cfg, *listen, *control)
	if err != nil {
		return fmt.Errorf("starting the simulator: %w", err)
	}
	fmt.Fprintf(stdout, "upstream simulator (%s, %s): API %s, control %s\n", cfg.Dialect, cfg.Format, s.URL(), s.ControlURL())
	<-ctx.Done()
	return s.Close()
}
