package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"time"
)

// Outcomes of a TLS handshake, for metrics (HandshakeObserver) and
// TLSError.Kind.
const (
	HandshakeOK               = "ok"
	HandshakeUnknownAuthority = "unknown_authority" // the certificate's issuer is not trusted
	HandshakeNameMismatch     = "name_mismatch"     // the certificate is for other names
	HandshakeExpired          = "expired"           // the certificate expired or is not valid yet
	HandshakeBadCertificate   = "bad_certificate"   // the certificate is unusable for another reason
	HandshakeRefused          = "refused"           // upstream refused the handshake (an alert)
	HandshakeTimeout          = "timeout"           // no handshake within the dial timeout
	HandshakeError            = "error"             // anything else (not TLS, connection lost)
)

// HandshakeOutcomes lists every outcome a HandshakeObserver may hear.
func HandshakeOutcomes() []string {
	return []string{HandshakeOK, HandshakeUnknownAuthority, HandshakeNameMismatch, HandshakeExpired,
		HandshakeBadCertificate, HandshakeRefused, HandshakeTimeout, HandshakeError}
}

// TLSError is a failed TLS handshake with upstream, explained in words an
// operator can act on: what was wrong and which setting to look at. Kind
// is one of the Handshake* failure outcomes; Err is crypto/tls's error.
type TLSError struct {
	Kind string
	msg  string
	Err  error
}

func (e *TLSError) Error() string { return "TLS: " + e.msg }

// Unwrap returns crypto/tls's error, so errors.As finds the x509 error
// types beneath.
func (e *TLSError) Unwrap() error { return e.Err }

// explain turns a handshake error into a TLSError, in terms of the
// settings i and the handshake's timeout. It classifies by the error types
// of crypto/x509 and crypto/tls, never by message text.
func (i TLSInfo) explain(err error, timeout time.Duration) *TLSError {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		noRoots  x509.SystemRootsError
		record   tls.RecordHeaderError
	)
	e := &TLSError{Kind: HandshakeError, Err: err}
	switch {
	case errors.As(err, &unknown):
		e.Kind, e.msg = HandshakeUnknownAuthority, i.unknownAuthority(err, unknown.Cert)
	case errors.As(err, &noRoots):
		e.Kind, e.msg = HandshakeUnknownAuthority, "the system trust store could not be loaded; set upstream.tls.caFile to a PEM bundle of the CAs to trust"
	case errors.As(err, &hostname):
		e.Kind, e.msg = HandshakeNameMismatch, i.nameMismatch(hostname)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		e.Kind, e.msg = HandshakeExpired, expired(invalid.Cert)
	case errors.As(err, &invalid):
		e.Kind, e.msg = HandshakeBadCertificate, fmt.Sprintf("upstream's certificate %s cannot be used: %v", describeCert(invalid.Cert), invalid)
	case remoteAlert(err) != 0:
		e.Kind, e.msg = HandshakeRefused, i.refused(remoteAlert(err))
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		e.Kind, e.msg = HandshakeTimeout, fmt.Sprintf("upstream did not complete the TLS handshake within %s", timeout)
	case errors.As(err, &record):
		e.msg = "upstream did not answer in TLS: is upstream.url https:// pointed at a plain-HTTP port?"
	default:
		e.msg = fmt.Sprintf("the handshake with upstream failed: %v", err)
	}
	return e
}

// unknownAuthority explains a chain that ends at top, a certificate no
// trusted authority signed. It names upstream's own certificate (the
// first the server sent, from err), which is the one that could not be
// verified, and top too when that is another one (the CA or an
// intermediate the server sent along).
func (i TLSInfo) unknownAuthority(err error, top *x509.Certificate) string {
	leaf := top
	var v *tls.CertificateVerificationError
	if errors.As(err, &v) && len(v.UnverifiedCertificates) > 0 {
		leaf = v.UnverifiedCertificates[0]
	}
	trust, advice := "the system trust store", "for a private CA, set upstream.tls.caFile to its PEM bundle"
	if i.CAFile != "" {
		trust = fmt.Sprintf("upstream.tls.caFile %q", i.CAFile)
		advice = "add the issuing CA to that bundle, or check that upstream sends its intermediate certificates"
	}
	msg := fmt.Sprintf("upstream's certificate %s is not signed by a trusted authority (%s): ", describeCert(leaf), trust)
	if top != nil && leaf != nil && !top.Equal(leaf) {
		msg += fmt.Sprintf("the chain it sent ends at %q; ", top.Subject.String())
	}
	return msg + advice
}

func (i TLSInfo) nameMismatch(e x509.HostnameError) string {
	var names []string
	if c := e.Certificate; c != nil {
		for _, n := range c.DNSNames {
			names = append(names, "DNS:"+n)
		}
		for _, ip := range c.IPAddresses {
			names = append(names, "IP:"+ip.String())
		}
	}
	holds := "holds no subject alternative names (its common name is not used for matching)"
	if len(names) > 0 {
		holds = "is for " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("upstream's certificate %s, not %q: use one of its names in upstream.url, or set upstream.tls.serverName", holds, e.Host)
}

func expired(c *x509.Certificate) string {
	if c == nil {
		return "upstream's certificate is outside its validity period"
	}
	if time.Now().Before(c.NotBefore) {
		return fmt.Sprintf("upstream's certificate %s is not valid before %s: check this machine's clock", describeCert(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("upstream's certificate %s expired on %s", describeCert(c), c.NotAfter.UTC().Format(time.RFC3339))
}

// Alert numbers of RFC 8446 §6 that an explanation tells apart.
const (
	alertHandshakeFailure     = 40
	alertBadCertificate       = 42
	alertUnsupportedCert      = 43
	alertCertificateRevoked   = 44
	alertCertificateExpired   = 45
	alertCertificateUnknown   = 46
	alertUnknownCA            = 48
	alertAccessDenied         = 49
	alertProtocolVersion      = 70
	alertInsufficientSecurity = 71
	alertUnrecognizedName     = 112
	alertCertificateRequired  = 116
)

func (i TLSInfo) refused(alert uint8) string {
	msg := fmt.Sprintf("upstream refused the handshake (%s)", strings.TrimPrefix(tls.AlertError(alert).Error(), "tls: "))
	switch {
	case alert == alertProtocolVersion || alert == alertInsufficientSecurity:
		return msg + fmt.Sprintf(": it accepts none of the TLS versions offered (upstream.tls.minVersion %s)", i.MinVersion)
	case alert == alertUnrecognizedName:
		return msg + fmt.Sprintf(": it does not serve the name %q; check upstream.url or upstream.tls.serverName", i.ServerName)
	case handshakeAlert(alert): // the rest of them: the certificate alerts
		if i.ClientCert == nil {
			return msg + ": it may require a client certificate; set upstream.tls.certFile and upstream.tls.keyFile"
		}
		return msg + fmt.Sprintf(": it did not accept the client certificate %s (upstream.tls.certFile, valid until %s); check that upstream trusts its issuer",
			describeCert(i.ClientCert), i.ClientCert.NotAfter.UTC().Format(time.RFC3339))
	}
	return msg
}

// handshakeAlert reports whether an alert can only mean that upstream
// refused the handshake: the certificate alerts, and those about versions
// and names.
func handshakeAlert(alert uint8) bool {
	switch alert {
	case alertHandshakeFailure, alertBadCertificate, alertUnsupportedCert, alertCertificateRevoked, alertCertificateExpired,
		alertCertificateUnknown, alertUnknownCA, alertAccessDenied, alertCertificateRequired,
		alertProtocolVersion, alertInsufficientSecurity, alertUnrecognizedName:
		return true
	}
	return false
}

// remoteAlert returns the TLS alert upstream sent, or 0. crypto/tls
// reports one as a *net.OpError with Op "remote error" around a value of
// its unexported alert type (a uint8).
func remoteAlert(err error) uint8 {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 || v.Type().PkgPath() != "crypto/tls" {
		return 0
	}
	return uint8(v.Uint())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// describeCert names a certificate by subject and issuer.
func describeCert(c *x509.Certificate) string {
	if c == nil {
		return "(none)"
	}
	return fmt.Sprintf("%q (issued by %q)", c.Subject.String(), c.Issuer.String())
}
