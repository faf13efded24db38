package sidecar

import (
	"errors"
	"time"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream"
)

// logTransport logs how upstream is reached, at start and on every
// reload: a warning while requests cross the network unencrypted
// (upstream.allowInsecure), and the proxy and TLS settings in use.
func (s *Sidecar) logTransport(cfg *config.Config) {
	if w := cfg.Upstream.InsecureWarning(); w != "" {
		s.log.Warn("upstream connection is not encrypted", "warning", w)
	}
	client := s.client.Load()
	proxy, source := client.Proxy()
	info := client.TLS()
	attrs := []any{"tls", info.Enabled}
	if info.Enabled {
		attrs = append(attrs, "serverName", info.ServerName, "minVersion", info.MinVersion, "caFile", info.CAFile)
		if t := info.ClientCertNotAfter(); !t.IsZero() {
			attrs = append(attrs, "clientCertNotAfter", t.UTC().Format(time.RFC3339))
		}
	}
	if proxy != "" {
		attrs = append(attrs, "proxy", proxy, "proxyFrom", source)
	}
	s.log.Info("upstream transport", attrs...)
}

// transportTrouble logs a health poll's TLS or proxy failure when it
// first appears or its words change, so a broken trust setting shows in
// the log once, not at every poll. It runs on the poller's goroutine only.
func (s *Sidecar) transportTrouble(err error) {
	var te *upstream.TLSError
	var pe *upstream.ProxyError
	if !errors.As(err, &te) && !errors.As(err, &pe) {
		s.trouble.Store(nil)
		return
	}
	msg := err.Error()
	if last := s.trouble.Load(); last != nil && *last == msg {
		return
	}
	s.trouble.Store(&msg)
	s.log.Error("cannot reach upstream", "error", msg)
}
