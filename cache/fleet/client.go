package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"slices"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/config/file"
	"github.com/redis/rueidis"
)

// clientOption is the rueidis configuration of the tier.
//
//   - No client-side caching (DisableCache): the sidecar's own cache is
//     the local tier, and tracking would cost a connection mode and memory.
//   - Credentials come from AuthCredentialsFn, called for each new
//     connection, so that Reconfigure's username and password apply to
//     the next connection without rebuilding the client.
//   - Dial and handshake are bounded by Options.ConnectTimeout; calls are
//     bounded by their ctx (fleet.timeout). A read-only command (GET) that
//     meets a broken connection, as after a Redis restart, is retried on a
//     new one within that same ctx.
func (t *Tier) clientOption() rueidis.ClientOption {
	dialer := net.Dialer{Timeout: t.opts.ConnectTimeout}
	o := rueidis.ClientOption{
		InitAddress:       slices.Clone(t.cfg.Redis.Addrs),
		SelectDB:          t.cfg.Redis.DB,
		TLSConfig:         t.tls,
		Dialer:            dialer,
		DialCtxFn:         t.dialConn,
		AuthCredentialsFn: t.credentials,
		ClientName:        t.opts.ClientName,
		ClientSetInfo:     rueidis.DisableClientSetInfo,
		DisableCache:      true,
		ConnWriteTimeout:  t.opts.ConnectTimeout,
		// One connection per server: rueidis pipelines concurrent calls on
		// it, and a sidecar's fleet traffic is far below what one carries.
		PipelineMultiplex: -1,
	}
	switch {
	case t.cfg.Redis.Sentinel.MasterName != "":
		o.Sentinel = rueidis.SentinelOption{MasterSet: t.cfg.Redis.Sentinel.MasterName, Dialer: dialer,
			TLSConfig: t.tls, ClientName: t.opts.ClientName}
	case !t.cfg.cluster():
		// One address is a standalone server: no CLUSTER probing at
		// each connection attempt.
		o.ForceSingleClient = true
	}
	return o
}

// pinned is the tier's rueidis client with every command pinned, so that
// rueidis never puts it back in its pool. rueidis v1.0.80 recycles a
// command once the call that sent it returns, and a retryable command
// (GET, the lock scripts) that met a broken connection and was sent again
// on a new one may then still be read by the broken connection's writer,
// draining its queue: a data race, and the pooled command rebuilt for
// another call meanwhile (the race detector found it in the network drill,
// sidecar/netdrill_test.go). The tier sends few commands, none on the
// cached validate's path: each becomes garbage instead.
type pinned struct{ rueidis.Client }

// Do sends cmd pinned.
func (p pinned) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	return p.Client.Do(ctx, cmd.Pin())
}

// dialConn dials as rueidis would (TCP, then TLS with tlsConfig if set),
// then checks that the server answers (checkAlive).
func (t *Tier) dialConn(ctx context.Context, addr string, d *net.Dialer, tlsConfig *tls.Config) (net.Conn, error) {
	var c net.Conn
	var err error
	if tlsConfig != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if err := checkAlive(ctx, c, d.Timeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// pingCmd is PING in RESP, valid before HELLO and AUTH.
const pingCmd = "*1\r\n$4\r\nPING\r\n"

// checkAlive makes sure a new connection reaches a server that answers:
// it sends PING and waits, within ctx and limit, for the one-line reply
// (+PONG, or an error such as -NOAUTH: either way the server is alive).
//
// Why: a server that accepts connections but does not answer (hung,
// SIGSTOPped, a proxy without its backend) would otherwise fail rueidis'
// handshake, and rueidis can then take up to a second to close the
// half-made connection, while every caller that needs a connection waits
// for it whatever its ctx. A failed dial returns at once.
func checkAlive(ctx context.Context, c net.Conn, limit time.Duration) error {
	dl := time.Now().Add(limit)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if err := c.SetDeadline(dl); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(c, pingCmd); err != nil {
		return fmt.Errorf("sending PING: %w", err)
	}
	// The server sends nothing else before the next command, so reading
	// past the line is impossible.
	var buf [128]byte
	for n := 0; ; {
		m, err := c.Read(buf[n:])
		if err != nil {
			return fmt.Errorf("waiting for the answer to PING: %w", err)
		}
		if bytes.IndexByte(buf[n:n+m], '\n') >= 0 {
			break
		}
		if n += m; n == len(buf) {
			return errors.New("waiting for the answer to PING: no line in 128 bytes")
		}
	}
	if !stop() {
		return ctx.Err()
	}
	return c.SetDeadline(time.Time{})
}

// credentials returns the current username and password for a new
// connection. rueidis asks it for connections to the sentinels too: a
// sentinel without a password accepts any password for the default user
// (HELLO AUTH default …), one with requirepass needs the same password.
func (t *Tier) credentials(rueidis.AuthCredentialsContext) (rueidis.AuthCredentials, error) {
	s := t.live.Load()
	return rueidis.AuthCredentials{Username: s.username, Password: s.password.Reveal()}, nil
}

// CheckFiles reads the CA and client certificate files as the tier will
// when it starts, so that a config loader can refuse a config whose files
// do not load (each error names its key).
func (c TLS) CheckFiles() error {
	_, err := loadTLS(c)
	return err
}

// loadTLS builds the client TLS config, reading the CA and client
// certificate files once, each a regular file of at most 1 MiB (see
// package config/file).
func loadTLS(c TLS) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := readPEM("fleet.redis.tls.caFile", c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, field.Errorf("fleet.redis.tls.caFile", "%q holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" && c.KeyFile != "" { // one without the other: Validate says so
		certPEM, err := readPEM("fleet.redis.tls.certFile", c.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readPEM("fleet.redis.tls.keyFile", c.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, field.Errorf("fleet.redis.tls.certFile", "and fleet.redis.tls.keyFile do not load as a key pair: %v", err).With("fleet.redis.tls.keyFile")
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// readPEM reads the TLS file at path, which key names.
func readPEM(key, path string) ([]byte, error) {
	b, _, err := file.Read(path, file.MaxPEMBytes)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, field.Errorf(key, "%q cannot be read: %v", path, err)
	}
	return b, nil
}
