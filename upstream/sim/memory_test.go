package sim

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
)

// TestIdempotencyKey: client-v1 answers a repeated key with the first
// answer, minting once; the worker ignores the key (it does not forward it
// to its mint backend), so a repeat mints again.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	for _, tc := range allConfigs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			c := newClient(t)
			entity, worker := "PEO", tc.cfg.Dialect == upstream.DialectWorker
			if worker {
				entity = "person"
			}
			first := c.mintRaw(s, entity, "Idempotency-Key", "k1")
			again := c.mintRaw(s, entity, "Idempotency-Key", "k1")
			replayed := string(first.body) == string(again.body) || again.header.Get("Idempotent-Replayed") != ""
			if replayed == worker {
				t.Errorf("repeat of k1: %s (replayed %q) after %s; want a replay: %v", again.body, again.header.Get("Idempotent-Replayed"), first.body, !worker)
			}
			other := c.mint(s, entity, "Idempotency-Key", "k2")
			plain := c.mint(s, entity)
			wantMinted := int64(3)
			if worker {
				wantMinted = 4
			}
			if st := s.Stats(); st.Minted != wantMinted || st.Mint != 4 {
				t.Errorf("stats %+v, want 4 mints and %d minted", st, wantMinted)
			}
			if other == plain || strings.Contains(string(first.body), other) {
				t.Errorf("different keys gave the same ID")
			}
		})
	}
}

func TestIdempotencyKeyConcurrent(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i] = c.mint(s, "PEO", "Idempotency-Key", "same") })
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent mints with one key gave %v, want one ID", ids)
		}
	}
	if got := s.Stats().Minted; got != 1 {
		t.Errorf("minted %d IDs for one key, want 1", got)
	}
}

func TestIdempotencyKeyBatch(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	body := `{"requests":[{"entity":"PEO"},{"entity":"INFO"}]}`
	a := c.do("POST", s.URL()+"/mint/batch", body, "Idempotency-Key", "b")
	b := c.do("POST", s.URL()+"/mint/batch", body, "Idempotency-Key", "b")
	if string(a.body) != string(b.body) || s.Stats().Minted != 2 {
		t.Errorf("batch replay: %s then %s, minted %d; want the same answer and 2 minted", a.body, b.body, s.Stats().Minted)
	}
	// The same key on the single-mint route is a different request.
	c.mint(s, "PEO", "Idempotency-Key", "b")
	if got := s.Stats().Minted; got != 3 {
		t.Errorf("minted %d, want 3", got)
	}
}

func TestValidateEncodedID(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	id := c.mint(s, "PEO")
	r := c.do("GET", s.URL()+"/validate/"+strings.ReplaceAll(url.PathEscape(id), "-", "%2D")+"?x=1", nil)
	var a struct {
		Valid    bool
		ChittyID string
		Entity   string
	}
	r.decode(t, &a)
	if !a.Valid || a.ChittyID != id || a.Entity != "PEO" {
		t.Errorf("validate of the encoded ID: %s, want valid %s PEO", r.body, id)
	}
	r = c.do("GET", s.URL()+"/validate/a%2Fb", nil)
	a.ChittyID = ""
	r.decode(t, &a)
	if a.Valid || a.ChittyID != "a/b" {
		t.Errorf("validate a%%2Fb: %s, want not valid for a/b", r.body)
	}
}

func TestRequestsRecorded(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Token: "t"})
	c := newClient(t)
	c.do("POST", s.URL()+"/mint", `{"entity":"PEO"}`,
		"Authorization", "Bearer t", "Idempotency-Key", "ik", "X-Request-ID", "rid",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate", "a=b")
	c.do("GET", s.URL()+"/nowhere", nil)
	got := s.Requests()
	if len(got) != 2 {
		t.Fatalf("Requests() has %d entries, want 2", len(got))
	}
	r := got[0]
	if r.Route != "mint" || r.Method != "POST" || r.Path != "/v1/mint" || r.IdempotencyKey != "ik" ||
		r.RequestID != "rid" || r.TraceParent != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" ||
		r.TraceState != "a=b" || !r.Authorized || r.Status != 200 || time.Since(r.Time) > time.Minute {
		t.Errorf("recorded %+v", r)
	}
	if got[1].Route != "" || got[1].Status != 404 || got[1].Authorized {
		t.Errorf("recorded unknown route as %+v", got[1])
	}
	for range maxRequests + 5 {
		c.do("GET", s.URL()+"/health", nil)
	}
	got = s.Requests()
	if len(got) != maxRequests || got[0].Route != "health" {
		t.Errorf("after %d more requests: %d recorded, oldest %+v; want the last %d", maxRequests+5, len(got), got[0], maxRequests)
	}
}

func TestMintedEviction(t *testing.T) {
	t.Parallel()
	s := start(t, Config{MaxMinted: 3})
	c := newClient(t)
	var ids []string
	for range 5 {
		ids = append(ids, c.mint(s, "PEO"))
	}
	if got := s.Minted(); strings.Join(got, ",") != strings.Join(ids[2:], ",") {
		t.Errorf("Minted() = %v, want the last three %v", got, ids[2:])
	}
	for i, id := range ids {
		if got, want := c.validate(s, id), i >= 2; got != want {
			t.Errorf("validate(ids[%d]) = %v, want %v", i, got, want)
		}
	}
	if got := s.Stats().Minted; got != 5 {
		t.Errorf("stats.minted = %d, want 5 (evicted IDs were still issued)", got)
	}
}
