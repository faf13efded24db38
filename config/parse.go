package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/chittyos/chittyid-sidecar/config/field"
)

// Environment variables that override the file.
const (
	// EnvServiceURL overrides upstream.url.
	EnvServiceURL = "CHITTYID_SERVICE_URL"
	// EnvToken is the upstream token; upstream.tokenFile wins over it, and it
	// wins over upstream.token.
	EnvToken = "CHITTY_ID_TOKEN"
	// EnvListen overrides listen.
	EnvListen = "CHITTYID_SIDECAR_LISTEN"
)

// ErrEmpty means the config file holds no YAML document: it is empty or
// only comments, which is also what a file truncated mid-write looks like.
var ErrEmpty = errors.New("config file is empty")

// Load reads the file at path and parses it with Parse. The file must be a
// regular file of at most 1 MiB that no user other than this process's or
// root could have written (see EnvInsecureTrustWritableFiles). Its errors
// start with `loading config "path": `.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	f, err := readConfig(path, lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("loading config %q: %w", path, err)
	}
	c, err := f.parse(path, lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("loading config %q: %w", path, err)
	}
	return c, nil
}

// Parse decodes a config file strictly over Defaults, applies the
// environment overrides (read through lookupEnv, normally os.LookupEnv; nil
// means none, and a variable set to "" counts as unset), resolves the token
// and validates the result. It reads no file except upstream.tokenFile, the
// upstream.tls files and fleet.redis.passwordFile (a relative path is
// relative to the working directory).
//
// On any problem it returns a nil Config and an error joining every problem
// found (errors.Join), each naming its dotted key and, where known, "line N"
// or the environment variable the value came from. The error is ErrEmpty
// for a file without a document.
func Parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	c, _, err := parse(data, lookupEnv)
	return c, err
}

// parse is Parse; tokenInFile says the file itself set upstream.token.
func parse(data []byte, lookupEnv func(string) (string, bool)) (_ *Config, tokenInFile bool, _ error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, false, err
	}
	c := Defaults()
	w := newWalker()
	if err := w.document(root, reflect.ValueOf(&c).Elem()); err != nil {
		return nil, false, err
	}
	problems := w.problems
	if len(problems) == 0 {
		problems = appendIf(problems, strictDecode(data, c))
	}
	t, err := newTrust(lookupEnv)
	if err != nil {
		return nil, false, err
	}
	applyEnv(&c, lookupEnv, w.origins)
	problems = appendIf(problems, c.Tracing.ApplyEnv(lookupEnv,
		func(key string) bool { _, ok := w.origins[key]; return ok },
		func(key, source string) { w.origins[key] = source }))
	problems = appendIf(problems, t.resolveToken(&c, w.origins))
	problems = append(problems, annotate(c.Upstream.TLS.ReadFiles(), w.origins, w.failed)...)
	problems = appendIf(problems, t.resolvePassword(&c, w.origins))
	problems = append(problems, annotate(c.Fleet.Redis.TLS.CheckFiles(), w.origins, w.failed)...)
	problems = append(problems, annotate(t.checkTLSFiles(&c), w.origins, w.failed)...)
	problems = append(problems, annotate(c.Validate(), w.origins, w.failed)...)
	if len(problems) > 0 {
		return nil, false, errors.Join(problems...)
	}
	c.Warnings = t.warnings
	return &c, strings.HasPrefix(w.origins["upstream.token"], "line ") && c.Upstream.Token != "", nil
}

// parseDocument returns the root node of the file's only document.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrEmpty
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("line %d: config file must hold one YAML document, found a second one", next.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, ErrEmpty
	}
	return doc.Content[0], nil
}

// document decodes the root mapping into the Config v.
func (w *walker) document(root *yaml.Node, v reflect.Value) error {
	root = deref(root)
	if isNull(root) {
		return ErrEmpty
	}
	if root.Kind != yaml.MappingNode {
		// Not describe(root): if --config names the token file by mistake,
		// the scalar is the token.
		return fmt.Errorf("line %d: config file must be a mapping of keys, got a %s node", root.Line, root.ShortTag())
	}
	w.section(root, v, "")
	return nil
}

// strictDecode is the plain yaml.v3 strict decode (KnownFields) of the same
// file. It cross-checks the key walk, which must accept nothing that it
// rejects and decode the same values.
func strictDecode(data []byte, walked Config) error {
	c := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return err
	}
	if !reflect.DeepEqual(c, walked) {
		return errors.New("config: internal error: the key walk and yaml.v3 decoded different values")
	}
	return nil
}

// applyEnv applies the environment overrides and records where the values
// came from.
func applyEnv(c *Config, lookupEnv func(string) (string, bool), origins map[string]string) {
	if lookupEnv == nil {
		return
	}
	if v, ok := lookupEnv(EnvServiceURL); ok && v != "" {
		c.Upstream.URL = v
		origins["upstream.url"] = "env " + EnvServiceURL
	}
	if v, ok := lookupEnv(EnvListen); ok && v != "" {
		c.Listen = v
		origins["listen"] = "env " + EnvListen
	}
	if v, ok := lookupEnv(EnvToken); ok && strings.TrimSpace(v) != "" {
		c.Upstream.Token = field.Secret(strings.TrimSpace(v))
		origins["upstream.token"] = "env " + EnvToken
	}
}

// resolveToken makes c.Upstream.Token the effective token: the content of
// upstream.tokenFile if set, else what applyEnv or the file put there.
func (t *trust) resolveToken(c *Config, origins map[string]string) error {
	source := origins["upstream.token"] + ": upstream.token"
	if path := c.Upstream.TokenFile; path != "" {
		var err error
		if c.Upstream.Token, source, err = t.readSecretFile("upstream.tokenFile", path, origins); err != nil {
			return err
		}
	}
	if !isTokenText(c.Upstream.Token.Reveal()) {
		return fmt.Errorf("%s: the token must be visible ASCII characters without spaces", source)
	}
	return nil
}

// resolvePassword reads fleet.redis.passwordFile, if set, into
// c.Fleet.Redis.Password, as resolveToken reads the token file.
func (t *trust) resolvePassword(c *Config, origins map[string]string) error {
	path := c.Fleet.Redis.PasswordFile
	if path == "" {
		return nil
	}
	pw, source, err := t.readSecretFile("fleet.redis.passwordFile", path, origins)
	if err != nil {
		return err
	}
	if strings.ContainsAny(pw.Reveal(), "\r\n\x00") {
		return fmt.Errorf("%s: the password must be one line", source)
	}
	c.Fleet.Redis.Password = pw
	return nil
}

// isTokenText reports whether s can go into an Authorization header as is.
func isTokenText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// annotate flattens the joined validation errors, prefixes each field
// error with where its key's value came from, and drops those about keys
// that failed to decode, or that depend on one that did (the key holds the
// default, so the message would mislead). An error that names no key is
// kept as it is.
func annotate(err error, origins map[string]string, failed map[string]bool) []error {
	var out []error
	for _, e := range flatten(err) {
		fe, ok := field.Of(e)
		if !ok {
			out = append(out, e)
			continue
		}
		if failed[fe.Key] || failed[fe.Section()] || anyFailed(fe.Related, failed) {
			continue
		}
		if o, ok := origins[fe.Section()]; ok {
			e = fmt.Errorf("%s: %w", o, e)
		}
		out = append(out, e)
	}
	return out
}

func anyFailed(keys []string, failed map[string]bool) bool {
	for _, k := range keys {
		if failed[k] {
			return true
		}
	}
	return false
}

func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

func appendIf(errs []error, err error) []error {
	if err == nil {
		return errs
	}
	return append(errs, err)
}
