package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
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

// decodeMint checks one mint request (README.md, Local API). prefix names its place in
// a batch ("requests[2]."), or is empty.
func decodeMint(m map[string]json.RawMessage, prefix string, maxMetadata int) (upstream.MintRequest, *apiError) {
	var req upstream.MintRequest
	code, ok, e := stringField(m, "entity", prefix)
	if e != nil {
		return req, e
	}
	if !ok {
		return req, newAPIError(codeBadRequest, prefix+"entity is required: one of "+chittyid.EntityCodes)
	}
	ent, err := chittyid.ParseEntity(code)
	if err != nil {
		return req, newAPIError(codeUnsupportedEntity, prefix+err.Error())
	}
	req.Entity = ent
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

// checkMetadata enforces the INVALID_METADATA rules (README.md, Local API).
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

// decodeBatch checks a batch body (README.md, Local API).
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
