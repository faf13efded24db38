package tracing

import (
	"encoding/hex"

	"go.opentelemetry.io/otel/trace"
)

// Remote is the W3C trace context an app's request carried (the
// traceparent and tracestate headers), parsed and checked. The zero
// Remote is "none": a request without a traceparent, or with a malformed
// one, which is dropped and never forwarded.
type Remote struct {
	traceID [16]byte
	spanID  [8]byte
	flags   byte
	valid   bool
	// state is the tracestate header, kept only when it is well formed
	// and the traceparent is; "" otherwise.
	state string
}

// flagSampled is traceparent's sampled flag.
const flagSampled = 0x01

// ParseRemote reads a request's traceparent and tracestate header values
// (nil when absent). A malformed traceparent gives the zero Remote (its
// tracestate goes with it, as W3C Trace Context says); a malformed
// tracestate is dropped alone. It copies tracestate: the arguments may be
// a request's buffers.
func ParseRemote(traceparent, tracestate []byte) Remote {
	r, ok := parseTraceParent(traceparent)
	if !ok {
		return Remote{}
	}
	if len(tracestate) > 0 && len(tracestate) <= maxTraceState {
		if ts, err := trace.ParseTraceState(string(tracestate)); err == nil && ts.Len() > 0 {
			r.state = ts.String()
		}
	}
	return r
}

// maxTraceState bounds the tracestate header kept: 32 members of the
// longest key and value W3C allows would be far more, but propagators
// cut at 512 characters and so does this one.
const maxTraceState = 512

// SampledHeader reports whether traceparent is well formed and has its
// sampled flag set. It does not allocate: a cached validate asks it to
// decide whether to make a span.
func SampledHeader(traceparent []byte) bool {
	r, ok := parseTraceParent(traceparent)
	return ok && r.flags&flagSampled != 0
}

// Valid reports whether r holds a trace context.
func (r Remote) Valid() bool { return r.valid }

// Sampled reports whether r's sampled flag is set.
func (r Remote) Sampled() bool { return r.valid && r.flags&flagSampled != 0 }

// TraceParent returns r as a version-00 traceparent header value, "" for
// the zero Remote.
func (r Remote) TraceParent() string {
	if !r.valid {
		return ""
	}
	return string(appendTraceParent(make([]byte, 0, traceParentLen), r.traceID, r.spanID, r.flags))
}

// TraceState returns r's tracestate header value, "" for none.
func (r Remote) TraceState() string { return r.state }

// spanContext is r as the OpenTelemetry SDK's remote parent.
func (r Remote) spanContext() trace.SpanContext {
	if !r.valid {
		return trace.SpanContext{}
	}
	ts, _ := trace.ParseTraceState(r.state) // checked by ParseRemote
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: r.traceID, SpanID: r.spanID, TraceFlags: trace.TraceFlags(r.flags),
		TraceState: ts, Remote: true,
	})
}

// traceParentLen is the length of a version-00 traceparent:
// "00-" 32 hex "-" 16 hex "-" 2 hex.
const traceParentLen = 55

// parseTraceParent parses a traceparent header value as W3C Trace Context
// says: version 00 exactly 55 characters; a later version (not ff) at
// least that, the rest after a '-' ignored; lower-case hex only; trace and
// parent IDs not all zero. It does not allocate.
func parseTraceParent(b []byte) (Remote, bool) {
	var r Remote
	if len(b) < traceParentLen || b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return r, false
	}
	var ver [1]byte
	if !decodeLowerHex(ver[:], b[0:2]) || ver[0] == 0xff {
		return r, false
	}
	if ver[0] == 0 && len(b) != traceParentLen {
		return r, false
	}
	if ver[0] != 0 && len(b) > traceParentLen && b[traceParentLen] != '-' {
		return r, false
	}
	var fl [1]byte
	if !decodeLowerHex(r.traceID[:], b[3:35]) || !decodeLowerHex(r.spanID[:], b[36:52]) || !decodeLowerHex(fl[:], b[53:55]) {
		return Remote{}, false
	}
	if r.traceID == ([16]byte{}) || r.spanID == ([8]byte{}) {
		return Remote{}, false
	}
	r.flags, r.valid = fl[0], true
	return r, true
}

// decodeLowerHex decodes src, lower-case hex of exactly 2*len(dst)
// characters, into dst.
func decodeLowerHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHexVal(src[2*i])
		lo, ok2 := lowerHexVal(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// appendTraceParent appends a version-00 traceparent to dst.
func appendTraceParent(dst []byte, tid [16]byte, sid [8]byte, flags byte) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{flags})
}
