package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/tracing"
)

// MintRequest is one ID to mint.
type MintRequest struct {
	Entity   chittyid.Entity
	Name     string          // optional
	Metadata json.RawMessage // optional JSON object, already checked by the caller
	// Region (a digit 1-9), Jurisdiction (three capital letters) and Trust
	// (a digit 0-5) are optional, checked by the caller, and sent only in
	// the worker dialect, which takes them from its mint's query.
	Region, Jurisdiction, Trust string
}

// workerMintPath is the worker's mint route with m's optional query.
func workerMintPath(m MintRequest) string {
	q := url.Values{}
	for k, v := range map[string]string{"region": m.Region, "jurisdiction": m.Jurisdiction, "trust": m.Trust} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(q) == 0 {
		return "/v1/mint"
	}
	return "/v1/mint?" + q.Encode()
}

// Minted is a minted ID as upstream reported it.
type Minted struct {
	ID     string // in the configured format, never carrying the credential
	Entity chittyid.Entity
	// Timestamp is upstream's, unchecked; "" if it sent none.
	Timestamp string
	// Version is upstream's when it looks like a version (see
	// versionShape) and does not carry the credential sent; "" otherwise.
	Version  string
	Attempts int // upstream attempts it took
}

// versionShape reports whether v looks like a version: 1 to 32 letters,
// digits, '.', '+', '_' or '-', with a digit ("1.4.2", "v2", "sim-1").
func versionShape(v string) bool {
	if len(v) == 0 || len(v) > 32 || !strings.ContainsAny(v, "0123456789") {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '+' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// relayedVersion is upstream's version as Minted carries it: "" unless it
// has a version's shape and does not carry the credential of auth.
func relayedVersion(v, auth string) string {
	if !versionShape(v) || exposes(v, auth) {
		return ""
	}
	return v
}

// mintBody is the request body in either dialect.
type mintBody struct {
	Entity     string          `json:"entity,omitempty"`
	EntityType string          `json:"entityType,omitempty"`
	Name       string          `json:"name,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

func (c *Client) mintBody(m MintRequest) mintBody {
	b := mintBody{Name: m.Name, Metadata: m.Metadata}
	if c.cfg.Dialect == DialectWorker {
		b.EntityType = m.Entity.WorkerType()
	} else {
		b.Entity = m.Entity.String()
	}
	return b
}

// mintAnswer is a mint reply in either dialect.
type mintAnswer struct {
	ChittyID  string    `json:"chittyId"`
	Snake     string    `json:"chitty_id"`
	Fallback  bool      `json:"fallback"`
	ErrorCode errorCode `json:"errorCode"`
	Timestamp string    `json:"timestamp"`
	Version   string    `json:"version"`
}

// isFallback says the answer is a fallback: flagged, with an error code, or
// carrying a placeholder ID.
func (a mintAnswer) isFallback() bool {
	return a.Fallback || a.ErrorCode != "" || isFallbackID(a.id())
}

func (a mintAnswer) id() string {
	if a.ChittyID != "" {
		return a.ChittyID
	}
	return a.Snake
}

// Mint mints one ID. key is the Idempotency-Key sent with every attempt
// (generated when empty). ctx bounds the whole mint, retries included.
func (c *Client) Mint(ctx context.Context, m MintRequest, key string, info CallInfo) (Minted, error) {
	auth, ok := c.authorization(info)
	if !ok {
		return Minted{}, callErr("mint", ErrUnauthorized, 0, "no token configured and none sent by the caller")
	}
	release, err := c.acquire(ctx, "mint")
	if err != nil {
		return Minted{}, err
	}
	defer release()
	body, err := json.Marshal(c.mintBody(m))
	if err != nil {
		return Minted{}, callErr("mint", ErrRejected, 0, "encoding the request: %v", err)
	}
	if key == "" {
		key = NewKey()
	}
	r := &request{op: "mint", method: "POST", path: c.base + "/mint", template: "/mint", body: body, auth: auth, idempotencyKey: key, info: info,
		late: func(body []byte) []string {
			var a mintAnswer
			if json.Unmarshal(body, &a) != nil || a.id() == "" || a.isFallback() {
				return nil
			}
			return []string{a.id()}
		}}
	if c.cfg.Dialect == DialectWorker {
		r.path, r.template = workerMintPath(m), "/v1/mint"
	}
	var ans mintAnswer
	res, err := c.call(ctx, r, c.cfg.IdempotentMint, func(res response) *CallError {
		ans = mintAnswer{}
		if err := json.Unmarshal(res.body, &ans); err != nil {
			return callErr("mint", ErrBadResponse, res.status, "answer is not JSON")
		}
		if ans.isFallback() {
			return fallbackErr("mint", fallbackCode(ans.ErrorCode, ans.id()), field.Redact(ans.id(), auth))
		}
		return c.checkMinted("mint", ans.id(), auth)
	})
	if err != nil {
		return Minted{}, scrub(err, auth)
	}
	return Minted{ID: ans.id(), Entity: m.Entity, Timestamp: ans.Timestamp, Version: relayedVersion(ans.Version, auth), Attempts: res.attempts}, nil
}

// checkMinted vets an ID upstream says it minted, for a call sent with
// auth. An ID that carries the credential is refused however it is
// shaped, and is refused redacted.
func (c *Client) checkMinted(op, id, auth string) *CallError {
	switch {
	case id == "":
		return callErr(op, ErrBadResponse, 200, "answer has no chittyId")
	case isFallbackID(id):
		return fallbackErr(op, fallbackCode("", id), id)
	case exposes(id, auth):
		e := callErr(op, ErrBadResponse, 200, "minted id %q carries the credential the request was sent with", clip(field.Redact(id, auth)))
		e.Refused = []string{clip(field.Redact(id, auth))}
		return e
	case c.format.Check(id) != nil:
		e := callErr(op, ErrBadResponse, 200, "minted id %q does not match the %s format", clip(id), c.format)
		e.Refused = []string{clip(id)}
		return e
	}
	return nil
}

// isFallbackID spots the worker's error (placeholder) IDs whatever format is
// configured: region 0, location ERR and a sequence of at most 0099, checksum
// or not. Location ERR with region 1-9 is an ordinary ID.
func isFallbackID(id string) bool {
	_, ok := chittyid.FallbackCode(id)
	return ok
}

// MintBatch mints len(ms) IDs and returns them in order. On failure it still
// returns every ID that was minted, with "" where none was, so no minted ID
// is lost; err then describes the first failure. client-v1 forwards the batch
// in one call; worker fans out single mints, at most upstream.maxInFlight at once.
func (c *Client) MintBatch(ctx context.Context, ms []MintRequest, key string, info CallInfo) ([]string, error) {
	if key == "" {
		key = NewKey()
	}
	if c.cfg.Dialect == DialectWorker {
		return c.fanOut(ctx, ms, key, info)
	}
	auth, ok := c.authorization(info)
	if !ok {
		return make([]string, len(ms)), callErr("mint batch", ErrUnauthorized, 0, "no token configured and none sent by the caller")
	}
	release, err := c.acquire(ctx, "mint batch")
	if err != nil {
		return make([]string, len(ms)), err
	}
	defer release()
	items := make([]mintBody, len(ms))
	for i, m := range ms {
		items[i] = c.mintBody(m)
	}
	body, err := json.Marshal(struct {
		Requests []mintBody `json:"requests"`
	}{items})
	if err != nil {
		return make([]string, len(ms)), callErr("mint batch", ErrRejected, 0, "encoding the request: %v", err)
	}
	r := &request{op: "mint batch", method: "POST", path: c.base + "/mint/batch", template: "/mint/batch", body: body, auth: auth, idempotencyKey: key, info: info,
		late: func(body []byte) []string {
			var a batchAnswer
			_ = json.Unmarshal(body, &a)
			var minted []string
			for _, id := range a.ChittyIDs {
				if id != "" && !isFallbackID(id) { // a placeholder is not an ID
					minted = append(minted, id)
				}
			}
			return minted
		}}
	ids := make([]string, len(ms))
	var partial *CallError
	_, err = c.call(ctx, r, c.cfg.IdempotentMint, func(res response) *CallError {
		var ans batchAnswer
		if err := json.Unmarshal(res.body, &ans); err != nil {
			return callErr("mint batch", ErrBadResponse, res.status, "answer is not JSON")
		}
		if len(ans.ChittyIDs) != len(ms) {
			return callErr("mint batch", ErrBadResponse, res.status, "asked for %d ids, got %d", len(ms), len(ans.ChittyIDs))
		}
		partial = nil
		var refused, placeholders []string
		minted := false
		for i, id := range ans.ChittyIDs {
			if ce := c.checkMinted("mint batch", id, auth); ce != nil {
				ids[i] = ""
				refused = append(refused, ce.Refused...)
				placeholders = append(placeholders, ce.Placeholders...)
				if partial == nil {
					partial = ce
				}
				continue
			}
			ids[i], minted = id, true
		}
		if partial != nil {
			partial.Refused, partial.Placeholders, partial.minted = refused, placeholders, minted
		}
		return partial
	})
	return ids, scrub(err, auth)
}

// batchAnswer is client-v1's batch reply. Each ID is vetted on its own
// (checkMinted): a placeholder among them is spotted by its shape.
type batchAnswer struct {
	ChittyIDs []string `json:"chittyIds"`
}

// fanOut mints a batch as single mints for the worker dialect, which has no
// batch route. Each item gets its own idempotency key derived from key.
func (c *Client) fanOut(ctx context.Context, ms []MintRequest, key string, info CallInfo) ([]string, error) {
	ids := make([]string, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() { // owned here: MintBatch waits for all of them
			defer wg.Done()
			got, err := c.Mint(ctx, m, key+"."+strconv.Itoa(i), info)
			ids[i], errs[i] = got.ID, err
		}()
	}
	wg.Wait()
	return ids, joinItemErrors(errs)
}

// joinItemErrors returns the first of a fanned-out batch's errors, carrying
// the refused and placeholder IDs of all of them, so the audit log misses
// none, and whether any may have been processed; nil if every item
// succeeded.
func joinItemErrors(errs []error) error {
	var first error
	var refused, placeholders []string
	lost := false
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		refused = append(refused, RefusedIDs(err)...)
		placeholders = append(placeholders, PlaceholdersOf(err)...)
		lost = lost || MayHaveProcessed(err)
	}
	var ce *CallError
	if !errors.As(first, &ce) {
		return first
	}
	joined := *ce
	joined.Refused, joined.Placeholders, joined.MayHaveProcessed = refused, placeholders, lost
	return &joined
}

// Verdict is upstream's answer to a validate.
type Verdict struct {
	Valid  bool
	Entity string // upstream's entity code, may be empty
	Reason string // why not valid, as upstream said, may be empty
}

// Validate asks upstream whether id is a real ID. It makes one attempt, or a
// few when no connection could be made, within ctx.
func (c *Client) Validate(ctx context.Context, id string, info CallInfo) (Verdict, error) {
	auth, ok := c.authorization(info)
	if !ok {
		return Verdict{}, callErr("validate", ErrUnauthorized, 0, "no token configured and none sent by the caller")
	}
	r := &request{op: "validate", method: "GET", path: c.base + "/validate/" + url.PathEscape(id), template: "/validate/{id}", auth: auth, info: info}
	if c.cfg.Dialect == DialectWorker {
		body, _ := json.Marshal(struct {
			ID string `json:"id"`
		}{id})
		r.method, r.path, r.template, r.body = "POST", "/api/validate", "/api/validate", body
	}
	var v Verdict
	_, err := c.call(ctx, r, true, func(res response) *CallError {
		var ans struct {
			Valid  *bool  `json:"valid"`
			Entity string `json:"entity"`
			Reason string `json:"reason"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(res.body, &ans); err != nil || ans.Valid == nil {
			return callErr("validate", ErrBadResponse, res.status, "answer has no boolean valid field")
		}
		v = Verdict{Valid: *ans.Valid, Entity: ans.Entity, Reason: clip(field.Redact(ans.Reason+ans.Error, auth))}
		return nil
	})
	return v, scrub(err, auth)
}

// Health makes one health poll: nil when the dialect's health route answers
// 2xx before ctx's deadline or upstream.timeout, whichever comes first. It
// does not go through the breaker. With tracing on, the poll is a trace of
// its own (its span the root), sampled by tracing.sampleRatio.
func (c *Client) Health(ctx context.Context) error {
	r := &request{op: "health", method: "GET", path: c.base + "/health", template: "/health"}
	if c.tracer.On() {
		var span tracing.Span
		ctx, span = c.tracer.StartRoot(ctx, c.spanName(r), tracing.KindClient)
		c.attemptAttributes(span, r, 1, "")
		defer func() { endAttempt(span, 0, nil) }()
	}
	ar := c.attempt(ctx, r, func(response) *CallError { return nil })
	if ar.err != nil {
		return ar.err
	}
	return nil
}

// upstreamMessage pulls a short message out of an error body, for the log
// (never for callers: upstream's text may echo what it was sent), with the
// credential of auth redacted before the text is cut short.
func upstreamMessage(body []byte, auth string) string {
	var ans struct {
		Message string `json:"message"`
		Error   any    `json:"error"`
	}
	if json.Unmarshal(body, &ans) == nil {
		if ans.Message != "" {
			return clip(field.Redact(ans.Message, auth))
		}
		if s, ok := ans.Error.(string); ok {
			return clip(field.Redact(s, auth))
		}
	}
	return "upstream refused the request"
}

// clip keeps upstream text short and printable before it reaches a caller.
func clip(s string) string {
	const n = 200
	if len(s) > n {
		s = s[:n]
	}
	for !utf8.ValidString(s) && s != "" {
		s = s[:len(s)-1]
	}
	return s
}
