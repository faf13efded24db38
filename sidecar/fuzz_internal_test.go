package sidecar

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// The body decoders are fuzzed against a reference written from docs/api.md
// (Local API) rather than from body.go: a recursive walk of the metadata, not the
// decoder's flat token loop. A request the reference accepts must be accepted
// with the same fields; one it rejects must be rejected with the code of the
// first rule broken (entity, then name, then metadata).

// fuzzDefaultLimits are the limits of an empty config file.
var fuzzDefaultLimits = config.Defaults().Limits

// fuzzMetaLimit maps a fuzzed number onto a metadata size limit: the
// default, or a small one the fuzzer can cross.
func fuzzMetaLimit(n uint16) int {
	if n == 0 {
		return fuzzDefaultLimits.MaxMetadataBytes
	}
	return int(n)
}

// fuzzMetaProblem is the reference check of one metadata value: "" if it is
// acceptable, otherwise what is wrong.
func fuzzMetaProblem(raw json.RawMessage, maxBytes int) string {
	if !bytes.HasPrefix(raw, []byte("{")) {
		return "not an object"
	}
	if len(raw) > maxBytes {
		return "too big"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	depth, forbidden, err := fuzzWalk(dec)
	switch {
	case err != nil:
		return "not JSON: " + err.Error()
	case depth > maxMetadataDepth:
		return "too deep"
	case forbidden:
		return "forbidden key"
	}
	if _, err := dec.Token(); err != io.EOF {
		return "trailing data"
	}
	return ""
}

// fuzzWalk reads one JSON value and returns how deeply containers nest in
// it (a scalar is 0, {} is 1) and whether any object in it has a key the
// apps' prototypes would trip on.
func fuzzWalk(dec *json.Decoder) (depth int, forbidden bool, err error) {
	tok, err := dec.Token()
	if err != nil {
		return 0, false, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return 0, false, nil
	}
	inner := 0
	for dec.More() {
		if d == '{' {
			k, err := dec.Token()
			if err != nil {
				return 0, false, err
			}
			switch k {
			case "__proto__", "constructor", "prototype":
				forbidden = true
			}
		}
		cd, cf, err := fuzzWalk(dec)
		if err != nil {
			return 0, false, err
		}
		inner, forbidden = max(inner, cd), forbidden || cf
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return 0, false, err
	}
	return inner + 1, forbidden, nil
}

// fuzzEntityNames are the entity names docs/api.md documents, upper-cased:
// the nine codes, the worker's letters and its words.
var fuzzEntityNames = map[string]chittyid.Entity{
	"PEO": chittyid.EntityPEO, "PLACE": chittyid.EntityPLACE, "PROP": chittyid.EntityPROP, "EVNT": chittyid.EntityEVNT,
	"AUTH": chittyid.EntityAUTH, "INFO": chittyid.EntityINFO, "FACT": chittyid.EntityFACT, "CONTEXT": chittyid.EntityCONTEXT,
	"ACTOR": chittyid.EntityACTOR,
	"P":     chittyid.EntityPEO, "L": chittyid.EntityPLACE, "T": chittyid.EntityPROP, "E": chittyid.EntityEVNT, "A": chittyid.EntityAUTH,
	"PERSON": chittyid.EntityPEO, "LOCATION": chittyid.EntityPLACE, "THING": chittyid.EntityPROP,
	"EVENT": chittyid.EntityEVNT, "AUTHORITY": chittyid.EntityAUTH,
}

// fuzzWantMint is the reference outcome of decodeMint for the members m:
// the request, or the error code.
func fuzzWantMint(m map[string]json.RawMessage, maxMeta int) (upstream.MintRequest, string) {
	var req upstream.MintRequest
	str := func(key string) (string, bool, bool) { // value, present, ok
		raw, found := m[key]
		if !found || string(raw) == "null" {
			return "", false, true
		}
		var s string
		err := json.Unmarshal(raw, &s)
		return s, true, err == nil
	}
	var name string
	present := false
	for _, k := range []string{"entity", "entityType", "entity_type"} { // the first present
		v, here, ok := str(k)
		if !ok {
			return req, codeBadRequest
		}
		if here {
			name, present = v, true
			break
		}
	}
	if !present {
		return req, codeBadRequest
	}
	ent, ok := fuzzEntityNames[strings.ToUpper(strings.TrimSpace(name))]
	if !ok {
		return req, codeUnsupportedEntity
	}
	req.Entity = ent
	var nameOK bool
	if req.Name, _, nameOK = str("name"); !nameOK {
		return req, codeBadRequest
	}
	if raw, found := m["metadata"]; found && string(raw) != "null" {
		if fuzzMetaProblem(raw, maxMeta) != "" {
			return req, codeInvalidMetadata
		}
		req.Metadata = raw
	}
	return req, ""
}

// fuzzObject is the reference decodeObject: the members of a JSON object,
// or false. Like the decoder, it ignores white space around the body
// (bytes.TrimSpace, which also drops \v, \f, U+0085 and U+00A0).
func fuzzObject(body []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(body), &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// fuzzCheckAPIError checks that a rejection is well formed: a code of the
// decoders' documented set, a message, and the code's status is 400.
func fuzzCheckAPIError(t *testing.T, e *apiError) {
	t.Helper()
	switch e.code {
	case codeBadRequest, codeUnsupportedEntity, codeInvalidMetadata:
	default:
		t.Fatalf("rejected with code %q, not one the body decoders document: %v", e.code, e)
	}
	if e.message == "" || codeStatus[e.code] != 400 || e.retryAfter != 0 {
		t.Fatalf("malformed rejection %+v", e)
	}
}

// fuzzCheckAccepted checks an accepted request against the documented
// limits directly: a valid entity, metadata absent or an object within
// maxMeta bytes, nesting at most maxMetadataDepth, no forbidden key.
func fuzzCheckAccepted(t *testing.T, req upstream.MintRequest, maxMeta int) {
	t.Helper()
	if !req.Entity.Valid() {
		t.Fatalf("accepted a request with entity %v", req.Entity)
	}
	if req.Metadata == nil {
		return
	}
	if p := fuzzMetaProblem(req.Metadata, maxMeta); p != "" {
		t.Fatalf("accepted metadata %q (limit %d bytes): %s", req.Metadata, maxMeta, p)
	}
}

func fuzzSameMint(t *testing.T, where string, got, want upstream.MintRequest) {
	t.Helper()
	if got.Entity != want.Entity || got.Name != want.Name || !bytes.Equal(got.Metadata, want.Metadata) {
		t.Fatalf("%s: decoded %+v, want %+v", where, got, want)
	}
}

// FuzzDecodeMint feeds arbitrary bodies to the mint decoder (decodeObject
// then decodeMint, as POST /v1/mint does) with the default or a small
// metadata limit.
func FuzzDecodeMint(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, limit uint16) {
		maxMeta := fuzzMetaLimit(limit)
		req, e := fuzzDecodeMint(body, maxMeta)
		m, isObject := fuzzObject(body)
		want, wantCode := upstream.MintRequest{}, codeBadRequest
		if isObject {
			want, wantCode = fuzzWantMint(m, maxMeta)
		}
		if e != nil {
			fuzzCheckAPIError(t, e)
			if e.code != wantCode {
				t.Fatalf("body %q rejected with %v, want code %q", body, e, wantCode)
			}
			return
		}
		if wantCode != "" {
			t.Fatalf("body %q accepted as %+v, want code %q", body, req, wantCode)
		}
		fuzzCheckAccepted(t, req, maxMeta)
		fuzzSameMint(t, "mint", req, want)
	})
}

func fuzzDecodeMint(body []byte, maxMeta int) (upstream.MintRequest, *apiError) {
	m, e := decodeObject(body, "mint body")
	if e != nil {
		return upstream.MintRequest{}, e
	}
	return decodeMint(m, "", maxMeta)
}

// FuzzDecodeBatch feeds arbitrary bodies to the batch decoder with the
// default limits or small fuzzed ones.
func FuzzDecodeBatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, batchLimit uint8, metaLimit uint16) {
		maxBatch, maxMeta := int(batchLimit), fuzzMetaLimit(metaLimit)
		if maxBatch == 0 {
			maxBatch = fuzzDefaultLimits.MaxBatch
		}
		reqs, e := decodeBatch(body, maxBatch, maxMeta)
		want, wantCode := fuzzWantBatch(body, maxBatch, maxMeta)
		if e != nil {
			fuzzCheckAPIError(t, e)
			if e.code != wantCode {
				t.Fatalf("batch %q rejected with %v, want code %q", body, e, wantCode)
			}
			return
		}
		if wantCode != "" {
			t.Fatalf("batch %q accepted as %+v, want code %q", body, reqs, wantCode)
		}
		if len(reqs) < 1 || len(reqs) > maxBatch || len(reqs) != len(want) {
			t.Fatalf("batch %q accepted with %d requests (limit %d), want %d", body, len(reqs), maxBatch, len(want))
		}
		for i := range reqs {
			fuzzCheckAccepted(t, reqs[i], maxMeta)
			fuzzSameMint(t, "batch item", reqs[i], want[i])
		}
	})
}

// fuzzWantBatch is the reference outcome of decodeBatch.
func fuzzWantBatch(body []byte, maxBatch, maxMeta int) ([]upstream.MintRequest, string) {
	m, ok := fuzzObject(body)
	if !ok {
		return nil, codeBadRequest
	}
	raw, found := m["requests"]
	if !found {
		return nil, codeBadRequest
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 || len(items) > maxBatch {
		return nil, codeBadRequest
	}
	out := make([]upstream.MintRequest, len(items))
	for i, it := range items {
		im, ok := fuzzObject(it)
		if !ok {
			return nil, codeBadRequest
		}
		var code string
		if out[i], code = fuzzWantMint(im, maxMeta); code != "" {
			return nil, code
		}
	}
	return out, ""
}

// FuzzCheckMetadata fuzzes the metadata rules on their own, with the
// precondition decodeMint guarantees: raw is one valid JSON value.
func FuzzCheckMetadata(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte, limit uint16) {
		if !json.Valid(raw) {
			return
		}
		raw = bytes.TrimSpace(raw) // a RawMessage from json.Unmarshal has no white space around it
		maxMeta := fuzzMetaLimit(limit)
		e := checkMetadata(raw, "", maxMeta)
		problem := fuzzMetaProblem(raw, maxMeta)
		switch {
		case e == nil && problem != "":
			t.Fatalf("metadata %q (limit %d) accepted, but it is %s", raw, maxMeta, problem)
		case e != nil && problem == "":
			t.Fatalf("metadata %q (limit %d) rejected: %v", raw, maxMeta, e)
		case e != nil && e.code != codeInvalidMetadata:
			t.Fatalf("metadata %q rejected with code %q, want %s", raw, e.code, codeInvalidMetadata)
		}
	})
}

// FuzzDecodeValidateBody feeds arbitrary bodies to POST /v1/validate's
// decoder: the ID is the string "id", else "chittyId"; anything else is
// BAD_REQUEST.
func FuzzDecodeValidateBody(f *testing.F) {
	for _, seed := range []string{`{"id":"CT-A-CHI-1234-I-24-A-0"}`, ` { "chittyId" : "x" } `, `{"id":"a\"b"}`, `{"id":"a","id":"b"}`, `{"id":1}`, `{"id":"é"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, e := decodeValidateBody(body)
		want, wantOK := fuzzWantValidateID(body)
		// The in-place reader of the usual body may decline any body, but
		// what it reads must be what the decoder reads.
		if plain, ok := plainValidateBody(body); ok && (!wantOK || string(plain) != want) {
			t.Fatalf("validate body %q read in place as %q, want %q (ok %v)", body, plain, want, wantOK)
		}
		if e != nil {
			fuzzCheckAPIError(t, e)
			if e.code != codeBadRequest || wantOK {
				t.Fatalf("validate body %q rejected with %v, want id %q", body, e, want)
			}
			return
		}
		if !wantOK || id != want {
			t.Fatalf("validate body %q gave id %q, want %q (ok %v)", body, id, want, wantOK)
		}
	})
}

func fuzzWantValidateID(body []byte) (string, bool) {
	m, ok := fuzzObject(body)
	if !ok {
		return "", false
	}
	for _, k := range []string{"id", "chittyId"} {
		raw, found := m[k]
		if !found || string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	}
	return "", false
}
