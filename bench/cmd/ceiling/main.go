// Command ceiling is the load benchmark's upper bound: a fasthttp server
// that answers every request with the same JSON body, shaped like the
// sidecar's cached validate answer, without looking at the request. It uses
// the sidecar's server settings that change the bytes on the wire (no Server
// and no Date header), so the difference between the two is the sidecar's
// own work per request.
//
// Usage: ceiling --listen 127.0.0.1:PORT
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
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
	flag.Parse()
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %q: %w", listen, err)
	}
	b := []byte(body)
	ct := []byte("application/json")
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.SetContentTypeBytes(ct)
			ctx.Response.SetBodyRaw(b)
		},
		Name:                  "ceiling",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		IdleTimeout:           90 * time.Second,
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
	if err := srv.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
