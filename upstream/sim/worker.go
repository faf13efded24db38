package sim

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// The worker dialect, as the public service's worker behaves (see
// docs/upstream.md, "Upstream dialects"): it mints through a private backend,
// forwarding only entityType and Authorization, and answers every failure of
// that backend with an HTTP 200 fallback; it validates by format and
// checksum alone; its /health never asks the backend.

// The worker's ID rules (validateChittyId, isErrorId) for the numeric
// format, written from their description apart from the chittyid package,
// so that tests comparing the sidecar's local verdicts with the
// simulator's compare two readings of the rules. Compiled once, only read.
var (
	// workerID: VV two digits; G 1-9; LLL three capitals (ERR included);
	// SSSS four digits; T one of P L T E A; YYMM four digits; C 0-5; XX two
	// digits, the checksum.
	workerID = regexp.MustCompile(`^[0-9]{2}-[1-9]-[A-Z]{3}-[0-9]{4}-[PLTEA]-[0-9]{4}-[0-5]-[0-9]{2}$`)
	// workerErrorID: exactly G=0, LLL=ERR and SSSS <= 0099 (the code).
	workerErrorID = regexp.MustCompile(`^[0-9]{2}-0-ERR-(00[0-9]{2})-[PLTEA]-[0-9]{4}-[0-5]-[0-9]{2}$`)
)

// workerMintAnswer is the worker's answer to a mint that worked.
type workerMintAnswer struct {
	Success    bool   `json:"success"`
	ChittyID   string `json:"chittyId"`
	EntityType string `json:"entityType"`
}

// serveWorkerMint is worker POST /v1/mint. The entity is entityType or
// entity_type (a word or its letter); without either the worker mints a
// thing. The request's token is not checked here but by the mint backend,
// whose refusal is a fallback (0003), like its other failures. The
// Idempotency-Key is ignored: the worker does not forward it, so a repeated
// request mints again.
func (s *Sim) serveWorkerMint(ctx *fasthttp.RequestCtx, f applied) {
	var req struct {
		EntityType *string `json:"entityType"`
		Snake      *string `json:"entity_type"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeBad(ctx, badJSON(err))
		return
	}
	e := chittyid.EntityPROP
	if v := req.EntityType; v != nil || req.Snake != nil {
		if v == nil {
			v = req.Snake
		}
		var ok bool
		if e, ok = workerEntity(*v); !ok {
			s.writeBad(ctx, &badRequest{"BAD_REQUEST", "entityType must be one of person, place, thing, event, authority (or p, l, t, e, a)"})
			return
		}
	}
	if code, failed := s.backendFailure(ctx, f); failed {
		s.writeFallback(ctx, code, e)
		return
	}
	id := s.issueAt(ctx, s.mintFormat(f), s.now(), placementOf(ctx.QueryArgs()), e)[0]
	writeBody(ctx, fasthttp.StatusOK, marshal(workerMintAnswer{true, id, e.WorkerType()}))
}

// backendFailure reports whether the worker's mint backend fails this
// request, and the fallback code the worker then answers with: a status
// fault is the backend's status, the fallback fault its code, and a token
// the backend refuses is a 401, which the worker reports as 0003.
func (s *Sim) backendFailure(ctx *fasthttp.RequestCtx, f applied) (code string, failed bool) {
	switch {
	case f.Mode == ModeStatus:
		return statusFallbackCode(f.Status), true
	case f.Mode == ModeFallback:
		return f.fallbackCode(), true
	case !s.authorized(ctx):
		return codeRejected, true
	}
	return "", false
}

// statusFallbackCode is the fallback code the worker gives its mint
// backend's status: 429 rate limited, 400 invalid request, any other 4xx or
// 5xx rejected (401 included); anything else, which the worker cannot read
// as an ID, its own internal error.
func statusFallbackCode(status int) string {
	switch {
	case status == fasthttp.StatusTooManyRequests:
		return codeRateLimited
	case status == fasthttp.StatusBadRequest:
		return codeInvalidRequest
	case status >= 400:
		return codeRejected
	}
	return codeInternal
}

// fallbackCode is the code of a fallback fault: its ErrorCode, or 0001.
func (f *activeFault) fallbackCode() string {
	if f.ErrorCode != "" {
		return f.ErrorCode
	}
	return codeUnavailable
}

// isErrorCode reports whether s is a fallback code: four digits, 0000-0099.
func isErrorCode(s string) bool {
	return len(s) == 4 && s[0] == '0' && s[1] == '0' && isDigit(s[2]) && isDigit(s[3])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// workerVerdict is the worker's answer to POST /api/validate.
type workerVerdict struct {
	Success   bool   `json:"success"`
	Valid     bool   `json:"valid"`
	ChittyID  string `json:"chittyId,omitempty"`
	IsError   bool   `json:"isError,omitempty"`
	ErrorCode string `json:"errorCode,omitempty"`
	Error     string `json:"error,omitempty"`
}

// serveWorkerValidate is worker POST /api/validate: format and checksum
// only, minted here or not. An error (fallback) ID is answered as one.
func (s *Sim) serveWorkerValidate(ctx *fasthttp.RequestCtx, _ applied) {
	var req struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeBad(ctx, badJSON(err))
		return
	}
	if req.ID == nil {
		s.writeBad(ctx, &badRequest{"BAD_REQUEST", "id is required"})
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, s.workerValidate(*req.ID))
}

// workerValidate is the worker's verdict on id. With the official format
// configured (a simulator-only setting: the worker knows numeric IDs only)
// the shape alone decides.
func (s *Sim) workerValidate(id string) workerVerdict {
	v := workerVerdict{Success: true, ChittyID: id}
	if m := workerErrorID.FindStringSubmatch(id); m != nil {
		v.IsError, v.ErrorCode = true, m[1]
		v.Error = "error ID: minting failed with code " + m[1]
		return v
	}
	if s.cfg.Format == chittyid.FormatOfficial {
		v.Valid = chittyid.FormatOfficial.Check(id) == nil
	} else if v.Valid = workerID.MatchString(id); v.Valid {
		v.Valid = fmt.Sprintf("%02d", chittyid.NumericChecksum(id[:22])) == id[23:]
		if !v.Valid {
			v.Error = "invalid checksum"
		}
		return v
	}
	if !v.Valid {
		v.Error = "invalid ChittyID format"
	}
	return v
}

// placement is the segments of a numeric ID a worker mint may choose in
// its query: region (G, 1-9), jurisdiction (LLL, three letters) and trust
// (C, 0-5); empty ones, and anything malformed, are left as minted. IDs
// issued with a placement stay unique as long as fewer than 9,900 share
// the same one (the sequence segment's range).
type placement struct{ region, jurisdiction, trust string }

func placementOf(q *fasthttp.Args) placement {
	var p placement
	if v := string(q.Peek("region")); len(v) == 1 && v[0] >= '1' && v[0] <= '9' {
		p.region = v
	}
	if v := strings.ToUpper(string(q.Peek("jurisdiction"))); len(v) == 3 && strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" && v != "ERR" {
		p.jurisdiction = v
	}
	if v := string(q.Peek("trust")); len(v) == 1 && v[0] >= '0' && v[0] <= '5' {
		p.trust = v
	}
	return p
}

// apply writes p's segments into id, a numeric one (other formats have
// none of them), and its checksum anew.
func (p placement) apply(f chittyid.Format, id string) string {
	if f != chittyid.FormatNumeric || p == (placement{}) {
		return id
	}
	b := []byte(id)
	copy(b[3:4], p.region)
	copy(b[5:8], p.jurisdiction)
	copy(b[21:22], p.trust)
	putChecksum(b)
	return string(b)
}
