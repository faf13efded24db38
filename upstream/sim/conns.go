package sim

import (
	"crypto/tls"
	"sync/atomic"
	"time"
)

// ConnStats counts the API listener's connections, as GET /sim/conns
// reports them: with Accepted and Handshakes a test or a benchmark sees
// whether its client keeps connections alive and resumes TLS sessions.
type ConnStats struct {
	// Accepted counts the API connections accepted.
	Accepted int64 `json:"accepted"`
	// Handshakes counts the TLS handshakes completed (with Config.TLS),
	// resumed ones included; Resumed counts those that resumed a session
	// (no certificate exchange); HandshakeErrors those that failed, such as
	// a client that did not trust the certificate or sent none when one
	// was required.
	Handshakes      int64 `json:"handshakes"`
	Resumed         int64 `json:"resumed"`
	HandshakeErrors int64 `json:"handshakeErrors"`
	// Open is how many API connections are open now (OpenConns).
	Open int `json:"open"`
}

// connCounters are the counters behind ConnStats.
type connCounters struct {
	accepted, handshakes, resumed, failed atomic.Int64
}

func (c *connCounters) reset() {
	c.accepted.Store(0)
	c.handshakes.Store(0)
	c.resumed.Store(0)
	c.failed.Store(0)
}

// Conns returns the connection counters since Start or the last Reset.
func (s *Sim) Conns() ConnStats {
	return ConnStats{
		Accepted:        s.conns.accepted.Load(),
		Handshakes:      s.conns.handshakes.Load(),
		Resumed:         s.conns.resumed.Load(),
		HandshakeErrors: s.conns.failed.Load(),
		Open:            s.OpenConns(),
	}
}

// handshake runs the server side of a TLS handshake on a new API
// connection, within the read timeout, and counts it; it reports whether
// it succeeded. Close and a refuse fault close the connection, which ends
// a handshake in progress.
func (s *Sim) handshake(tc *tls.Conn) bool {
	if err := tc.SetDeadline(time.Now().Add(readTimeout)); err != nil {
		s.conns.failed.Add(1)
		return false
	}
	if err := tc.Handshake(); err != nil {
		s.conns.failed.Add(1)
		return false
	}
	s.conns.handshakes.Add(1)
	if tc.ConnectionState().DidResume {
		s.conns.resumed.Add(1)
	}
	// The server sets its own read and write deadlines per request.
	return tc.SetDeadline(time.Time{}) == nil
}
