package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/chittyos/chittyid-sidecar/sidecar/conn"
	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/valyala/fasthttp"
)

// The audit log: one line for every mint and batch that reaches the
// sidecar, whatever its outcome, and one for every mint answered (or never
// answered) after its caller gave up; also the one line of an upstream
// failure. The access log is in accesslog.go.

// audit is the record of one mint or batch request.
type audit struct {
	sh       shape // of the answers
	began    time.Time
	key      string // Idempotency-Key sent upstream
	entities []string
	metaLen  int
	metaSum  []byte
	ids      []string
	refused  []string // minted upstream but not handed out (wrong format)
	// placeholders are the fallback IDs upstream answered with instead of
	// minting: never real IDs, never handed out, recorded only here.
	placeholders []string
	attempts     int
	outcome      string // "ok", "orphaned", or the error code
	// upstreamErr is why upstream failed, for the log only (the caller
	// gets a fixed message); upstream redacts credentials from it.
	upstreamErr string
	// mayHaveMinted says an attempt's answer was lost after the request
	// may have reached upstream (upstream.MayHaveProcessed): upstream may
	// hold IDs nobody received, under the idempotency key.
	mayHaveMinted bool
	// fleetFailed says Redis failed the fleet mint limit's call for this
	// request: the minted IDs are not written to the fleet tier either.
	fleetFailed bool
	// halfClosed says the caller had sent FIN when the IDs came: whether
	// they were delivered is known once the answer is written.
	halfClosed bool
	// Filled in by writeAudit from the request, before it ends.
	requestID, caller string
	latency           time.Duration
}

func (a *api) newAudit(ctx *fasthttp.RequestCtx, sh shape) *audit {
	return &audit{began: time.Now(), key: idempotencyKey(ctx), outcome: "ok", sh: sh}
}

// requests records what was asked: the entities and the metadata's size and
// SHA-256 (never the metadata itself).
func (a *audit) requests(reqs []upstream.MintRequest) {
	h := sha256.New()
	for _, r := range reqs {
		if r.Entity.Valid() {
			a.entities = append(a.entities, r.Entity.String())
		}
		a.metaLen += len(r.Metadata)
		h.Write(r.Metadata)
	}
	if a.metaLen > 0 {
		a.metaSum = h.Sum(nil)
	}
}

// minted records IDs upstream produced. If the caller has reset its
// connection, the IDs cannot be delivered: the outcome is "orphaned", so no
// ID is silently lost. If it has sent FIN, it may have half-closed and
// still read the answer, or closed: writeAudit waits for the answer to be
// written to tell.
func (a *audit) minted(ctx *fasthttp.RequestCtx, ids ...string) {
	for _, id := range ids {
		if id != "" {
			a.ids = append(a.ids, id)
		}
	}
	if len(a.ids) == 0 {
		return
	}
	switch conn.Peer(ctx.Conn()) {
	case conn.PeerReset:
		a.outcome = "orphaned"
	case conn.PeerFIN:
		a.halfClosed = true
	}
}

// failUpstream answers an upstream failure and records why it failed.
func (a *audit) failUpstream(ctx *fasthttp.RequestCtx, err error, ids []*string) result {
	a.attempts = max(a.attempts, upstream.AttemptsOf(err))
	a.refused = upstream.RefusedIDs(err)
	a.placeholders = upstream.PlaceholdersOf(err)
	a.mayHaveMinted = upstream.MayHaveProcessed(err)
	a.upstreamErr = err.Error()
	return a.fail(ctx, fromUpstream(err), ids)
}

// fail answers with e and records its code (unless the IDs were orphaned).
func (a *audit) fail(ctx *fasthttp.RequestCtx, e *apiError, ids []*string) result {
	if a.outcome == "ok" {
		a.outcome = e.code
	}
	res := a.sh.fail(ctx, e, ids)
	res.attempts = a.attempts
	return res
}

// writeAudit writes the audit line, whatever the log level: audit lines go
// to the log stream with "type":"audit". For IDs minted after the caller
// sent FIN, the line waits until the answer has been written (see
// conn.Lazy.AfterAnswer): "ok" if it was, "orphaned" if the write failed
// or the caller reset the connection.
func (a *api) writeAudit(ctx *fasthttp.RequestCtx, au *audit) {
	au.requestID, au.caller = string(ctx.Response.Header.Peek(headerRequestID)), callerID(ctx)
	au.latency = time.Since(au.began)
	if lc, ok := ctx.Conn().(*conn.Lazy); ok && au.halfClosed {
		lc.AfterAnswer(func(delivered bool) {
			if !delivered {
				au.outcome = "orphaned"
			}
			a.emitAudit(au)
		})
		return
	}
	a.emitAudit(au)
}

// emitAudit writes au's audit line.
func (a *api) emitAudit(au *audit) {
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "mint", 0)
	rec.AddAttrs(
		slog.String("type", "audit"),
		slog.String("requestId", au.requestID),
		slog.String("idempotencyKey", au.key),
		slog.String("caller", au.caller),
		slog.Any("entities", au.entities),
		slog.String("outcome", au.outcome),
		slog.Any("ids", au.ids),
		slog.Any("refusedIds", au.refused),
		slog.Any("placeholderIds", au.placeholders),
		slog.Int("upstreamAttempts", au.attempts),
		slog.Float64("latencyMs", float64(au.latency.Microseconds())/1000),
		slog.Int("metadataBytes", au.metaLen),
	)
	if au.metaSum != nil {
		rec.AddAttrs(slog.String("metadataSha256", hex.EncodeToString(au.metaSum)))
	}
	if au.mayHaveMinted {
		rec.AddAttrs(slog.Bool("mayHaveMinted", true))
	}
	if au.upstreamErr != "" {
		rec.AddAttrs(slog.String("error", au.upstreamErr))
	}
	_ = a.log.Handler().Handle(context.Background(), rec) // a log write error has nowhere better to go
}

// lateMint records a mint attempt that its caller gave up on (the mint
// timed out). If upstream answered later, nobody received its IDs: they are
// logged as orphaned. If it never answered, whether it minted is unknown:
// the line says so, with the idempotency key that reconciles it.
func (s *Sidecar) lateMint(op, key string, info upstream.CallInfo, ids []string, err error) {
	msg, outcome := "mint answered after the caller's deadline", "orphaned"
	if err != nil {
		msg, outcome = "mint never answered: upstream may have minted IDs nobody received", "unknown"
	}
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
	rec.AddAttrs(
		slog.String("type", "audit"),
		slog.String("requestId", info.RequestID),
		slog.String("idempotencyKey", key),
		slog.String("op", op),
		slog.String("outcome", outcome),
		slog.Any("ids", ids),
	)
	if err != nil {
		rec.AddAttrs(slog.String("error", err.Error()))
	}
	_ = s.log.Handler().Handle(context.Background(), rec) // a log write error has nowhere better to go
}

// logUpstreamFailure logs why an upstream call failed, once per call (a
// validate's callers share one): the caller's answer carries a fixed
// message instead. An open breaker is routine while upstream is down, so it
// is logged at debug level only.
func (a *api) logUpstreamFailure(op, requestID string, err error) {
	level := slog.LevelWarn
	if errors.Is(err, upstream.ErrCircuitOpen) {
		level = slog.LevelDebug
	}
	a.log.LogAttrs(context.Background(), level, "upstream call failed",
		slog.String("op", op), slog.String("requestId", requestID), slog.String("error", err.Error()))
}
