package sidecar

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chittyos/chittyid-sidecar/config"
	"github.com/valyala/fasthttp"
)

// accessLog writes one line per request (log.access): request ID, method,
// route, path, status, duration, X-Cache kind, the cache tier that
// answered (X-Cache-Tier, with the fleet tier on), caller and, for anything
// but plain success, a reason flag, all from the handler's result. With
// Options.LogOutput set and JSON logs, lines are encoded by hand and
// batched (no allocation on a cache hit); otherwise they go through the
// logger.
func (a *api) accessLog(ctx *fasthttp.RequestCtx, cfg *config.Config, res result, d time.Duration) {
	if !cfg.Log.Access || !a.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	rec := newAccessRecord(ctx, res, d)
	if a.sink != nil && cfg.Log.Format == "json" {
		bp := linePool.Get().(*[]byte)
		*bp = appendAccessJSON((*bp)[:0], &rec)
		a.sink.add(*bp)
		linePool.Put(bp)
		return
	}
	attrs := []slog.Attr{
		slog.String("type", "access"), slog.String("requestId", string(rec.requestID)),
		slog.String("method", string(rec.method)), slog.String("route", rec.route), slog.String("family", rec.family),
		slog.String("path", string(rec.path)), slog.Int("status", rec.status),
		slog.Float64("durationMs", float64(d.Microseconds())/1000),
	}
	for _, kv := range [...][2]string{{"cache", rec.cache}, {"tier", string(rec.tier)}, {"reason", rec.reason}, {"caller", string(rec.caller)}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// newAccessRecord is what the access line of a request says. Its byte
// slices are the request's and the response's own: no copy, so a cached
// validate's line allocates nothing.
func newAccessRecord(ctx *fasthttp.RequestCtx, res result, d time.Duration) accessRecord {
	rec := accessRecord{
		time: ctx.Time().Add(d), requestID: ctx.Response.Header.PeekCanonical(keyRequestID), method: ctx.Method(),
		route: routeNames[res.route], family: familyNames[res.family], path: ctx.Path(), status: ctx.Response.StatusCode(), duration: d,
		cache: xcNames[res.xc], tier: ctx.Response.Header.PeekCanonical(keyXCacheTier), reason: res.flag(),
	}
	if c := ctx.Request.Header.PeekCanonical(keyClientID); len(c) > 0 {
		rec.caller = callerOf(c)
	}
	if len(rec.path) > 128 {
		rec.path = rec.path[:128]
	}
	return rec
}

// lineSink batches log lines written at request rate. Writers append to a
// buffer under a mutex; Run flushes it every flushEvery, a writer that fills
// it flushes at once, and Close flushes what is left. Lines reach the
// stream up to flushEvery late, so they may interleave out of order with
// lines written to the stream directly.
type lineSink struct {
	// mu guards buf and serializes writes to out.
	mu  sync.Mutex
	buf []byte
	out io.Writer
}

const (
	flushEvery = 100 * time.Millisecond
	flushAt    = 32 << 10
)

func newLineSink(out io.Writer) *lineSink {
	return &lineSink{out: out, buf: make([]byte, 0, flushAt+1024)}
}

// add appends one line (it must end in '\\n').
func (s *lineSink) add(line []byte) {
	s.mu.Lock()
	s.buf = append(s.buf, line...)
	if len(s.buf) >= flushAt {
		s.flushLocked()
	}
	s.mu.Unlock()
}

func (s *lineSink) flushLocked() {
	if len(s.buf) == 0 {
		return
	}
	_, _ = s.out.Write(s.buf) // a failed log write has nowhere better to go
	s.buf = s.buf[:0]
}

// Flush writes out whatever is buffered.
func (s *lineSink) Flush() {
	s.mu.Lock()
	s.flushLocked()
	s.mu.Unlock()
}

// Run flushes every flushEvery until ctx ends, then once more.
func (s *lineSink) Run(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Flush()
		case <-ctx.Done():
			s.Flush()
			return
		}
	}
}

// linePool holds buffers for encoding access lines.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// accessRecord is what one access line says.
type accessRecord struct {
	time                    time.Time
	requestID, method, path []byte
	route, family           string
	status                  int
	duration                time.Duration
	cache, reason           string
	tier                    []byte // X-Cache-Tier, in the response's buffer
	caller                  []byte // in the request's buffer
}

// appendAccessJSON encodes r as one JSON line in the shape slog's JSON
// handler writes, without reflection or allocation.
func appendAccessJSON(b []byte, r *accessRecord) []byte {
	b = append(b, `{"time":"`...)
	b = r.time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","type":"access","requestId":`...)
	b = appendJSONString(b, r.requestID)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.method)
	b = append(b, `,"route":"`...)
	b = append(b, r.route...)
	b = append(b, `","family":"`...)
	b = append(b, r.family...)
	b = append(b, `","path":`...)
	b = appendJSONString(b, r.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.status), 10)
	b = append(b, `,"durationMs":`...)
	b = strconv.AppendFloat(b, float64(r.duration.Microseconds())/1000, 'f', -1, 64)
	if r.cache != "" {
		b = append(b, `,"cache":"`...)
		b = append(b, r.cache...)
		b = append(b, '"')
	}
	if len(r.tier) > 0 {
		b = append(b, `,"tier":`...)
		b = appendJSONString(b, r.tier)
	}
	if r.reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, r.reason...)
		b = append(b, '"')
	}
	if len(r.caller) > 0 {
		b = append(b, `,"caller":`...)
		b = appendJSONString(b, r.caller)
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// SyncWriter returns w guarded by a mutex, so that the logger and the
// sidecar's batched access lines, both writing to w, never interleave
// within a write (a pipe splits writes over 4 KiB between writers).
func SyncWriter(w io.Writer) io.Writer { return &syncWriter{w: w} }

type syncWriter struct {
	mu sync.Mutex // serializes Write
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
