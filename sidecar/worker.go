package sidecar

import (
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/resolve"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/valyala/fasthttp"
)

// The worker-style local API: the routes of the newest service's public
// worker (/api/get-chittyid, /generate, /api/validate, /api/health,
// /api/spec), served beside the 1.0.0 client's so that an app written for
// either points its base URL at the sidecar and changes nothing else
// (docs/api.md, "Which client, which base URL"). They go through the same
// handlers, cache, breaker, limits, audit and metrics; only the shape of
// their answers differs.

// stamps formats request times for worker answers, RFC 3339 in whole
// seconds, once a second: a cached validate's answer then costs no time
// formatting.
type stamps struct{ last atomic.Pointer[stamp] }

type stamp struct {
	sec  int64
	text []byte
}

// at returns t formatted; the bytes are shared: never write to them.
func (s *stamps) at(t time.Time) []byte {
	sec := t.Unix()
	if p := s.last.Load(); p != nil && p.sec == sec {
		return p.text
	}
	p := &stamp{sec: sec, text: t.UTC().AppendFormat(nil, time.RFC3339)}
	s.last.Store(p)
	return p.text
}

// Pieces of a worker-shaped validate answer, written around the 1.0.0
// answer's (see writeVerdict).
var (
	bodyWorkerPrefix  = []byte(`{"success":true,`)
	bodyComponents    = []byte(`,"components":{"version":"`)
	bodyTimestamp     = []byte(`,"timestamp":"`)
	bodyWorkerEnd     = []byte(`"}`)
	componentsClosing = []byte(`"}`)
)

// numericComponents are the segments of a numeric ID as the worker names
// them, with their offsets: VV-G-LLL-SSSS-T-YYMM-C-XX.
var numericComponents = [...]struct {
	sep        string // what comes before the value (the first follows bodyComponents)
	start, end int
}{
	{"", 0, 2},
	{`","region":"`, 3, 4},
	{`","jurisdiction":"`, 5, 8},
	{`","sequential":"`, 9, 13},
	{`","entityType":"`, 14, 15},
	{`","yearMonth":"`, 16, 20},
	{`","trustLevel":"`, 21, 22},
	{`","checksum":"`, 23, 25},
}

// appendComponents appends the "components" object of a numeric ID, which
// has passed the format check.
func appendComponents(ctx *fasthttp.RequestCtx, id []byte) {
	ctx.Response.AppendBody(bodyComponents)
	for _, c := range numericComponents {
		ctx.Response.AppendBodyString(c.sep)
		ctx.Response.AppendBody(id[c.start:c.end])
	}
	ctx.Response.AppendBody(componentsClosing)
}

// reasonText is the worker's "error" text of a "not valid" answer.
var reasonText = map[string]string{
	reasonFormat:           "invalid ChittyID format",
	reasonChecksum:         "invalid checksum",
	reasonFallback:         "an error (fallback) ID, never a real one",
	resolve.ReasonUpstream: "not an ID the ChittyID service issued",
}

// specDoc is the answer of GET /api/spec: the configured format.
type specDoc struct {
	Success       bool          `json:"success"`
	Specification specification `json:"specification"`
	Timestamp     string        `json:"timestamp"`
}

type specification struct {
	Format      string                `json:"format"`
	Pattern     string                `json:"pattern"`
	Example     string                `json:"example"`
	Checksum    string                `json:"checksum,omitempty"`
	EntityTypes map[string]specEntity `json:"entityTypes"`
	TrustLevels specTrust             `json:"trustLevels"`
}

type specEntity struct {
	Letter string `json:"letter"` // the ID's T segment
	Word   string `json:"word"`   // the worker's word for it
}

type specTrust struct {
	Segment string `json:"segment"`
	Values  string `json:"values"`
}

// writeSpec answers GET /api/spec for format f.
func writeSpec(ctx *fasthttp.RequestCtx, f chittyid.Format) {
	s := specification{EntityTypes: map[string]specEntity{}}
	for _, e := range chittyid.Entities() {
		s.EntityTypes[e.String()] = specEntity{Letter: string(e.TypeLetter(f)), Word: e.WorkerType()}
	}
	if f == chittyid.FormatNumeric {
		s.Format, s.Example = "VV-G-LLL-SSSS-T-YYMM-C-XX", "03-1-USA-0001-P-2601-3-92"
		s.Pattern = `^[0-9]{2}-[1-9]-[A-Z]{3}-[0-9]{4}-[PLTEA]-[0-9]{4}-[0-5]-[0-9]{2}$`
		s.Checksum = "mod 97 over the first seven segments, letters as 10-35: XX = (98 - r) mod 97"
		s.TrustLevels = specTrust{Segment: "C", Values: "0-5"}
	} else {
		s.Format, s.Example = "VV-G-LLL-SSSS-T-YM-C-X", "CT-A-CHI-1234-I-24-A-0"
		s.Pattern = `^[A-Z]{2}-[A-Z]-[A-Z]{3}-[0-9]{4}-[A-Z]-[0-9]{2}-[A-Z]-[0-9A-Z]$`
		s.TrustLevels = specTrust{Segment: "C", Values: "A-Z (not defined for this format)"}
	}
	writeJSON(ctx, 200, specDoc{Success: true, Specification: s, Timestamp: ctx.Time().UTC().Format(time.RFC3339)})
}

// workerHealth answers GET /api/health as the worker does: healthy (200)
// while the sidecar is ready, unhealthy (503) otherwise.
func (s *Sidecar) workerHealth(ctx *fasthttp.RequestCtx) {
	ready, _ := s.readiness(s.cfg.Load(), s.life.Snapshot())
	status, word := 200, "healthy"
	if !ready {
		status, word = 503, "unhealthy"
	}
	writeJSON(ctx, status, struct {
		Status    string `json:"status"`
		Service   string `json:"service"`
		Version   string `json:"version"`
		Timestamp string `json:"timestamp"`
	}{word, "chittyid-sidecar", s.version, ctx.Time().UTC().Format(time.RFC3339)})
}
