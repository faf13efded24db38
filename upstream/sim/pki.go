package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway certificate authority for serving the simulator over
// TLS in tests, dev mode and benchmarks: an ECDSA P-256 key made at run time
// that never leaves memory unless written with WriteFiles. Not for
// production.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	// CertPEM is Cert in PEM, what upstream.tls.caFile holds.
	CertPEM []byte
	key     crypto.Signer
}

// NewCA makes a CA whose certificate has the common name name, valid from
// an hour ago for a year.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: generating a CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"chittyid-sidecar throwaway CA"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sim: making the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sim: reading back the CA certificate: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key}, nil
}

// Pool returns a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// LeafSpec says what certificate Issue makes.
type LeafSpec struct {
	// Names are the DNS names and IP addresses the certificate holds; the
	// first is also its common name.
	Names []string
	// Client makes a client certificate (ExtKeyUsageClientAuth) instead of
	// a server one.
	Client bool
	// NotBefore and NotAfter bound its validity. Zero: an hour ago, and a
	// day after NotBefore's default.
	NotBefore, NotAfter time.Time
}

// Leaf is a certificate a CA issued, with its key.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte // the certificate, then the CA's (the chain a server sends)
	KeyPEM  []byte // PKCS #8
	// TLS is the pair ready for tls.Config.Certificates.
	TLS tls.Certificate
}

// Issue makes a certificate signed by the CA.
func (ca *CA) Issue(spec LeafSpec) (*Leaf, error) {
	if len(spec.Names) == 0 {
		return nil, errors.New("sim: a certificate needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: generating a key: %w", err)
	}
	now := time.Now()
	if spec.NotBefore.IsZero() {
		spec.NotBefore = now.Add(-time.Hour)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = now.Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.Names[0]},
		NotBefore:    spec.NotBefore,
		NotAfter:     spec.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if spec.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range spec.Names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("sim: issuing a certificate for %v: %w", spec.Names, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("sim: encoding a key: %w", err)
	}
	l := &Leaf{CertPEM: append(pemBlock("CERTIFICATE", der), ca.CertPEM...), KeyPEM: pemBlock("PRIVATE KEY", keyDER)}
	if l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
		return nil, fmt.Errorf("sim: pairing a certificate with its key: %w", err)
	}
	l.Cert = l.TLS.Leaf
	return l, nil
}

// ServerConfig returns TLS settings for Config.TLS that serve l and, with
// clientCA set, require a client certificate that clientCA issued.
func (l *Leaf) ServerConfig(clientCA *CA) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{l.TLS}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, clientCA.Pool()
	}
	return c
}

// WriteFiles writes the certificate chain and the key to dir as
// NAME.crt and NAME.key (the key readable by its owner only) and returns
// their paths.
func (l *Leaf) WriteFiles(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, l.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("sim: writing %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, l.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("sim: writing %s: %w", keyFile, err)
	}
	return certFile, keyFile, nil
}

// WriteFile writes the CA's certificate to path.
func (ca *CA) WriteFile(path string) error {
	if err := os.WriteFile(path, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("sim: writing %s: %w", path, err)
	}
	return nil
}

// ServerTLS reads the simulator's TLS settings from PEM files, as the
// upstream-sim flags give them: the server's certificate chain and key,
// and, if clientCAFile is not "", the CAs whose client certificates the
// simulator then requires.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("sim: loading the TLS certificate %q and key %q: %w", certFile, keyFile, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCAFile == "" {
		return c, nil
	}
	b, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("sim: reading the client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("sim: client CA file %q holds no PEM certificate", clientCAFile)
	}
	c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
	return c, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// serial is a random 128-bit serial number, as RFC 5280 asks.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)) // crypto/rand does not fail on supported platforms
	return n.Add(n, big.NewInt(1))
}
