// Command chittyid-injector is a mutating admission webhook that adds
// chittyid-sidecar to the pods that opt in (k8s/README.md). Exit codes: 0
// clean stop, 1 runtime failure, 2 usage or config error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chittyos/chittyid-sidecar/k8s/inject"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: chittyid-injector <command> [flags]

commands:
  serve --tls-cert-file F --tls-key-file F [--listen ADDR] [--config FILE]
          serve the webhook (POST /mutate, /mutate/namespace), /healthz,
          /readyz and /metrics over TLS
  dev     start a real etcd and kube-apiserver on loopback, the injector
          registered as their webhook, and show an annotated pod injected
  version print the version and Go version
`

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

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
		fmt.Fprintln(os.Stderr, "chittyid-injector:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{2, errors.New("no command given")}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "dev":
		return dev(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "chittyid-injector %s %s\n", version, runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return &exitError{2, fmt.Errorf("unknown command %q", cmd)}
	}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "address to serve TLS on (in a pod: :8443)")
	certFile := fs.String("tls-cert-file", "", "serving certificate (PEM), reloaded when it changes")
	keyFile := fs.String("tls-key-file", "", "its private key (PEM)")
	configFile := fs.String("config", "", "injector config file (YAML); without it, the component's defaults")
	reload := fs.Duration("cert-reload-interval", 10*time.Second, "how often to check the certificate files for a change")
	logFormat := fs.String("log-format", "json", "json or text")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if *certFile == "" || *keyFile == "" {
		return &exitError{2, errors.New("serve needs --tls-cert-file and --tls-key-file")}
	}
	log, err := newLogger(*logFormat, stderr)
	if err != nil {
		return &exitError{2, err}
	}
	cfg, err := inject.LoadConfig(*configFile)
	if err != nil {
		return &exitError{2, err}
	}
	in, err := inject.New(cfg)
	if err != nil {
		return &exitError{2, err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := inject.NewServer(in, inject.ServerConfig{CertFile: *certFile, KeyFile: *keyFile, CertReloadInterval: *reload}, reg, log)
	if err != nil {
		return &exitError{2, err}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	log.Info("chittyid-injector starting", "version", version, "image", cfg.Image)
	return srv.Serve(ctx, ln)
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}
