package sim

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

func TestMintValidateBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			c := newClient(t)
			f := s.Config().Format
			worker := tc.cfg.Dialect == upstream.DialectWorker
			entity, letter := "EVNT", byte('E')
			if worker {
				entity = "event"
			}
			id := c.mint(s, entity)
			if err := f.Check(id); err != nil {
				t.Fatalf("minted %q fails %s check: %v", id, f, err)
			}
			if got := f.TypeLetter(id); got != letter {
				t.Errorf("minted %q has type letter %c, want %c", id, got, letter)
			}
			if !c.validate(s, id) {
				t.Errorf("validate(%q) = not valid, want valid", id)
			}
			unknown := "CT-A-CHI-1234-I-24-A-0"
			if f == chittyid.FormatNumeric {
				unknown = "03-1-USA-0001-P-2601-3-92"
			}
			// The worker checks format and checksum only: a well-formed ID it
			// never minted is valid; client-v1 knows what it minted.
			if got := c.validate(s, unknown); got != worker {
				t.Errorf("validate(%q), never minted here = %v, want %v", unknown, got, worker)
			}
			if c.validate(s, "not-an-id") {
				t.Error("validate(not-an-id) = valid")
			}

			batch := c.do("POST", s.URL()+"/mint/batch", map[string]any{"requests": []map[string]string{
				{"entity": "PEO"}, {"entity": "PLACE"}, {"entity": "AUTH"},
			}})
			if worker {
				if batch.status != http.StatusNotFound {
					t.Fatalf("worker batch: status %d, want 404", batch.status)
				}
				return
			}
			if batch.status != http.StatusOK {
				t.Fatalf("batch: status %d, body %s", batch.status, batch.body)
			}
			var ba struct{ ChittyIDs []string }
			batch.decode(t, &ba)
			if len(ba.ChittyIDs) != 3 {
				t.Fatalf("batch gave %d IDs, want 3: %s", len(ba.ChittyIDs), batch.body)
			}
			for i, want := range []byte{'P', 'L', 'A'} {
				bid := ba.ChittyIDs[i]
				if f.Check(bid) != nil || f.TypeLetter(bid) != want {
					t.Errorf("batch ID %d = %q, want a %s ID with letter %c", i, bid, f, want)
				}
				if !c.validate(s, bid) {
					t.Errorf("validate(batch ID %q) = not valid", bid)
				}
			}
			if got, want := s.Minted(), append([]string{id}, ba.ChittyIDs...); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("Minted() = %v, want %v", got, want)
			}
		})
	}
}

func TestWorkerHasNoClientV1Routes(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Dialect: upstream.DialectWorker})
	c := newClient(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/validate/CT-A-CHI-1234-I-24-A-0"},
		{"POST", "/v1/mint/batch"},
		{"GET", "/v1/health"},
		{"GET", "/api/v1/health"},
	} {
		if r := c.do(tc.method, s.URL()+tc.path, "{}"); r.status != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 404", tc.method, tc.path, r.status)
		}
	}
}

func TestTypeLetters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    Config
		entity string
		want   byte
	}{
		{"official EVNT", Config{}, "EVNT", 'E'},
		{"official INFO", Config{}, "INFO", 'I'},
		{"official PEO", Config{}, "PEO", 'P'},
		{"official PLACE", Config{}, "PLACE", 'L'},
		{"official lower-case evnt", Config{}, "evnt", 'E'},
		{"official ACTOR", Config{}, "ACTOR", 'R'},
		{"numeric INFO", Config{Format: chittyid.FormatNumeric}, "INFO", 'T'},
		{"numeric CONTEXT", Config{Format: chittyid.FormatNumeric}, "CONTEXT", 'P'},
		{"numeric EVNT", Config{Format: chittyid.FormatNumeric}, "EVNT", 'E'},
		{"worker person", Config{Dialect: upstream.DialectWorker}, "person", 'P'},
		{"worker place", Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}, "place", 'L'},
		{"worker thing", Config{Dialect: upstream.DialectWorker}, "thing", 'T'},
		{"worker letter e", Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}, "e", 'E'},
		{"worker letter A", Config{Dialect: upstream.DialectWorker}, "A", 'A'},
		{"worker authority", Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}, "authority", 'A'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			id := newClient(t).mint(s, tc.entity)
			f := s.Config().Format
			if err := f.Check(id); err != nil || f.TypeLetter(id) != tc.want {
				t.Errorf("mint %s = %q (check %v), want a %s ID with letter %c", tc.entity, id, err, f, tc.want)
			}
		})
	}
}

func TestMintAnswerShape(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	r := newClient(t).do("POST", s.URL()+"/mint", `{"entity":"INFO","name":"n","metadata":{"a":1}}`)
	var a map[string]any
	r.decode(t, &a)
	if a["entity"] != "INFO" || a["version"] != version {
		t.Errorf("mint answer %s: want entity INFO and version %s", r.body, version)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(a["timestamp"])); err != nil {
		t.Errorf("timestamp %v is not RFC 3339: %v", a["timestamp"], err)
	}
	w := start(t, Config{Dialect: upstream.DialectWorker})
	r = newClient(t).do("POST", w.URL()+"/v1/mint", `{"entityType":"p"}`)
	a = nil
	r.decode(t, &a)
	if a["success"] != true || a["entityType"] != "person" {
		t.Errorf("worker mint answer %s: want success and entityType person", r.body)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		dialect  upstream.Dialect
		path     string
		body     string
		wantCode string // client-v1 error code
	}{
		{"malformed JSON", "", "/v1/mint", `{"entity":`, "BAD_REQUEST"},
		{"missing entity", "", "/v1/mint", `{"name":"x"}`, "BAD_REQUEST"},
		{"entity not a string", "", "/v1/mint", `{"entity":5}`, "BAD_REQUEST"},
		{"unknown entity", "", "/v1/mint", `{"entity":"DOG"}`, "UNSUPPORTED_ENTITY"},
		{"metadata not an object", "", "/v1/mint", `{"entity":"PEO","metadata":[1]}`, "INVALID_METADATA"},
		{"batch missing requests", "", "/v1/mint/batch", `{}`, "BAD_REQUEST"},
		{"batch empty", "", "/v1/mint/batch", `{"requests":[]}`, "BAD_REQUEST"},
		{"batch one bad item", "", "/v1/mint/batch", `{"requests":[{"entity":"PEO"},{"entity":"DOG"}]}`, "UNSUPPORTED_ENTITY"},
		{"worker malformed JSON", upstream.DialectWorker, "/v1/mint", `nope`, ""},
		{"worker unknown entityType", upstream.DialectWorker, "/v1/mint", `{"entityType":"dog"}`, ""},
		{"worker validate without id", upstream.DialectWorker, "/api/validate", `{}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, Config{Dialect: tc.dialect})
			u, _ := url.Parse(s.URL())
			r := newClient(t).do("POST", "http://"+u.Host+tc.path, tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", r.status, r.body)
			}
			var e struct {
				Error   string
				Message string
				Success *bool
			}
			r.decode(t, &e)
			if tc.dialect == upstream.DialectWorker {
				if e.Success == nil || *e.Success || e.Error == "" {
					t.Errorf("worker error body %s: want success false and an error", r.body)
				}
			} else if e.Error != tc.wantCode || e.Message == "" {
				t.Errorf("error body %s: want error %s and a message", r.body, tc.wantCode)
			}
			if st := s.Stats(); st.Minted != 0 || len(s.Minted()) != 0 {
				t.Errorf("a bad request minted: stats %+v", st)
			}
		})
	}
}

// TestWorkerMintEntity: the worker reads entityType, then entity_type;
// without either it mints a thing (it never answers 400 for a missing one).
func TestWorkerMintEntity(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric})
	c := newClient(t)
	for _, tc := range []struct {
		body   string
		letter byte
		word   string
	}{
		{`{}`, 'T', "thing"},
		{`{"entity":"PEO"}`, 'T', "thing"},
		{`{"entity_type":"event"}`, 'E', "event"},
		{`{"entity_type":"l"}`, 'L', "place"},
		{`{"entityType":"person","entity_type":"event"}`, 'P', "person"},
		{`{"entityType":"authority"}`, 'A', "authority"},
	} {
		r := c.do("POST", s.URL()+"/v1/mint", tc.body)
		var a struct {
			ChittyID   string
			EntityType string
		}
		r.decode(t, &a)
		if r.status != http.StatusOK || chittyid.FormatNumeric.Check(a.ChittyID) != nil || a.ChittyID[14] != tc.letter || a.EntityType != tc.word {
			t.Errorf("mint %s: %d %s, want a %c ID and entityType %s", tc.body, r.status, r.body, tc.letter, tc.word)
		}
	}
}

// TestWorkerValidate: POST /api/validate checks format and checksum only, by
// the worker's rules (minted here or not), and answers an error ID with
// isError and its code.
func TestWorkerValidate(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric})
	c := newClient(t)
	for _, tc := range []struct {
		id        string
		valid     bool
		errorCode string
	}{
		{"03-1-USA-1234-P-2601-3-86", true, ""},
		{"03-1-ERR-1234-P-2612-3-44", true, ""},
		{"03-1-USA-1234-P-2601-3-42", false, ""}, // checksum
		{"03-0-USA-0001-P-2601-3-33", false, ""}, // region 0 outside an error ID
		{"03-0-ERR-0100-T-2601-0-77", false, ""}, // sequence beyond the error codes
		{"03-0-ERR-0001-T-2601-0-35", false, "0001"},
		{"03-0-ERR-0007-L-2612-0-92", false, "0007"},
		{"CT-A-CHI-1234-I-24-A-0", false, ""},
		{"", false, ""},
	} {
		r := c.do("POST", s.URL()+"/api/validate", map[string]string{"id": tc.id})
		var v struct {
			Success   bool
			Valid     *bool
			IsError   bool
			ErrorCode string
			Error     string
		}
		r.decode(t, &v)
		if r.status != http.StatusOK || !v.Success || v.Valid == nil || *v.Valid != tc.valid ||
			v.IsError != (tc.errorCode != "") || v.ErrorCode != tc.errorCode || (!tc.valid && v.Error == "") {
			t.Errorf("validate %q: %d %s; want valid %v, error code %q", tc.id, r.status, r.body, tc.valid, tc.errorCode)
		}
	}
	if st := s.Stats(); st.Minted != 0 || st.Validate != 9 {
		t.Errorf("stats %+v, want 9 validates and nothing minted", st)
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	r := c.do("GET", s.URL()+"/nope", nil)
	var e apiError
	r.decode(t, &e)
	if r.status != http.StatusNotFound || e.Error != "NOT_FOUND" {
		t.Errorf("GET /v1/nope: %d %s, want 404 NOT_FOUND", r.status, r.body)
	}
	r = c.do("GET", s.URL()+"/mint", nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /v1/mint: %d, Allow %q, want 405 and Allow POST", r.status, r.header.Get("Allow"))
	}
	r = c.do("POST", s.URL()+"/health", nil)
	if r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/health: %d, want 405", r.status)
	}
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("stats %+v after only unknown routes and wrong methods, want zero", st)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, Config{Dialect: tc.cfg.Dialect, Format: tc.cfg.Format, Token: "secret"})
			path := "/health"
			if tc.cfg.Dialect != upstream.DialectWorker {
				path = "/v1/health"
			}
			r := newClient(t).do("GET", "http://"+s.APIAddr()+path, nil)
			var h struct{ Status, Service, Version, Timestamp string }
			r.decode(t, &h)
			if r.status != http.StatusOK || h.Status != "ok" || h.Service != "chittyid-sim" || h.Version == "" || h.Timestamp == "" {
				t.Errorf("health without a token: %d %s", r.status, r.body)
			}
			if st := s.Stats(); st.Health != 1 {
				t.Errorf("stats.health = %d, want 1", st.Health)
			}
		})
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Token = "tok-1"
			s := start(t, cfg)
			c := newClient(t)
			entity := "PEO"
			if cfg.Dialect == upstream.DialectWorker {
				entity = "person"
			}
			for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "tok-1"}} {
				expectRefusedToken(t, cfg.Dialect, c.mintRaw(s, entity, h...))
			}
			id := c.mint(s, entity, "Authorization", "Bearer tok-1")
			if !c.validate(s, id, "Authorization", "bearer tok-1") {
				t.Errorf("validate with the token: not valid")
			}
			var r response
			if cfg.Dialect == upstream.DialectWorker {
				r = c.do("POST", s.URL()+"/api/validate", map[string]string{"id": id})
			} else {
				r = c.do("GET", s.URL()+"/validate/"+id, nil)
			}
			if r.status != http.StatusUnauthorized {
				t.Errorf("validate without a token: %d, want 401", r.status)
			}

			s.SetToken("tok-2")
			expectRefusedToken(t, cfg.Dialect, c.mintRaw(s, entity, "Authorization", "Bearer tok-1"))
			c.mint(s, entity, "Authorization", "Bearer tok-2")

			if r := c.do("POST", s.ControlURL()+"/sim/token", `{"token":""}`); r.status != http.StatusOK {
				t.Fatalf("POST /sim/token: %d %s", r.status, r.body)
			}
			c.mint(s, entity)

			reqs := s.Requests()
			var auth []bool
			for _, rq := range reqs {
				auth = append(auth, rq.Authorized)
			}
			want := []bool{false, false, false, true, true, false, false, true, true}
			if fmt.Sprint(auth) != fmt.Sprint(want) {
				t.Errorf("Requests().Authorized = %v, want %v", auth, want)
			}
		})
	}
}

// expectRefusedToken checks a mint refused for its token: client-v1 answers
// 401; the worker leaves the token to its mint backend, whose 401 it
// answers as an HTTP 200 fallback with code 0003.
func expectRefusedToken(t *testing.T, d upstream.Dialect, r response) {
	t.Helper()
	if d != upstream.DialectWorker {
		if r.status != http.StatusUnauthorized || !jsonBody(r) {
			t.Errorf("mint with a bad token: %d %s, want 401 JSON", r.status, r.body)
		}
		return
	}
	var a fallbackAnswer
	r.decode(t, &a)
	if r.status != http.StatusOK || !a.Fallback || a.ErrorCode != codeRejected || !strings.HasPrefix(a.ChittyID, "03-0-ERR-0003-") {
		t.Errorf("worker mint with a bad token: %d %s, want a 200 fallback with code 0003", r.status, r.body)
	}
}

func jsonBody(r response) bool {
	return strings.HasPrefix(r.header.Get("Content-Type"), "application/json") && len(r.body) > 0 && r.body[0] == '{'
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const d = 60 * time.Millisecond
	s := start(t, Config{Latency: d})
	c := newClient(t)
	begin := time.Now()
	c.mint(s, "PEO")
	if el := time.Since(begin); el < d {
		t.Errorf("mint took %s, want at least the configured %s", el, d)
	}
}

func TestUniqueIDs(t *testing.T) {
	t.Parallel()
	const batches, size = 100, 1000
	for _, tc := range allConfigs()[:2] {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			c := newClient(t)
			items := make([]map[string]string, size)
			for i := range items {
				items[i] = map[string]string{"entity": chittyid.Entities()[i%9].String()}
			}
			body := map[string]any{"requests": items}
			seen := make(map[string]struct{}, batches*size)
			for range batches {
				var a struct{ ChittyIDs []string }
				c.do("POST", s.URL()+"/mint/batch", body).decode(t, &a)
				for _, id := range a.ChittyIDs {
					if err := s.Config().Format.Check(id); err != nil {
						t.Fatalf("minted %q: %v", id, err)
					}
					if _, dup := seen[id]; dup {
						t.Fatalf("minted %q twice", id)
					}
					seen[id] = struct{}{}
				}
			}
			if len(seen) != batches*size {
				t.Errorf("got %d distinct IDs, want %d", len(seen), batches*size)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"dialect", Config{Dialect: "grpc"}},
		{"format", Config{Format: 9}},
		{"latency", Config{Latency: -time.Second}},
		{"maxMinted", Config{MaxMinted: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if s, err := Start(tc.cfg, "", ""); err == nil {
				_ = s.Close()
				t.Fatalf("Start(%+v) succeeded, want an error", tc.cfg)
			}
		})
	}
	t.Run("address in use", func(t *testing.T) {
		t.Parallel()
		s := start(t, Config{})
		if s2, err := Start(Config{}, "127.0.0.1:0", s.APIAddr()); err == nil {
			_ = s2.Close()
			t.Fatal("Start on a used control address succeeded")
		}
	})
}

func TestURL(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	w := start(t, Config{Dialect: upstream.DialectWorker})
	if want := "http://" + s.APIAddr() + "/v1"; s.URL() != want {
		t.Errorf("client-v1 URL() = %q, want %q", s.URL(), want)
	}
	if want := "http://" + w.APIAddr(); w.URL() != want {
		t.Errorf("worker URL() = %q, want %q", w.URL(), want)
	}
	if !strings.HasPrefix(s.ControlURL(), "http://127.0.0.1:") || !strings.HasPrefix(s.APIAddr(), "127.0.0.1:") {
		t.Errorf("ControlURL() = %q, APIAddr() = %q", s.ControlURL(), s.APIAddr())
	}
}
