package config

import (
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/config/file"
)

// What the sidecar trusts on disk. The config file says where the token
// goes (upstream.url) and where it comes from (upstream.tokenFile), so
// whoever can write it, or the files it names, can take the token: each of
// them is read only if no one but this process's user or root could have
// written it (file.Check: the file and the directory of its target
// writable by the owner alone, owned by this user or root). Every file is
// read as a regular file only, without blocking, up to a size limit (see
// package file). docs/security.md, "What the sidecar trusts on disk", says
// the same for users.

// Size limits of the files the config reads.
const (
	// maxConfigBytes bounds the config file.
	maxConfigBytes = 1 << 20
	// maxSecretBytes bounds upstream.tokenFile and fleet.redis.passwordFile.
	maxSecretBytes = 8 << 10
)

// EnvInsecureTrustWritableFiles, set to true, makes Load, Parse and the
// Watcher use config, token, password and TLS files that another user
// could have written, with a warning for each, instead of refusing them.
// Whoever can write such a file can send the upstream token to a server of
// theirs. For the rare deployment whose files cannot be made private.
const EnvInsecureTrustWritableFiles = "CHITTYID_SIDECAR_INSECURE_TRUST_WRITABLE_FILES"

// trust judges the files the config reads and collects the warnings.
type trust struct {
	// anyway is EnvInsecureTrustWritableFiles: a file others could write
	// is a warning, not an error.
	anyway   bool
	warnings []string
}

// newTrust reads EnvInsecureTrustWritableFiles through lookupEnv (nil:
// none).
func newTrust(lookupEnv func(string) (string, bool)) (*trust, error) {
	t := &trust{}
	if lookupEnv == nil {
		return t, nil
	}
	v, ok := lookupEnv(EnvInsecureTrustWritableFiles)
	if !ok || v == "" {
		return t, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("env %s must be true or false, got %q", EnvInsecureTrustWritableFiles, v)
	}
	t.anyway = b
	return t, nil
}

// judge refuses the file at path, which what names ("upstream.tokenFile"),
// if another user could have written it (file.Check), or warns when the
// opt-out is set. secret says the file holds a secret: one that others may
// read is worth a warning.
func (t *trust) judge(what, path string, fi fs.FileInfo, secret bool) error {
	if err := file.Check(path, fi); err != nil {
		if !t.anyway {
			return err
		}
		t.warnf("%s: %v; used anyway because %s is set", what, err, EnvInsecureTrustWritableFiles)
	}
	if secret && file.OthersCanRead(fi) {
		t.warnf("%s %q holds a secret and every user may read it (mode %04o): make it 0600, or 0440 readable by the sidecar's group (in Kubernetes, the Secret volume's defaultMode: 0440 with the pod's fsGroup)", what, path, fi.Mode().Perm())
	}
	return nil
}

func (t *trust) warnf(format string, a ...any) {
	t.warnings = append(t.warnings, fmt.Sprintf(format, a...))
}

// readSecretFile reads the file at path, which key names, and returns its
// content, white space trimmed, and source, which says where the secret
// came from for the caller's own checks. An empty file is an error, and so
// is one t refuses. The content is never part of an error.
func (t *trust) readSecretFile(key, path string, origins map[string]string) (s field.Secret, source string, err error) {
	source = fmt.Sprintf("%s: %s: %q", origins[key], key, path)
	b, fi, err := file.Read(path, maxSecretBytes)
	if err == nil {
		err = t.judge(key, path, fi, true)
	}
	if err != nil {
		return "", source, fmt.Errorf("%s: %s: %w", origins[key], key, err)
	}
	if s = field.Secret(strings.TrimSpace(string(b))); s == "" {
		return "", source, fmt.Errorf("%s: file is empty", source)
	}
	return s, source, nil
}

// checkTLSFiles judges the TLS files c names (upstream.tls, and
// fleet.redis.tls when enabled, and the trace collector's, named by the
// environment), which their readers read themselves: a file others could
// write could make the sidecar trust another server, and send it the
// upstream token, the Redis password or the collector's headers. A file
// that cannot be stat'ed is left to its reader to report.
func (t *trust) checkTLSFiles(c *Config) error {
	type named struct {
		key, path string
		secret    bool   // a private key
		env       string // the environment variable that names it; "": key does
	}
	u, r, x := c.Upstream.TLS, c.Fleet.Redis.TLS, c.Tracing.Export.TLS
	files := []named{{"upstream.tls.caFile", u.CAFile, false, ""}, {"upstream.tls.certFile", u.CertFile, false, ""}, {"upstream.tls.keyFile", u.KeyFile, true, ""}}
	if r.Enabled {
		files = append(files, named{"fleet.redis.tls.caFile", r.CAFile, false, ""}, named{"fleet.redis.tls.certFile", r.CertFile, false, ""}, named{"fleet.redis.tls.keyFile", r.KeyFile, true, ""})
	}
	if c.Tracing.On() {
		files = append(files, named{"tracing.endpoint", x.CA, false, "OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE"},
			named{"tracing.endpoint", x.Cert, false, "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE"},
			named{"tracing.endpoint", x.Key, true, "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY"})
	}
	var errs field.Errors
	for _, f := range files {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		if err != nil {
			continue
		}
		what := f.key
		if f.env != "" {
			what = "env " + f.env
		}
		if err := t.judge(what, f.path, fi, f.secret); err != nil {
			if f.env != "" {
				err = fmt.Errorf("%s: %w", what, err)
			}
			errs.Add(f.key, "%v", err) // err starts with the quoted path, or the variable
		}
	}
	return errs.Join()
}

// configFile is the config file as read, before it is parsed.
type configFile struct {
	data []byte
	mode fs.FileMode
	// readable says every user may read it: a warning if it holds the token.
	readable bool
	// warnings are the trust warnings about the file itself.
	warnings []string
}

// readConfig reads the config file at path: a regular file of at most
// maxConfigBytes that no other user could have written (unless
// EnvInsecureTrustWritableFiles says to use it anyway).
func readConfig(path string, lookupEnv func(string) (string, bool)) (configFile, error) {
	t, err := newTrust(lookupEnv)
	if err != nil {
		return configFile{}, err
	}
	b, fi, err := file.Read(path, maxConfigBytes)
	if err == nil {
		err = t.judge("config file "+strconv.Quote(path), path, fi, false)
	}
	if err != nil {
		return configFile{}, err
	}
	return configFile{data: b, mode: fi.Mode(), readable: file.OthersCanRead(fi), warnings: t.warnings}, nil
}

// parse parses the file (Parse) and adds the warnings about the file
// itself to the config's.
func (f configFile) parse(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	c, tokenInFile, err := parse(f.data, lookupEnv)
	if err != nil {
		return nil, err
	}
	w := append([]string(nil), f.warnings...)
	if tokenInFile && f.readable {
		w = append(w, fmt.Sprintf("config file %q holds upstream.token and every user may read it (mode %04o): move the token to upstream.tokenFile, or make the file 0600 (0440 readable by the sidecar's group)", path, f.mode.Perm()))
	}
	c.Warnings = append(w, c.Warnings...)
	return c, nil
}
