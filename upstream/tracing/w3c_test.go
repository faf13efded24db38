package tracing

import (
	"context"
	"strings"
	"testing"
)

const (
	goodTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	goodTS = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

func TestParseRemote(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, tp, ts string
		ok           bool
		wantTP       string
		wantTS       string
	}{
		{"valid", goodTP, goodTS, true, goodTP, goodTS},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "", true, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		{"later version with more fields", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", "", true, goodTP, ""},
		{"later version, exact length", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", true, goodTP, ""},
		{"later version glued on", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "", false, "", ""},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false, "", ""},
		{"version 00 too long", goodTP + "-", "", false, "", ""},
		{"too short", goodTP[:54], "", false, "", ""},
		{"upper case", strings.ToUpper(goodTP), "", false, "", ""},
		{"zero trace ID", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false, "", ""},
		{"zero parent ID", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", false, "", ""},
		{"bad separator", "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false, "", ""},
		{"not hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "", false, "", ""},
		{"empty", "", goodTS, false, "", ""},
		{"bad tracestate dropped alone", goodTP, "not a=valid,state", true, goodTP, ""},
		{"duplicate tracestate key dropped", goodTP, "a=1,a=2", true, goodTP, ""},
		{"tracestate too long dropped", goodTP, "a=" + strings.Repeat("b", 600), true, goodTP, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ParseRemote([]byte(c.tp), []byte(c.ts))
			if r.Valid() != c.ok || r.TraceParent() != c.wantTP || r.TraceState() != c.wantTS {
				t.Errorf("ParseRemote(%q, %q) = valid %v, %q, %q; want %v, %q, %q",
					c.tp, c.ts, r.Valid(), r.TraceParent(), r.TraceState(), c.ok, c.wantTP, c.wantTS)
			}
			if got, want := SampledHeader([]byte(c.tp)), c.ok && strings.HasSuffix(c.wantTP, "-01"); got != want {
				t.Errorf("SampledHeader(%q) = %v, want %v", c.tp, got, want)
			}
		})
	}
}

func TestSampledHeaderDoesNotAllocate(t *testing.T) {
	b := []byte(goodTP)
	if n := testing.AllocsPerRun(100, func() { SampledHeader(b) }); n != 0 {
		t.Errorf("SampledHeader allocates %v times", n)
	}
}

// With tracing off, a valid trace context is forwarded unchanged and a
// malformed one not at all; nothing is invented for a request without one.
func TestHeaderWithTracingOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, _, ok := Header(ctx, Remote{}, nil); ok {
		t.Error("a request without a trace context got one")
	}
	tp, ts, ok := Header(ctx, ParseRemote([]byte(goodTP), []byte(goodTS)), nil)
	if !ok || string(tp) != goodTP || ts != goodTS {
		t.Errorf("Header = %q, %q, %v; want the app's own", tp, ts, ok)
	}
	if _, _, ok := Header(ctx, ParseRemote([]byte("00-zz"), []byte(goodTS)), nil); ok {
		t.Error("a malformed traceparent was forwarded")
	}
	var off *Tracer
	ctx2, s := off.StartServer(ctx, ParseRemote([]byte(goodTP), nil), "x", timeZero)
	if ctx2 != ctx || s != (Span{}) {
		t.Error("a nil Tracer made a span")
	}
}

// FuzzParseRemote: any header values parse without panicking; what parses
// is forwarded in a form that parses to the same context, and a tracestate
// is kept only with a valid traceparent.
func FuzzParseRemote(f *testing.F) {
	f.Add(goodTP, goodTS)
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "a=1,b=2")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", "")
	f.Fuzz(func(t *testing.T, tp, ts string) {
		r := ParseRemote([]byte(tp), []byte(ts))
		if !r.Valid() {
			if r.TraceState() != "" || r.TraceParent() != "" {
				t.Fatalf("invalid %q kept %q %q", tp, r.TraceParent(), r.TraceState())
			}
			return
		}
		again := ParseRemote([]byte(r.TraceParent()), []byte(r.TraceState()))
		if again != r {
			t.Fatalf("%q %q parsed to %+v, forwarded as %q %q which parse to %+v", tp, ts, r, r.TraceParent(), r.TraceState(), again)
		}
	})
}
