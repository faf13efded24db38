package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start runs a simulator for the test and closes it at cleanup.
func start(t testing.TB, cfg Config) *Sim {
	t.Helper()
	s, err := Start(cfg, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Start(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// client is a plain net/http client whose idle connections close at cleanup.
type client struct {
	t  testing.TB
	hc *http.Client
}

func newClient(t testing.TB) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v, failing the test if it is not JSON.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

// do sends method url with body (a string is sent as is, anything else as
// JSON, nil as none) and header pairs, failing the test on a transport error.
func (c *client) do(method, url string, body any, header ...string) response {
	c.t.Helper()
	r, err := c.try(method, url, body, header...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func (c *client) try(method, url string, body any, header ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// mint mints one ID through the simulator's dialect and returns it.
func (c *client) mint(s *Sim, entity string, header ...string) string {
	c.t.Helper()
	r := c.mintRaw(s, entity, header...)
	if r.status != http.StatusOK {
		c.t.Fatalf("mint %s: status %d, body %s", entity, r.status, r.body)
	}
	var a struct{ ChittyID string }
	r.decode(c.t, &a)
	return a.ChittyID
}

// mintRaw sends a mint of entity (an entity code for client-v1, an
// entityType for worker).
func (c *client) mintRaw(s *Sim, entity string, header ...string) response {
	c.t.Helper()
	if s.Config().Dialect == upstream.DialectWorker {
		return c.do("POST", s.URL()+"/v1/mint", map[string]string{"entityType": entity}, header...)
	}
	return c.do("POST", s.URL()+"/mint", map[string]string{"entity": entity}, header...)
}

// validate asks the simulator whether id is valid.
func (c *client) validate(s *Sim, id string, header ...string) bool {
	c.t.Helper()
	var r response
	if s.Config().Dialect == upstream.DialectWorker {
		r = c.do("POST", s.URL()+"/api/validate", map[string]string{"id": id}, header...)
	} else {
		r = c.do("GET", s.URL()+"/validate/"+id, nil, header...)
	}
	if r.status != http.StatusOK {
		c.t.Fatalf("validate %s: status %d, body %s", id, r.status, r.body)
	}
	var a struct{ Valid bool }
	r.decode(c.t, &a)
	return a.Valid
}

// namedConfig is a simulator configuration with a subtest name.
type namedConfig struct {
	name string
	cfg  Config
}

// allConfigs is every dialect × format, for table-driven tests.
func allConfigs() []namedConfig {
	return []namedConfig{
		{"client-v1/official", Config{Dialect: upstream.DialectClientV1, Format: chittyid.FormatOfficial}},
		{"client-v1/numeric", Config{Dialect: upstream.DialectClientV1, Format: chittyid.FormatNumeric}},
		{"worker/official", Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatOfficial}},
		{"worker/numeric", Config{Dialect: upstream.DialectWorker, Format: chittyid.FormatNumeric}},
	}
}
