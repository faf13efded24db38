package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// maxBatch caps the items of one client-v1 batch.
const maxBatch = 10_000

// mintRequest is a client-v1 mint request, alone or as a batch item.
type mintRequest struct {
	Entity   *string         `json:"entity"`
	Name     *string         `json:"name"`
	Metadata json.RawMessage `json:"metadata"`
}

// mintAnswer is the client-v1 mint answer.
type mintAnswer struct {
	ChittyID  string `json:"chittyId"`
	Entity    string `json:"entity"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
}

// batchAnswer is the client-v1 batch answer; Fallback only under the
// fallback fault.
type batchAnswer struct {
	ChittyIDs []string `json:"chittyIds"`
	Fallback  bool     `json:"fallback,omitempty"`
	ErrorCode string   `json:"errorCode,omitempty"`
}

// fallbackAnswer is the worker's HTTP 200 answer when its own minting failed.
type fallbackAnswer struct {
	Success   bool   `json:"success"`
	ChittyID  string `json:"chittyId"`
	Fallback  bool   `json:"fallback"`
	ErrorCode string `json:"errorCode"`
}

// badRequest is a 400 answer: an error code and a message.
type badRequest struct{ code, msg string }

func badJSON(err error) *badRequest {
	return &badRequest{"BAD_REQUEST", "malformed JSON: " + err.Error()}
}

// checkMint validates one client-v1 mint request.
func checkMint(r mintRequest) (chittyid.Entity, *badRequest) {
	if r.Entity == nil {
		return 0, &badRequest{"BAD_REQUEST", "entity is required: one of " + chittyid.EntityCodes}
	}
	e, err := chittyid.ParseEntity(*r.Entity)
	if err != nil {
		return 0, &badRequest{"UNSUPPORTED_ENTITY", err.Error()}
	}
	if m := bytes.TrimSpace(r.Metadata); len(m) > 0 && m[0] != '{' && string(m) != "null" {
		return 0, &badRequest{"INVALID_METADATA", "metadata must be an object"}
	}
	return e, nil
}

func (s *Sim) writeBad(ctx *fasthttp.RequestCtx, b *badRequest) {
	s.writeError(ctx, fasthttp.StatusBadRequest, b.code, b.msg)
}

// serveMint is client-v1 POST /v1/mint.
func (s *Sim) serveMint(ctx *fasthttp.RequestCtx, f applied) {
	var req mintRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeBad(ctx, badJSON(err))
		return
	}
	e, bad := checkMint(req)
	if bad != nil {
		s.writeBad(ctx, bad)
		return
	}
	if f.Mode == ModeFallback {
		s.writeFallback(ctx, f.fallbackCode(), e)
		return
	}
	format := s.mintFormat(f)
	s.answerKeyed(ctx, routeMint, func() []byte {
		now := s.now()
		id := s.issue(ctx, format, now, e)[0]
		return marshal(mintAnswer{ChittyID: id, Entity: e.String(), Timestamp: now.UTC().Format(time.RFC3339), Version: version})
	})
}

// serveBatch is client-v1 POST /v1/mint/batch: every item is checked before
// anything is minted.
func (s *Sim) serveBatch(ctx *fasthttp.RequestCtx, f applied) {
	var req struct {
		Requests []mintRequest `json:"requests"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeBad(ctx, badJSON(err))
		return
	}
	if len(req.Requests) == 0 || len(req.Requests) > maxBatch {
		s.writeBad(ctx, &badRequest{"BAD_REQUEST", fmt.Sprintf("requests must be an array of 1 to %d mint requests", maxBatch)})
		return
	}
	ents := make([]chittyid.Entity, len(req.Requests))
	for i, r := range req.Requests {
		e, bad := checkMint(r)
		if bad != nil {
			s.writeBad(ctx, &badRequest{bad.code, fmt.Sprintf("requests[%d]: %s", i, bad.msg)})
			return
		}
		ents[i] = e
	}
	if f.Mode == ModeFallback {
		now := s.now()
		ids := make([]string, len(ents))
		for i, e := range ents {
			ids[i] = fallbackID(f.fallbackCode(), e.TypeLetter(chittyid.FormatNumeric), now)
		}
		writeJSON(ctx, fasthttp.StatusOK, batchAnswer{ChittyIDs: ids, Fallback: true, ErrorCode: f.fallbackCode()})
		return
	}
	format := s.mintFormat(f)
	s.answerKeyed(ctx, routeBatch, func() []byte {
		return marshal(batchAnswer{ChittyIDs: s.issue(ctx, format, s.now(), ents...)})
	})
}

// serveValidate is client-v1 GET /v1/validate/{id}.
func (s *Sim) serveValidate(ctx *fasthttp.RequestCtx, _ applied) {
	id := validateID(ctx)
	ans := struct {
		Valid    bool   `json:"valid"`
		ChittyID string `json:"chittyId"`
		Entity   string `json:"entity,omitempty"`
		Reason   string `json:"reason,omitempty"`
	}{ChittyID: id}
	if e, ok := s.minted.lookup(id); ok {
		ans.Valid, ans.Entity = true, e.String()
	} else {
		ans.Reason = s.invalidReason(id)
	}
	writeJSON(ctx, fasthttp.StatusOK, ans)
}

// validateID is the URL-decoded {id} of /v1/validate/{id}. It is taken from
// the path as sent, so an encoded "/" stays part of the ID.
func validateID(ctx *fasthttp.RequestCtx) string {
	if rest, ok := strings.CutPrefix(string(ctx.Request.URI().PathOriginal()), validatePrefix); ok {
		if id, err := url.PathUnescape(rest); err == nil {
			return id
		}
	}
	return strings.TrimPrefix(string(ctx.Path()), validatePrefix)
}

func (s *Sim) invalidReason(id string) string {
	if s.cfg.Format.Check(id) != nil && otherFormat(s.cfg.Format).Check(id) != nil {
		return "not a well-formed ChittyID"
	}
	return "unknown ChittyID: not minted by this service"
}

// serveHealth is GET /v1/health (client-v1) and GET /health (worker). The
// worker's answers 200 whatever its mint backend does: health says
// "reachable", never "minting works".
func (s *Sim) serveHealth(ctx *fasthttp.RequestCtx, _ applied) {
	writeJSON(ctx, fasthttp.StatusOK, struct {
		Status    string `json:"status"`
		Service   string `json:"service"`
		Version   string `json:"version"`
		Timestamp string `json:"timestamp"`
		Dialect   string `json:"dialect"`
		Format    string `json:"format"`
	}{"ok", "chittyid-sim", version, s.now().UTC().Format(time.RFC3339), string(s.cfg.Dialect), s.cfg.Format.String()})
}

// writeFallback answers a mint with a fallback placeholder ID of code.
func (s *Sim) writeFallback(ctx *fasthttp.RequestCtx, code string, e chittyid.Entity) {
	writeJSON(ctx, fasthttp.StatusOK, fallbackAnswer{
		Success:   true,
		ChittyID:  fallbackID(code, e.TypeLetter(chittyid.FormatNumeric), s.now()),
		Fallback:  true,
		ErrorCode: code,
	})
}

// mintFormat is the format to mint in: the other one under badformat.
func (s *Sim) mintFormat(f applied) chittyid.Format {
	if f.Mode == ModeBadFormat {
		return otherFormat(s.cfg.Format)
	}
	return s.cfg.Format
}

// answerKeyed answers 200 with what mint returns, or, for a repeated
// Idempotency-Key, with the first answer to that key without minting again.
func (s *Sim) answerKeyed(ctx *fasthttp.RequestCtx, r route, mint func() []byte) {
	key := ctx.Request.Header.Peek("Idempotency-Key")
	if len(key) == 0 {
		writeBody(ctx, fasthttp.StatusOK, mint())
		return
	}
	body, replayed := s.keys.do(r.String()+" "+string(key), mint)
	if replayed {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
	}
	writeBody(ctx, fasthttp.StatusOK, body)
}

// issue mints one ID of format f per entity, dated now, for the request of
// ctx, and remembers them.
func (s *Sim) issue(ctx *fasthttp.RequestCtx, f chittyid.Format, now time.Time, ents ...chittyid.Entity) []string {
	return s.issueAt(ctx, f, now, placement{}, ents...)
}

// issueAt is issue with segments the request chose (the worker's region,
// jurisdiction and trust).
func (s *Sim) issueAt(ctx *fasthttp.RequestCtx, f chittyid.Format, now time.Time, at placement, ents ...chittyid.Entity) []string {
	ids := make([]string, len(ents))
	for i, e := range ents {
		ids[i] = at.apply(f, formatID(f, s.seq.Add(1)-1, e.TypeLetter(f), now))
	}
	s.minted.add(ids, ents)
	s.stats.minted.Add(int64(len(ids)))
	if s.cfg.OnMint != nil {
		s.cfg.OnMint(Mint{IDs: ids, IdempotencyKey: string(ctx.Request.Header.Peek("Idempotency-Key")),
			RequestID: string(ctx.Request.Header.Peek("X-Request-ID")), Time: time.Now()})
	}
	return ids
}

// marshal encodes an answer struct, which cannot fail.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sim: encoding %T: %v", v, err)) // a programmer error; serveAPI answers 503
	}
	return b
}
