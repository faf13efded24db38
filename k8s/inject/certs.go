package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// certReloader serves the certificate of two files and reloads it when
// they change (cert-manager renewing a Secret, the kubelet updating the
// mounted files): each TLS handshake takes the certificate in use then, so
// connections already open stay as they are and new ones get the new
// certificate. Files that do not load leave the old certificate in use.
type certReloader struct {
	certFile, keyFile string
	metrics           *metrics
	log               *slog.Logger

	cur atomic.Pointer[tls.Certificate]
	// certPEM and keyPEM are the files' content behind cur, compared on
	// each check; only the owner of run touches them.
	certPEM, keyPEM []byte
}

func newCertReloader(certFile, keyFile string, m *metrics, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, metrics: m, log: log}
	if _, err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check reads both files and, when they changed, loads them. It reports
// whether a new certificate is in use.
func (c *certReloader) check() (bool, error) {
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return false, fmt.Errorf("reading the TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return false, fmt.Errorf("reading the TLS key: %w", err)
	}
	if bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("loading the TLS certificate %q and key %q: %w", c.certFile, c.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false, fmt.Errorf("parsing the TLS certificate %q: %w", c.certFile, err)
	}
	cert.Leaf = leaf
	c.cur.Store(&cert)
	c.certPEM, c.keyPEM = certPEM, keyPEM
	c.metrics.certNotAfter.Set(float64(leaf.NotAfter.Unix()))
	return true, nil
}

// run checks the files every interval until ctx is done.
func (c *certReloader) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := c.check()
		switch {
		case err != nil:
			// A Secret update swaps both files at once, but a reader can
			// still fall between them: the next check tries again.
			c.metrics.certReloads.WithLabelValues("error").Inc()
			c.log.Warn("TLS certificate not reloaded; the old one stays in use", "err", err)
		case changed:
			c.metrics.certReloads.WithLabelValues("ok").Inc()
			leaf := c.cur.Load().Leaf
			c.log.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "notAfter", leaf.NotAfter)
		}
	}
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}
