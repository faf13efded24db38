package upstream

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/config/file"
)

// TLS versions upstream.tls.minVersion accepts.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// TLSConfig is upstream.tls: how an https:// upstream is trusted and how
// the sidecar proves itself to it. The files are read by ReadFiles, which
// config.Parse calls at start and on every reload, so a rotated CA bundle
// or client certificate applies to new connections without a restart
// (docs/upstream.md, "Production upstream").
type TLSConfig struct {
	// CAFile is a PEM bundle of CA certificates that replaces the system
	// trust store (as curl --cacert does), for an upstream whose certificate
	// a private CA issued. Default "" (the system trust store).
	CAFile string `yaml:"caFile"`
	// CertFile is a PEM client certificate (intermediates may follow it),
	// for an upstream that requires mutual TLS; set with KeyFile or not at
	// all. Default "" (no client certificate).
	CertFile string `yaml:"certFile"`
	// KeyFile is the PEM private key of CertFile. Default "".
	KeyFile string `yaml:"keyFile"`
	// ServerName is the name the upstream's certificate must hold, also
	// sent as SNI. Default "" (the host of upstream.url).
	ServerName string `yaml:"serverName"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	// Default "1.2" ("" means that too).
	MinVersion string `yaml:"minVersion"`
	// Files is what CAFile, CertFile and KeyFile held when ReadFiles last
	// read them. It is not part of the file.
	Files TLSFiles `yaml:"-"`
}

// TLSFiles is the content of the TLS files. It is comparable, so a config
// whose files changed compares unequal to the one before.
type TLSFiles struct {
	CA   string       // PEM certificates
	Cert string       // PEM certificate chain
	Key  field.Secret // PEM private key; never printed
}

// setKeys names the keys of the section that are set (minVersion when it
// is not the default).
func (t TLSConfig) setKeys() []string {
	var keys []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"caFile", t.CAFile != ""}, {"certFile", t.CertFile != ""}, {"keyFile", t.KeyFile != ""},
		{"serverName", t.ServerName != ""}, {"minVersion", t.MinVersion != "" && t.MinVersion != TLSVersion12},
	} {
		if k.set {
			keys = append(keys, "upstream.tls."+k.key)
		}
	}
	return keys
}

// validate checks the section without reading the files.
func (t TLSConfig) validate() []error {
	var errs []error
	if t.MinVersion != "" && t.MinVersion != TLSVersion12 && t.MinVersion != TLSVersion13 {
		errs = append(errs, field.Errorf("upstream.tls.minVersion", "must be %q or %q, got %q", TLSVersion12, TLSVersion13, t.MinVersion))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, field.Errorf("upstream.tls.certFile", "and upstream.tls.keyFile must be set together (a client certificate and its key) or not at all").With("upstream.tls.keyFile"))
	}
	if t.ServerName != "" && !validServerName(t.ServerName) {
		errs = append(errs, field.Errorf("upstream.tls.serverName", "must be a host name or IP address without scheme or port, got %q", t.ServerName))
	}
	return errs
}

func validServerName(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '*') {
			return false
		}
	}
	return true
}

// ReadFiles reads CAFile, CertFile and KeyFile into Files and checks what
// they hold: at least one certificate in the CA bundle, a certificate and
// a key that belong together. Each file must be a regular file of at most
// 1 MiB (see package config/file). Each error names its key. Files of keys
// that are not set are left empty.
func (t *TLSConfig) ReadFiles() error {
	var errs []error
	read := func(key, path string) string {
		if path == "" {
			return ""
		}
		b, _, err := file.Read(path, file.MaxPEMBytes)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is in the message already
			}
			errs = append(errs, field.Errorf("upstream.tls."+key, "%q cannot be read: %v", path, err))
			return ""
		}
		return string(b)
	}
	t.Files = TLSFiles{CA: read("caFile", t.CAFile), Cert: read("certFile", t.CertFile), Key: field.Secret(read("keyFile", t.KeyFile))}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, err := t.material()
	return err
}

// tlsMaterial is the parsed content of the TLS files.
type tlsMaterial struct {
	roots *x509.CertPool // nil: the system trust store
	cert  *tls.Certificate
}

// material parses Files. An error names the key of the file at fault.
func (t TLSConfig) material() (tlsMaterial, error) {
	var m tlsMaterial
	if t.CAFile != "" {
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM([]byte(t.Files.CA)) {
			return m, field.Errorf("upstream.tls.caFile", "%q holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" && t.KeyFile != "" {
		pair, err := tls.X509KeyPair([]byte(t.Files.Cert), []byte(t.Files.Key.Reveal()))
		if err != nil {
			return m, field.Errorf("upstream.tls.certFile", "%q and upstream.tls.keyFile %q are not a certificate and its key: %v", t.CertFile, t.KeyFile, err).With("upstream.tls.keyFile")
		}
		m.cert = &pair
	}
	return m, nil
}

// trustKey identifies the settings that decide whether a server is
// trusted and what the sidecar presents: sessions resumed under one must
// not be resumed under another (see Sessions).
func (t TLSConfig) trustKey(serverName string) string {
	h := sha256.New()
	for _, s := range []string{serverName, t.MinVersion, t.Files.CA, t.Files.Cert, t.Files.Key.Reveal()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func tlsVersion(s string) uint16 {
	if s == TLSVersion13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// TLSInfo describes the client's TLS settings, for /health.
type TLSInfo struct {
	// Enabled says upstream.url is https.
	Enabled bool
	// ServerName is the name the upstream's certificate must hold.
	ServerName string
	// MinVersion is the oldest TLS version accepted ("1.2" or "1.3").
	MinVersion string
	// CAFile is upstream.tls.caFile; "" means the system trust store.
	CAFile string
	// ClientCert is the client certificate presented, nil if none.
	ClientCert *x509.Certificate
}

// ClientCertNotAfter is when the client certificate expires; zero without one.
func (i TLSInfo) ClientCertNotAfter() time.Time {
	if i.ClientCert == nil {
		return time.Time{}
	}
	return i.ClientCert.NotAfter
}
