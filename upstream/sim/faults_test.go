package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// setFault sets f through the control API or in process.
func setFault(t *testing.T, s *Sim, c *client, viaHTTP bool, f Fault) {
	t.Helper()
	if !viaHTTP {
		if err := s.SetFault(f); err != nil {
			t.Fatalf("SetFault(%+v): %v", f, err)
		}
		return
	}
	if r := c.do("POST", s.ControlURL()+"/sim/faults", f); r.status != http.StatusOK {
		t.Fatalf("POST /sim/faults %+v: %d %s", f, r.status, r.body)
	}
}

// both runs fn as subtests, once through the control API, once in process.
func both(t *testing.T, fn func(t *testing.T, viaHTTP bool)) {
	for _, viaHTTP := range []bool{false, true} {
		name := "in-process"
		if viaHTTP {
			name = "http"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, viaHTTP)
		})
	}
}

func TestFaultStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			both(t, func(t *testing.T, viaHTTP bool) {
				s := start(t, tc.cfg)
				c := newClient(t)
				setFault(t, s, c, viaHTTP, Fault{Mode: ModeStatus, Status: 503, RetryAfter: 2})
				r := c.mintRaw(s, anEntity(s))
				if s.Config().Dialect == upstream.DialectWorker {
					// The mint backend's 503 becomes a 200 fallback, Retry-After dropped.
					expectFallback(t, "mint under status 503", r, codeRejected)
				} else if r.status != 503 || r.header.Get("Retry-After") != "2" || !jsonBody(r) {
					t.Errorf("mint under status 503: %d, Retry-After %q, body %s", r.status, r.header.Get("Retry-After"), r.body)
				}
				if st := s.Stats(); st.Mint != 1 || st.Minted != 0 {
					t.Errorf("stats %+v, want the faulted mint counted and nothing minted", st)
				}
				setFault(t, s, c, viaHTTP, Fault{Mode: ModeStatus, Status: 429})
				r = c.mintRaw(s, anEntity(s))
				if s.Config().Dialect == upstream.DialectWorker {
					expectFallback(t, "mint under status 429", r, codeRateLimited)
				} else if r.status != 429 || r.header.Get("Retry-After") != "" {
					t.Errorf("mint under status 429: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
				}
				setFault(t, s, c, viaHTTP, Fault{Mode: ModeOK})
				if r := c.mintRaw(s, anEntity(s)); r.status != 200 {
					t.Errorf("mint after ok: %d %s", r.status, r.body)
				}
			})
		})
	}
}

func TestFaultCount(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, viaHTTP bool) {
		s := start(t, Config{})
		c := newClient(t)
		setFault(t, s, c, viaHTTP, Fault{Mode: ModeStatus, Status: 500, Count: 2, Routes: []string{"mint"}})
		// Requests of other routes do not use up the count.
		c.do("GET", s.URL()+"/health", nil)
		var got []int
		for range 3 {
			got = append(got, c.mintRaw(s, "PEO").status)
		}
		if want := []int{500, 500, 200}; !equal(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
		if f := s.Fault(); f.Mode != ModeOK {
			t.Errorf("Fault() = %+v after the count ran out, want ok", f)
		}
	})
}

func TestFaultCountReported(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	setFault(t, s, c, true, Fault{Mode: ModeStatus, Status: 502, Count: 3})
	c.mintRaw(s, "PEO")
	var f Fault
	c.do("GET", s.ControlURL()+"/sim/faults", nil).decode(t, &f)
	if f.Mode != ModeStatus || f.Count != 2 || f.Status != 502 {
		t.Errorf("GET /sim/faults = %+v, want status 502 with 2 left", f)
	}
}

func TestFaultRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		routes []string
		// faulted: mint, batch, validate, health
		want [4]bool
	}{
		{"all", nil, [4]bool{true, true, true, true}},
		{"mint covers batch", []string{"mint"}, [4]bool{true, true, false, false}},
		{"batch only", []string{"batch"}, [4]bool{false, true, false, false}},
		{"validate", []string{"validate"}, [4]bool{false, false, true, false}},
		{"health", []string{"health"}, [4]bool{false, false, false, true}},
		{"validate and health", []string{"validate", "health"}, [4]bool{false, false, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, Config{})
			c := newClient(t)
			if err := s.SetFault(Fault{Mode: ModeStatus, Status: 503, Routes: tc.routes}); err != nil {
				t.Fatal(err)
			}
			got := [4]bool{
				c.mintRaw(s, "PEO").status == 503,
				c.do("POST", s.URL()+"/mint/batch", `{"requests":[{"entity":"PEO"}]}`).status == 503,
				c.do("GET", s.URL()+"/validate/CT-A-CHI-1234-I-24-A-0", nil).status == 503,
				c.do("GET", s.URL()+"/health", nil).status == 503,
			}
			if got != tc.want {
				t.Errorf("faulted [mint batch validate health] = %v, want %v", got, tc.want)
			}
			if st := s.Stats(); st.Mint != 1 || st.Batch != 1 || st.Validate != 1 || st.Health != 1 {
				t.Errorf("stats %+v, want one of each, faulted or not", st)
			}
		})
	}
}

func TestFaultSlow(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, viaHTTP bool) {
		const d = 80 * time.Millisecond
		s := start(t, Config{})
		c := newClient(t)
		setFault(t, s, c, viaHTTP, Fault{Mode: ModeSlow, Latency: d.String(), Routes: []string{"validate"}})
		begin := time.Now()
		id := c.mint(s, "PEO")
		fast := time.Since(begin)
		begin = time.Now()
		valid := c.validate(s, id)
		if el := time.Since(begin); el < d || !valid {
			t.Errorf("slow validate took %s (valid %v), want at least %s and a normal answer", el, valid, d)
		}
		if fast >= d {
			t.Logf("mint (not faulted) took %s", fast)
		}
	})
}

func TestFaultGarbage(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			c := newClient(t)
			setFault(t, s, c, true, Fault{Mode: ModeGarbage})
			r := c.mintRaw(s, anEntity(s))
			if r.status != 200 || json.Valid(r.body) || len(r.body) == 0 {
				t.Errorf("garbage mint: %d %q, want 200 and a body that is not JSON", r.status, r.body)
			}
			if s.Stats().Minted != 0 {
				t.Error("garbage minted an ID")
			}
		})
	}
}

func TestFaultFallback(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			c := newClient(t)
			setFault(t, s, c, false, Fault{Mode: ModeFallback})
			entity := "EVNT"
			if tc.cfg.Dialect == upstream.DialectWorker {
				entity = "event"
			}
			r := c.mintRaw(s, entity)
			var a struct {
				Success   bool
				ChittyID  string
				Fallback  bool
				ErrorCode string
			}
			r.decode(t, &a)
			if r.status != 200 || !a.Success || !a.Fallback || a.ErrorCode != "0001" {
				t.Errorf("fallback mint: %d %s", r.status, r.body)
			}
			if err := chittyid.FormatNumeric.Check(a.ChittyID); !errors.Is(err, chittyid.ErrFallbackID) ||
				!strings.HasPrefix(a.ChittyID, "03-0-ERR-0001-E-") {
				t.Errorf("fallback ID %q: check %v, want a checksummed 03-0-ERR-0001-E-… placeholder", a.ChittyID, err)
			}
			if c.validate(s, a.ChittyID) || s.Stats().Minted != 0 {
				t.Errorf("a fallback ID counts as minted")
			}
			// Health answers normally under fallback.
			if r := c.do("GET", "http://"+s.APIAddr()+healthPath(s), nil); r.status != 200 || !json.Valid(r.body) {
				t.Errorf("health under fallback: %d %s", r.status, r.body)
			}
			if tc.cfg.Dialect == upstream.DialectWorker {
				return
			}
			r = c.do("POST", s.URL()+"/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"INFO"}]}`)
			var b struct {
				ChittyIDs []string
				Fallback  bool
			}
			r.decode(t, &b)
			if r.status != 200 || !b.Fallback || len(b.ChittyIDs) != 2 ||
				!errors.Is(chittyid.FormatNumeric.Check(b.ChittyIDs[1]), chittyid.ErrFallbackID) ||
				b.ChittyIDs[1][14] != 'T' {
				t.Errorf("fallback batch: %d %s", r.status, r.body)
			}
		})
	}
}

// expectFallback checks a worker's HTTP 200 fallback answer with code:
// a checksummed placeholder 03-0-ERR-<code>-…, no Retry-After.
func expectFallback(t *testing.T, what string, r response, code string) {
	t.Helper()
	var a fallbackAnswer
	r.decode(t, &a)
	if r.status != 200 || !a.Success || !a.Fallback || a.ErrorCode != code || r.header.Get("Retry-After") != "" ||
		!strings.HasPrefix(a.ChittyID, "03-0-ERR-"+code+"-") || chittyid.FormatNumeric.Check(a.ChittyID) != chittyid.ErrFallbackID {
		t.Errorf("%s: %d %s (Retry-After %q), want a 200 fallback with code %s", what, r.status, r.body, r.header.Get("Retry-After"), code)
	}
}

// TestWorkerMintBackendFaults: in the worker dialect a status fault is the
// mint backend's status, answered as the worker does: HTTP 200 with the
// fallback code of that status, the same placeholder for the same code,
// type and month; /health and validate are not affected unless named.
func TestWorkerMintBackendFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fault Fault
		code  string
	}{
		{Fault{Mode: ModeStatus, Status: 401}, codeRejected},
		{Fault{Mode: ModeStatus, Status: 403}, codeRejected},
		{Fault{Mode: ModeStatus, Status: 500}, codeRejected},
		{Fault{Mode: ModeStatus, Status: 502}, codeRejected},
		{Fault{Mode: ModeStatus, Status: 503, RetryAfter: 5}, codeRejected},
		{Fault{Mode: ModeStatus, Status: 429, RetryAfter: 5}, codeRateLimited},
		{Fault{Mode: ModeStatus, Status: 400}, codeInvalidRequest},
		{Fault{Mode: ModeStatus, Status: 200}, codeInternal},
		{Fault{Mode: ModeFallback}, codeUnavailable},
		{Fault{Mode: ModeFallback, ErrorCode: "0002"}, "0002"},
		{Fault{Mode: ModeFallback, ErrorCode: "0099"}, codeInternal},
	} {
		t.Run(fmt.Sprintf("%s %d %s", tc.fault.Mode, tc.fault.Status, tc.fault.ErrorCode), func(t *testing.T) {
			t.Parallel()
			s := start(t, Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric, Token: "tok"})
			c := newClient(t)
			id := c.mint(s, "person", "Authorization", "Bearer tok")
			mustSetFault(t, s, tc.fault)
			first := c.mintRaw(s, "event", "Authorization", "Bearer tok")
			expectFallback(t, "first", first, tc.code)
			again := c.mintRaw(s, "event", "Authorization", "Bearer tok")
			if string(again.body) != string(first.body) {
				t.Errorf("the same code, type and month gave %s, then %s; want the same placeholder", first.body, again.body)
			}
			if r := c.do("GET", s.URL()+"/health", nil); r.status != 200 {
				t.Errorf("health under a mint backend fault: %d %s", r.status, r.body)
			}
			if !c.validate(s, id, "Authorization", "Bearer tok") {
				t.Errorf("validate under a mint backend fault: not valid")
			}
			if st := s.Stats(); st.Minted != 1 {
				t.Errorf("stats %+v, want only the first mint minted", st)
			}
		})
	}
}

// anEntity is an entity the simulator's dialect accepts.
func anEntity(s *Sim) string {
	if s.Config().Dialect == upstream.DialectWorker {
		return "person"
	}
	return "PEO"
}

func healthPath(s *Sim) string {
	if s.Config().Dialect == upstream.DialectWorker {
		return "/health"
	}
	return "/v1/health"
}

func TestFaultBadFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			c := newClient(t)
			setFault(t, s, c, true, Fault{Mode: ModeBadFormat, Count: 1})
			entity := "EVNT"
			if tc.cfg.Dialect == upstream.DialectWorker {
				entity = "event"
			}
			f := s.Config().Format
			bad := c.mint(s, entity)
			if f.Check(bad) == nil || otherFormat(f).Check(bad) != nil || bad[14] != 'E' {
				t.Errorf("badformat minted %q, want an %s ID with letter E", bad, otherFormat(f))
			}
			// client-v1 knows what it minted; the worker checks the format,
			// which a badformat ID fails.
			if got, want := c.validate(s, bad), tc.cfg.Dialect != upstream.DialectWorker; got != want {
				t.Errorf("validate of the badformat ID %q = %v, want %v", bad, got, want)
			}
			if good := c.mint(s, entity); f.Check(good) != nil {
				t.Errorf("after the count ran out, minted %q: %v", good, f.Check(good))
			}
		})
	}
}

func TestFaultOnHealthAndValidate(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Dialect: upstream.DialectWorker})
	c := newClient(t)
	id := c.mint(s, "person")
	mustSetFault(t, s, Fault{Mode: ModeBadFormat, Routes: []string{"health", "validate"}})
	if r := c.do("GET", s.URL()+"/health", nil); r.status != 200 || !json.Valid(r.body) {
		t.Errorf("health under badformat: %d %s", r.status, r.body)
	}
	if !c.validate(s, id) {
		t.Error("validate under badformat: not valid")
	}
	mustSetFault(t, s, Fault{Mode: ModeStatus, Status: 503, Routes: []string{"health"}})
	if r := c.do("GET", s.URL()+"/health", nil); r.status != 503 || !jsonBody(r) {
		t.Errorf("health under status 503: %d %s", r.status, r.body)
	}
}

func TestFaultInvalid(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	for _, tc := range []struct {
		name string
		body string
		want string // in the message
	}{
		{"malformed JSON", `{"mode":`, "invalid fault"},
		{"unknown field", `{"mode":"status","status":503,"retry_after":2}`, "retry_after"},
		{"trailing data", `{"mode":"ok"} {}`, "trailing data"},
		{"no mode", `{"status":503}`, "mode is required"},
		{"unknown mode", `{"mode":"explode"}`, "unknown mode"},
		{"unknown route", `{"mode":"garbage","routes":["mint","nope"]}`, `unknown route "nope"`},
		{"status out of range", `{"mode":"status","status":99}`, "status must be"},
		{"status missing", `{"mode":"status"}`, "status must be"},
		{"slow without latency", `{"mode":"slow"}`, "latency > 0"},
		{"bad latency", `{"mode":"slow","latency":"fast"}`, "latency must be"},
		{"negative count", `{"mode":"hang","count":-1}`, "count must be"},
		{"negative retryAfter", `{"mode":"status","status":503,"retryAfter":-1}`, "retryAfter"},
		{"refuse with count", `{"mode":"refuse","count":1}`, "refuse takes no count"},
		{"refuse with routes", `{"mode":"refuse","routes":["mint"]}`, "refuse takes no routes"},
		{"fallback code not four digits", `{"mode":"fallback","errorCode":"7"}`, "errorCode must be four digits"},
		{"fallback code beyond 0099", `{"mode":"fallback","errorCode":"0100"}`, "errorCode must be four digits from 0000 to 0099"},
		{"errorCode on another mode", `{"mode":"status","status":503,"errorCode":"0001"}`, "errorCode is for mode fallback only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := c.do("POST", s.ControlURL()+"/sim/faults", tc.body)
			var e struct{ Error string }
			r.decode(t, &e)
			if r.status != http.StatusBadRequest || !strings.Contains(e.Error, tc.want) {
				t.Errorf("POST /sim/faults %s: %d %q, want 400 mentioning %q", tc.body, r.status, e.Error, tc.want)
			}
			var f Fault
			if err := decodeStrict([]byte(tc.body), &f); err == nil {
				if err := s.SetFault(f); !errors.Is(err, ErrInvalidFault) {
					t.Errorf("SetFault(%+v) = %v, want ErrInvalidFault", f, err)
				}
			}
		})
	}
	t.Cleanup(func() {
		if f := s.Fault(); f.Mode != ModeOK {
			t.Errorf("invalid faults changed the fault to %+v", f)
		}
	})
}

func mustSetFault(t *testing.T, s *Sim, f Fault) {
	t.Helper()
	if err := s.SetFault(f); err != nil {
		t.Fatalf("SetFault(%+v): %v", f, err)
	}
}

func waitHung(t *testing.T, s *Sim, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitHung(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDelayedRequestOfAGoneClientIsAbandoned: a client that hangs up while
// its mint is delayed mints nothing.
func TestDelayedRequestOfAGoneClientIsAbandoned(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	if err := s.SetFault(Fault{Mode: ModeSlow, Latency: "300ms", Routes: []string{"mint"}}); err != nil {
		t.Fatal(err)
	}
	impatient := &http.Client{Timeout: 100 * time.Millisecond, Transport: &http.Transport{}}
	defer impatient.CloseIdleConnections()
	resp, err := impatient.Post(s.URL()+"/mint", "application/json", strings.NewReader(`{"entity":"PEO"}`))
	if err == nil {
		resp.Body.Close()
		t.Fatal("the impatient client got an answer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for s.Stats().Abandoned == 0 { // the sim's own goroutine finishes the delay
		select {
		case <-ctx.Done():
			t.Fatalf("not abandoned: %+v", s.Stats())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if st := s.Stats(); st.Minted != 0 || st.Abandoned != 1 {
		t.Errorf("stats %+v, want nothing minted and one abandoned", st)
	}
}
