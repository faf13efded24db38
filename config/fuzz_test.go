package config_test

import (
	"encoding"
	"errors"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/chittyos/chittyid-sidecar/config"
)

// FuzzConfigParse feeds arbitrary files and environment values to Parse. It
// must never panic; a config it accepts passes Validate; a rejection is an
// error each of whose problems names a key (a known dotted key, or the key
// as written with its line), or says the file is empty or not YAML. Two
// messages mean the key walk and yaml.v3's strict decode disagree, which
// Parse promises never happens, so they fail too.
func FuzzConfigParse(f *testing.F) {
	keys := fuzzKnownKeys(reflect.TypeFor[config.Config](), "")
	f.Fuzz(func(t *testing.T, data []byte, envURL, envListen, envToken string) {
		if fuzzReadsOutsideDir(data) {
			t.Skip("a tokenFile or passwordFile outside the package directory")
		}
		env := map[string]string{config.EnvServiceURL: envURL, config.EnvListen: envListen, config.EnvToken: envToken}
		c, err := config.Parse(data, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok && v != ""
		})
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that fails Validate: %v\nfile: %q", verr, data)
			}
			return
		}
		if c != nil {
			t.Fatalf("Parse returned a config and the error %v", err)
		}
		if errors.Is(err, config.ErrEmpty) {
			return
		}
		for _, p := range fuzzProblems(err) {
			msg := p.Error()
			if strings.Contains(msg, "internal error") || strings.Contains(msg, "yaml: unmarshal errors") {
				t.Fatalf("the key walk accepted what the strict decode rejects: %v\nfile: %q", err, data)
			}
			if !fuzzNamesKey(msg, keys) {
				t.Fatalf("problem %q names no key and is not about the file\nfile: %q", msg, data)
			}
		}
	})
}

// fuzzProblems flattens a joined error into its problems.
func fuzzProblems(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, fuzzProblems(e)...)
	}
	return out
}

var (
	// fuzzWalkerProblem is a problem the key walk found, "line N: key: …",
	// naming the key as the file wrote it (it may be unknown).
	fuzzWalkerProblem = regexp.MustCompile(`^line [0-9]+: .+?: `)
	// fuzzKeyWord splits a message into candidate dotted keys.
	fuzzKeyWord = regexp.MustCompile(`[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*`)
)

// fuzzNamesKey reports whether a problem names a key, or is about the file
// as a whole: not YAML (yaml.v3's own "yaml: …" errors), more than one
// document, or not a mapping.
func fuzzNamesKey(msg string, keys map[string]bool) bool {
	switch {
	case strings.HasPrefix(msg, "yaml: "),
		strings.Contains(msg, "config file must hold one YAML document"),
		strings.Contains(msg, "config file must be a mapping of keys"),
		strings.HasPrefix(msg, "line ") && strings.Contains(msg, ": top level: "),
		fuzzWalkerProblem.MatchString(msg):
		return true
	}
	for _, w := range fuzzKeyWord.FindAllString(msg, -1) {
		if keys[w] {
			return true
		}
	}
	return false
}

// fuzzKnownKeys lists the dotted keys of the file format (sections and
// leaves) from the yaml tags, the way yaml.v3 names fields.
func fuzzKnownKeys(t reflect.Type, prefix string) map[string]bool {
	keys := map[string]bool{}
	text := reflect.TypeFor[encoding.TextUnmarshaler]()
	for i := range t.NumField() {
		fl := t.Field(i)
		name, _, _ := strings.Cut(fl.Tag.Get("yaml"), ",")
		if !fl.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(fl.Name)
		}
		key := prefix + name
		keys[key] = true
		if fl.Type.Kind() == reflect.Struct && !reflect.PointerTo(fl.Type).Implements(text) {
			for k := range fuzzKnownKeys(fl.Type, key+".") {
				keys[k] = true
			}
		}
	}
	return keys
}

// fuzzReadsOutsideDir reports whether the file sets a file Parse reads
// (upstream.tokenFile, upstream.tls.caFile, certFile, keyFile,
// fleet.redis.passwordFile; any key of those names, to be safe) to an
// absolute path or one with "..": a fuzzer must not read /dev/zero or
// /dev/stdin.
// Values are decoded as yaml.v3 would decode them (so !!binary and escapes
// count).
func fuzzReadsOutsideDir(data []byte) bool {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for range 4 {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return false
		}
		if fuzzTokenFileUnsafe(&doc, map[*yaml.Node]bool{}) {
			return true
		}
	}
	return false
}

// fuzzFileKeys are the keys whose value is a file Parse reads.
var fuzzFileKeys = map[string]bool{"tokenFile": true, "caFile": true, "certFile": true, "keyFile": true, "passwordFile": true}

func fuzzTokenFileUnsafe(n *yaml.Node, seen map[*yaml.Node]bool) bool {
	if n == nil || seen[n] {
		return false
	}
	seen[n] = true
	if n.Kind == yaml.AliasNode {
		return fuzzTokenFileUnsafe(n.Alias, seen)
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !fuzzFileKeys[n.Content[i].Value] {
				continue
			}
			v := n.Content[i+1]
			for i := 0; i < 16 && v.Kind == yaml.AliasNode && v.Alias != nil; i++ {
				v = v.Alias
			}
			var s string
			_ = v.Decode(&s)
			for _, p := range []string{s, v.Value} {
				if filepath.IsAbs(p) || strings.Contains(p, "..") || strings.HasPrefix(p, "~") {
					return true
				}
			}
		}
	}
	for _, c := range n.Content {
		if fuzzTokenFileUnsafe(c, seen) {
			return true
		}
	}
	return false
}
