package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// maxMetadataDepth is how deeply metadata objects and arrays may nest.
const maxMetadataDepth = 8

// forbiddenKeys are metadata keys that pollute JavaScript prototypes in the
// apps that read metadata back.
var forbiddenKeys = [...]string{"__proto__", "constructor", "prototype"}

// decodeObject parses body as one JSON object into its members.
func decodeObject(body []byte, what string) (map[string]json.RawMessage, *apiError) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, newAPIError(codeBadRequest, what+" is empty: send a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, newAPIError(codeBadRequest, what+" must be a JSON object: "+jsonProblem(body, err))
	}
	return m, nil
}

// jsonProblem describes why body is not a JSON object, without echoing it.
func jsonProblem(body []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "got null"
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return "got a JSON " + te.Value
	}
	return "invalid JSON"
}

// stringField reads an optional string member; present reports whether it
// was there and not null.
func stringField(m map[string]json.RawMessage, key, prefix string) (s string, present bool, e *apiError) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, newAPIError(codeBadRequest, prefix+key+" must be a string")
	}
	return s, true, nil
}

// entityKeys are the names a mint body may give the entity under, read in
// this order: the 1.0.0 client's, the worker's, and the snake case some
// hand-built requests use.
var entityKeys = [...]string{"entity", "entityType", "entity_type"}

// decodeMint checks one mint request (docs/api.md). prefix names
// its place in a batch ("requests[2]."), or is empty. The entity may be
// any form ParseEntityName reads, under any of entityKeys (the first one
// present).
func decodeMint(m map[string]json.RawMessage, prefix string, maxMetadata int) (upstream.MintRequest, *apiError) {
	var req upstream.MintRequest
	var name string
	found := false
	for _, k := range entityKeys {
		v, ok, e := stringField(m, k, prefix)
		if e != nil {
			return req, e
		}
		if ok {
			name, found = v, true
			break
		}
	}
	if !found {
		return req, newAPIError(codeBadRequest, prefix+"entity is required (entity, entityType or entity_type): "+chittyid.EntityNames)
	}
	ent, err := chittyid.ParseEntityName(name)
	if err != nil {
		return req, newAPIError(codeUnsupportedEntity, prefix+err.Error())
	}
	req.Entity = ent
	var e *apiError
	if req.Name, _, e = stringField(m, "name", prefix); e != nil {
		return req, e
	}
	if raw, ok := m["metadata"]; ok && string(raw) != "null" {
		if e := checkMetadata(raw, prefix, maxMetadata); e != nil {
			return req, e
		}
		req.Metadata = raw
	}
	return req, nil
}

// queryEntityKeys are the query parameters a mint from the query may name
// the entity with (the worker's clients use type; for and entity_type
// occur too), read in this order.
var queryEntityKeys = [...]string{"type", "for", "entity_type"}

// decodeMintQuery reads a mint from a query (GET /api/get-chittyid): the
// entity as for a body, and the worker's optional region (1-9),
// jurisdiction (three letters) and trust (0-5), passed upstream where the
// dialect carries them. Values are checked, so nothing but these
// characters goes into the upstream request.
func decodeMintQuery(q *fasthttp.Args) (upstream.MintRequest, *apiError) {
	var req upstream.MintRequest
	var name []byte
	for _, k := range queryEntityKeys {
		if v := q.Peek(k); len(v) > 0 {
			name = v
			break
		}
	}
	if name == nil {
		return req, newAPIError(codeBadRequest, "type is required (type, for or entity_type): "+chittyid.EntityNames)
	}
	ent, err := chittyid.ParseEntityName(string(name))
	if err != nil {
		return req, newAPIError(codeUnsupportedEntity, err.Error())
	}
	req.Entity = ent
	for _, p := range [...]struct {
		key  string
		dst  *string
		ok   func(string) bool
		want string
	}{
		{"region", &req.Region, func(v string) bool { return len(v) == 1 && v[0] >= '1' && v[0] <= '9' }, "a digit 1-9"},
		{"jurisdiction", &req.Jurisdiction, isThreeLetters, "three letters (ISO 3166 alpha-3)"},
		{"trust", &req.Trust, func(v string) bool { return len(v) == 1 && v[0] >= '0' && v[0] <= '5' }, "a digit 0-5"},
	} {
		v := string(q.Peek(p.key))
		if p.key == "jurisdiction" {
			v = strings.ToUpper(v)
		}
		if v == "" {
			continue
		}
		if !p.ok(v) {
			return req, newAPIError(codeBadRequest, p.key+" must be "+p.want+", got "+clipQuote([]byte(v)))
		}
		*p.dst = v
	}
	return req, nil
}

func isThreeLetters(v string) bool {
	return len(v) == 3 && v[0] >= 'A' && v[0] <= 'Z' && v[1] >= 'A' && v[1] <= 'Z' && v[2] >= 'A' && v[2] <= 'Z'
}

// checkMetadata enforces the INVALID_METADATA rules (docs/api.md).
func checkMetadata(raw json.RawMessage, prefix string, maxBytes int) *apiError {
	bad := func(format string, a ...any) *apiError {
		return newAPIError(codeInvalidMetadata, prefix+"metadata "+fmt.Sprintf(format, a...))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return bad("must be a JSON object")
	}
	if len(raw) > maxBytes {
		return bad("is %d bytes, over the limit of %d", len(raw), maxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	depth := 0
	// inObject[d] says whether nesting level d is an object, whose next
	// string token (at an even position) is a key.
	var inObject [maxMetadataDepth + 2]bool
	var keyNext [maxMetadataDepth + 2]bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return bad("is not valid JSON")
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				depth++
				if depth > maxMetadataDepth {
					return bad("nests deeper than %d levels", maxMetadataDepth)
				}
				inObject[depth], keyNext[depth] = t == '{', t == '{'
				continue
			case '}', ']':
				depth--
			}
		case string:
			if inObject[depth] && keyNext[depth] {
				for _, k := range forbiddenKeys {
					if t == k {
						return bad("may not contain the key %q", k)
					}
				}
				keyNext[depth] = false
				continue
			}
		}
		// A value ended at this depth: the next string in an object is a key.
		if inObject[depth] {
			keyNext[depth] = true
		}
	}
}

// decodeBatch checks a batch body (docs/api.md).
func decodeBatch(body []byte, maxBatch, maxMetadata int) ([]upstream.MintRequest, *apiError) {
	m, e := decodeObject(body, "batch body")
	if e != nil {
		return nil, e
	}
	raw, ok := m["requests"]
	if !ok {
		return nil, newAPIError(codeBadRequest, `requests is required: {"requests":[{"entity":"PEO"}, …]}`)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, newAPIError(codeBadRequest, "requests must be an array of mint requests")
	}
	if len(items) == 0 {
		return nil, newAPIError(codeBadRequest, "requests is empty")
	}
	if len(items) > maxBatch {
		return nil, newAPIError(codeBadRequest, fmt.Sprintf("requests has %d items, over limits.maxBatch of %d", len(items), maxBatch))
	}
	out := make([]upstream.MintRequest, len(items))
	for i, it := range items {
		prefix := fmt.Sprintf("requests[%d].", i)
		im, e := decodeObject(it, prefix[:len(prefix)-1])
		if e != nil {
			return nil, e
		}
		if out[i], e = decodeMint(im, prefix, maxMetadata); e != nil {
			return nil, e
		}
	}
	return out, nil
}

// plainValidateBody reads the validate body apps send, one member "id" or
// "chittyId" whose value is a string without escapes or control
// characters, with optional white space: {"id":"…"}. It returns the value
// in place (no copy) and true, or false for any other body, which
// decodeValidateBody then reads (or refuses) in full. It accepts nothing
// decodeValidateBody would read otherwise.
func plainValidateBody(b []byte) ([]byte, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	key, i, ok := plainString(b, skipSpace(b, i+1))
	if !ok || string(key) != "id" && string(key) != "chittyId" {
		return nil, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return nil, false
	}
	val, i, ok := plainString(b, skipSpace(b, i+1))
	if !ok {
		return nil, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '}' || skipSpace(b, i+1) != len(b) {
		return nil, false
	}
	return val, true
}

// plainString reads a JSON string at b[i] that has no escape, control
// character or byte above 0x7e, and returns its content and the index after it.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// decodeValidateBody reads {"id": ID} or {"chittyId": ID}.
func decodeValidateBody(body []byte) (string, *apiError) {
	m, e := decodeObject(body, "validate body")
	if e != nil {
		return "", e
	}
	for _, k := range []string{"id", "chittyId"} {
		id, ok, e := stringField(m, k, "")
		if e != nil {
			return "", e
		}
		if ok {
			return id, nil
		}
	}
	return "", newAPIError(codeBadRequest, `id is required: {"id": "<ChittyID>"}`)
}
