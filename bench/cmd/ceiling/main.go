// Command ceiling is the load benchmark's upper bound: a fasthttp server
// that answers every request with the same JSON body, shaped like the
// sidecar's cached validate answer, without looking at the request. It uses
// the sidecar's server settings that change the bytes on the wire (no Server
// and no Date header), so the difference between the two is the sidecar's
// own work per request.
//
// With --server nethttp it answers the same bytes from Go's net/http
// server instead: the cost of the HTTP server library alone, for the
// choice of fasthttp (docs/architecture.md, "Why fasthttp").
//
// Usage: ceiling --listen 127.0.0.1:PORT [--server fasthttp|nethttp]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// body has the length and shape of a cached validate answer.
const body = `{"valid":true,"chittyId":"CT-A-AAA-0100-P-26-A-0","entity":"PEO"}`

func main() {
	listen := flag.String("listen", "127.0.0.1:8790", "address to serve on")
	server := flag.String("server", "fasthttp", "HTTP server library: fasthttp or nethttp")
	flag.Parse()
	if err := run(*listen, *server); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

// server is what run needs of either library's server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

func run(listen, library string) error {
	var srv server
	switch library {
	case "fasthttp":
		srv = fastServer()
	case "nethttp":
		srv = netServer()
	default:
		return fmt.Errorf("--server %q: want fasthttp or nethttp", library)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %q: %w", listen, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// fastAdapter gives fasthttp's server run's Shutdown.
type fastAdapter struct{ *fasthttp.Server }

func (f fastAdapter) Shutdown(ctx context.Context) error { return f.ShutdownWithContext(ctx) }

func fastServer() server {
	b := []byte(body)
	ct := []byte("application/json")
	return fastAdapter{&fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.SetContentTypeBytes(ct)
			ctx.Response.SetBodyRaw(b)
		},
		Name:                  "ceiling",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		IdleTimeout:           90 * time.Second,
	}}
}

// netAdapter gives net/http's server run's Serve, which ends with nil
// after Shutdown, as fasthttp's does.
type netAdapter struct{ *http.Server }

func (n netAdapter) Serve(ln net.Listener) error {
	if err := n.Server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// netServer answers the same bytes as fastServer: Content-Type and
// Content-Length, no Date (net/http sends no Server header).
func netServer() server {
	b := []byte(body)
	return netAdapter{&http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"application/json"}
			h["Date"] = nil
			_, _ = w.Write(b)
		}),
		IdleTimeout: 90 * time.Second,
	}}
}
