package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"gopkg.in/yaml.v3"
)

// Why a walk: Decoder.KnownFields(true) stops at the first unknown key and
// yaml.v3's type errors name the Go type, not the key. Walking the node tree
// against the yaml tags finds every unknown and duplicate key with its dotted
// path and line; decoding each leaf on its own makes a type error name its
// key. Leaves are decoded by yaml.v3 itself, so values mean what they would
// mean to a plain strict decode (Parse cross-checks that).

// walker decodes one document into a struct, collecting problems.
type walker struct {
	problems []error
	// origins maps a dotted key to where its value came from ("line 7").
	origins map[string]string
	// failed holds the keys whose value could not be decoded; they keep
	// their default, and validation errors about them are not reported.
	failed map[string]bool
}

func newWalker() *walker {
	return &walker{origins: map[string]string{}, failed: map[string]bool{}}
}

func (w *walker) problemf(line int, key, format string, a ...any) {
	w.problems = append(w.problems, fmt.Errorf("line %d: %s: %s", line, key, fmt.Sprintf(format, a...)))
}

// section decodes the mapping n into the struct v (addressable). A null
// node keeps the defaults, as yaml.v3 does.
func (w *walker) section(n *yaml.Node, v reflect.Value, key string) {
	n = deref(n)
	if isNull(n) {
		return
	}
	w.origins[key] = lineOf(n)
	if n.Kind != yaml.MappingNode {
		w.failed[key] = true
		w.problemf(n.Line, key, "must be a mapping, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		w.entry(n.Content[i], n.Content[i+1], v, key, seen)
	}
}

// entry decodes one key: value pair of a mapping into the struct v.
func (w *walker) entry(k, val *yaml.Node, v reflect.Value, parent string, seen map[string]int) {
	if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
		w.problemf(k.Line, where(parent), "keys must be plain strings (merge keys and complex keys are not supported)")
		return
	}
	key := join(parent, k.Value)
	if first, dup := seen[k.Value]; dup {
		w.problemf(k.Line, key, "duplicate key (first defined at line %d)", first)
		return
	}
	seen[k.Value] = k.Line
	i, ok := fieldIndex(v.Type(), k.Value)
	if !ok {
		w.problemf(k.Line, key, "unknown key%s", suggest(k.Value, fieldKeys(v.Type())))
		return
	}
	f := v.Field(i)
	if isSection(f.Type()) {
		w.section(val, f, key)
		return
	}
	w.leaf(val, f, key)
}

// leaf decodes a scalar value into the field v (addressable).
func (w *walker) leaf(n *yaml.Node, v reflect.Value, key string) {
	n = deref(n)
	w.origins[key] = lineOf(n)
	if err := decodeLeaf(n, v); err != nil {
		w.failed[key] = true
		if v.Type() == reflect.TypeFor[field.Secret]() {
			// yaml.v3 quotes the value in some errors ("cannot decode !!str
			// `…` as a !!int" for an explicit tag).
			err = errors.New("must be a plain string (the value is not shown)")
		}
		w.problemf(n.Line, key, "%s", err)
	}
}

func decodeLeaf(n *yaml.Node, v reflect.Value) error {
	if isNull(n) {
		return nil // keeps the default, as yaml.v3 does
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return decodeDuration(n, v)
	}
	if isInteger(v.Type()) && n.ShortTag() != "!!int" {
		// yaml.v3 would truncate 1.5 to 1 silently.
		return fmt.Errorf("must be an integer, got %s", describe(n))
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return cleanDecodeError(err)
	}
	return nil
}

func decodeDuration(n *yaml.Node, v reflect.Value) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("must be a duration with a unit such as \"5s\" or \"250ms\", got %s", describe(n))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a number with a unit such as \"5s\" or \"250ms\")", n.Value)
	}
	v.SetInt(int64(d))
	return nil
}

// cleanDecodeError drops yaml.v3's "line N: " prefixes: the caller adds the
// line and the key.
func cleanDecodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = trimLinePrefix(m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

func trimLinePrefix(msg string) string {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return msg
	}
	n, after, ok := strings.Cut(rest, ": ")
	if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
		return msg
	}
	return after
}

// describe names a node's kind and, for a scalar, its tag and value. It is
// only used for fields that failed to decode, so never for the token (any
// scalar decodes into a string).
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "an unsupported node"
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func lineOf(n *yaml.Node) string { return fmt.Sprintf("line %d", n.Line) }

func isTextUnmarshaler(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !isTextUnmarshaler(t)
}

func isInteger(t reflect.Type) bool {
	if isTextUnmarshaler(t) {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// yamlKey returns the key yaml.v3 uses for a struct field, or "" if the field
// is not decoded.
func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

func fieldIndex(t reflect.Type, key string) (int, bool) {
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" && k == key {
			return i, true
		}
	}
	return 0, false
}

func fieldKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// join names key under parent. A key that is empty or not a plain word is
// quoted, so that a message always names something ("line 1: \"\": unknown key").
func join(parent, key string) string {
	if !plainKey(key) {
		key = strconv.Quote(key)
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func where(key string) string {
	if key == "" {
		return "top level"
	}
	return key
}
