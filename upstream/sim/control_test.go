package sim

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

func TestControlStatsAndReset(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, viaHTTP bool) {
		s := start(t, Config{})
		c := newClient(t)
		first := c.mint(s, "PEO", "Idempotency-Key", "k")
		c.do("POST", s.URL()+"/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"FACT"}]}`)
		c.validate(s, first)
		c.do("GET", s.URL()+"/health", nil)
		mustSetFault(t, s, Fault{Mode: ModeStatus, Status: 503, Routes: []string{"validate"}})
		c.do("GET", s.URL()+"/validate/x", nil)

		want := Stats{Mint: 1, Batch: 1, Validate: 2, Health: 1, Minted: 3}
		if got := stats(t, s, c, viaHTTP); got != want {
			t.Errorf("stats %+v, want %+v", got, want)
		}

		if viaHTTP {
			if r := c.do("POST", s.ControlURL()+"/sim/reset", nil); r.status != http.StatusOK {
				t.Fatalf("POST /sim/reset: %d %s", r.status, r.body)
			}
		} else {
			s.Reset()
		}
		if got := stats(t, s, c, viaHTTP); got != (Stats{}) {
			t.Errorf("stats after reset %+v, want zero", got)
		}
		if f := s.Fault(); f.Mode != ModeOK {
			t.Errorf("fault after reset %+v, want ok", f)
		}
		if n := len(minted(t, s, c, viaHTTP)); n != 0 {
			t.Errorf("%d minted IDs after reset, want none", n)
		}
		if n := len(requests(t, s, c, viaHTTP)); n != 0 {
			t.Errorf("%d requests after reset, want none", n)
		}
		if c.validate(s, first) {
			t.Error("an ID minted before the reset is still valid")
		}
		// The idempotency key is forgotten, and the new ID is a new one.
		again := c.mint(s, "PEO", "Idempotency-Key", "k")
		if again == first {
			t.Errorf("after reset, key k gave the pre-reset ID %s again", first)
		}
		if got := minted(t, s, c, viaHTTP); !slices.Equal(got, []string{again}) {
			t.Errorf("minted %v, want [%s]", got, again)
		}
		reqs := requests(t, s, c, viaHTTP)
		if len(reqs) != 2 || reqs[1].Route != "mint" || reqs[1].IdempotencyKey != "k" || reqs[1].Status != 200 {
			t.Errorf("requests %+v, want the validate and the mint since the reset", reqs)
		}
	})
}

func stats(t *testing.T, s *Sim, c *client, viaHTTP bool) Stats {
	t.Helper()
	if !viaHTTP {
		return s.Stats()
	}
	var st Stats
	c.do("GET", s.ControlURL()+"/sim/stats", nil).decode(t, &st)
	return st
}

func minted(t *testing.T, s *Sim, c *client, viaHTTP bool) []string {
	t.Helper()
	if !viaHTTP {
		return s.Minted()
	}
	var ids []string
	c.do("GET", s.ControlURL()+"/sim/minted", nil).decode(t, &ids)
	return ids
}

func requests(t *testing.T, s *Sim, c *client, viaHTTP bool) []Request {
	t.Helper()
	if !viaHTTP {
		return s.Requests()
	}
	var reqs []Request
	c.do("GET", s.ControlURL()+"/sim/requests", nil).decode(t, &reqs)
	return reqs
}

func TestControlJSONShapes(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	c.mint(s, "PEO", "X-Request-ID", "r1")
	var st map[string]int64
	c.do("GET", s.ControlURL()+"/sim/stats", nil).decode(t, &st)
	for _, k := range []string{"mint", "batch", "validate", "health", "minted"} {
		if _, ok := st[k]; !ok {
			t.Errorf("GET /sim/stats %v lacks %q", st, k)
		}
	}
	var reqs []map[string]any
	c.do("GET", s.ControlURL()+"/sim/requests", nil).decode(t, &reqs)
	if len(reqs) != 1 || reqs[0]["route"] != "mint" || reqs[0]["requestId"] != "r1" || reqs[0]["status"] != 200.0 {
		t.Errorf("GET /sim/requests = %v", reqs)
	}
	if _, err := time.Parse(time.RFC3339Nano, reqs[0]["time"].(string)); err != nil {
		t.Errorf("request time %v: %v", reqs[0]["time"], err)
	}
}

func TestControlRoutes(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/sim/nope", "", http.StatusNotFound},
		{"POST", "/sim/stats", "", http.StatusMethodNotAllowed},
		{"GET", "/sim/reset", "", http.StatusMethodNotAllowed},
		{"DELETE", "/sim/faults", "", http.StatusMethodNotAllowed},
		{"GET", "/sim/faults", "", http.StatusOK},
		{"POST", "/sim/token", `{}`, http.StatusBadRequest},
		{"POST", "/sim/token", `{"token":"a","x":1}`, http.StatusBadRequest},
		{"POST", "/sim/token", `{"token":"a"}`, http.StatusOK},
		{"GET", "/v1/mint", "", http.StatusNotFound}, // the API is not on the control listener
	} {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		r := c.do(tc.method, s.ControlURL()+tc.path, body)
		if r.status != tc.want || !jsonBody(r) {
			t.Errorf("%s %s %s: %d %s, want %d with a JSON body", tc.method, tc.path, tc.body, r.status, r.body, tc.want)
		}
	}
	if r := c.mintRaw(s, "PEO"); r.status != http.StatusUnauthorized {
		t.Errorf("mint after POST /sim/token: %d, want 401", r.status)
	}
}

func TestControlFaultRoundTrip(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	want := Fault{Mode: ModeSlow, Routes: []string{"mint", "health"}, Latency: "5ms", Count: 4}
	var got Fault
	r := c.do("POST", s.ControlURL()+"/sim/faults", want)
	r.decode(t, &got)
	if r.status != http.StatusOK || got.Mode != want.Mode || got.Latency != want.Latency || got.Count != 4 ||
		!slices.Equal(got.Routes, want.Routes) {
		t.Errorf("POST /sim/faults answered %d %s, want the fault back", r.status, r.body)
	}
	if f := s.Fault(); f.Mode != ModeSlow || f.Count != 4 {
		t.Errorf("Fault() = %+v", f)
	}
}

func TestCloseWithOpenConnections(t *testing.T) {
	t.Parallel()
	s, err := Start(Config{Format: chittyid.FormatNumeric}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	c.mint(s, "PEO") // leaves idle keep-alive connections to both listeners
	c.do("GET", s.ControlURL()+"/sim/stats", nil)
	begin := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(begin); el >= closeGrace { // idle connections are closed at once, not drained
		t.Errorf("Close with idle connections took %s: it waited out its grace (%s) for them", el, closeGrace)
	}
	if _, err := c.try("GET", s.URL()+"/health", nil); err == nil {
		t.Error("API still answers after Close")
	}
	s.Reset() // after Close: clears memories, no error, no panic
}
